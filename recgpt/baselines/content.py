"""Content kNN: the text-only floor, no interaction is trained on.

The split's items are embedded with the text encoder (recgpt.tokenizer.embed_items: the embedding cache of
`embed.cache_dir` is read first), and a history scores every item by the cosine between its text vector and
the recency-weighted mean of the last `predict.knn.last` items' vectors (weight `predict.knn.decay`**age): the same
scorer as `recgpt predict`'s content_knn baseline (recgpt.predict.baselines.content_knn_scores).
"""
import torch

from recgpt.baselines.base import Baseline


class ContentKNN(Baseline):
    name = "content_knn"
    embed_cfg = None  # an EmbedConfig; set by recgpt.baselines.run before fit (None: the defaults)

    def fit(self, split):
        from recgpt.config import EmbedConfig
        from recgpt.tokenizer import embed_items

        if split.items is None:
            raise ValueError(f"content_knn: the split of {split.dataset} carries no items table (item texts)")
        text = split.items.assign(item_id=split.items["item_id"].astype(str)).set_index("item_id")["text"]
        missing = [i for i in split.item_ids if i not in text.index]
        if missing:
            raise ValueError(f"content_knn: item {missing[0]!r} of {split.dataset} has no row in its items table "
                             f"({len(missing)} missing)")
        texts = text.reindex(split.item_ids).fillna("").astype(str).tolist()
        emb = embed_items(split.item_ids, texts, self.embed_cfg or EmbedConfig())
        self.embeddings = torch.from_numpy(emb.vectors.astype("float32"))
        return self

    def scores(self, histories, users=None):
        from recgpt.predict.baselines import content_knn_scores

        return content_knn_scores(histories, self.embeddings, self.knn.last, self.knn.decay)

    def state(self):
        return {"embeddings": self.embeddings}

    def load_state(self, tensors):
        self.embeddings = tensors["embeddings"]
