"""The catalog of a downstream dataset, seen only through the pretrained tokenizer (zero-shot).

Item text is embedded with the encoder the tokenizer was fitted with, encoded by the tokenizer into unique
code rows (its disambiguation slot keeps colliding items apart), and indexed by a tensor trie. Nothing of
the downstream domain is trained on. Should more items share a tuple than the disambiguation slot can
separate, the extra items share the last tuple: the trie maps it to all of them, so none is lost.
"""
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from recgpt.data.ids import ItemLookup
from recgpt.io import write_json
from recgpt.predict.trie import CodeTrie, build_trie


@dataclass
class Catalog:
    item_ids: list[str]
    codes: torch.Tensor  # Long [N, L]
    slot_vocab_sizes: list[int]
    trie: CodeTrie
    # [N, D] item text embeddings (float16 from the embedding cache; read as float32 rows): content kNN, the
    # dense head and the model's text input use them
    text_emb: Optional[torch.Tensor] = None
    stats: Optional[dict] = None
    # Int64 [N] counts of each item in the catalog's own interaction log (recgpt.data.popularity); None: no log,
    # so the popularity terms of the score are left out
    popularity: Optional[np.ndarray] = None
    # item id -> row (recgpt.data.ids.ItemLookup: ~(longest id + 8) B per item, not a dict of Python strings);
    # built by from_codes, which checks the ids are unique with it
    lookup: Optional[ItemLookup] = None

    def __post_init__(self):
        from recgpt.data.popularity import check_counts

        self.popularity = check_counts(self.popularity, len(self.item_ids), "catalog popularity")

    def with_popularity(self, popularity) -> "Catalog":
        """The same catalog with other popularity counts: Int[N] aligned with item_ids, a {item_id: count}
        mapping (items not in it count 0), or None (no interaction log)."""
        if isinstance(popularity, dict):
            popularity = [int(popularity.get(i, 0)) for i in self.item_ids]
        return replace(self, popularity=None if popularity is None else np.asarray(popularity))

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @classmethod
    def from_codes(cls, item_ids: Sequence[str], codes, slot_vocab_sizes: Sequence[int],
                   text_emb: Optional[torch.Tensor] = None, stats: Optional[dict] = None,
                   popularity=None) -> "Catalog":
        item_ids = [str(i) for i in item_ids]
        codes = torch.as_tensor(np.asarray(codes), dtype=torch.long)
        if len(item_ids) != codes.shape[0]:
            raise ValueError(f"catalog: {len(item_ids)} item ids but codes of shape {tuple(codes.shape)}")
        lookup = ItemLookup.of(item_ids)
        if lookup.duplicate is not None:
            raise ValueError(f"catalog: item ids must be unique; {lookup.duplicate!r} is listed twice")
        trie = build_trie(codes, list(slot_vocab_sizes))
        stats = dict(stats or {})
        stats.update({"items": len(item_ids), "unique_code_tuples": trie.n_leaves,
                      "items_sharing_a_tuple": len(item_ids) - trie.n_leaves})
        return cls(item_ids, codes, list(slot_vocab_sizes), trie, text_emb, stats, popularity, lookup)

    def rows(self, item_ids: Sequence[str]) -> tuple[list[int], int]:
        """Catalog rows of the known ids (order kept) and how many ids were not in the catalog."""
        if self.lookup is None:
            self.lookup = ItemLookup.of(self.item_ids)
        return self.lookup.rows(item_ids)

    def save(self, folder) -> Path:
        from recgpt.tokenizer import save_item_codes

        folder = Path(folder)
        save_item_codes(folder / "codes.safetensors", self.item_ids, self.codes.numpy())
        write_json(folder / "catalog.json", self.stats or {})
        return folder


def assign_codes(tokenizer, vectors: np.ndarray, embed_model: str) -> tuple[np.ndarray, int]:
    """Unique code rows from the tokenizer; when its disambiguation slot overflows, the overflow items share
    the tuple of the slot's last code (counted, second value)."""
    from recgpt.tokenizer.collisions import capped_disambiguation

    return capped_disambiguation(tokenizer.encode(vectors, embed_model), tokenizer.dedup_size)


def build_catalog(item_ids: Sequence[str], texts: Sequence[str], tokenizer, embed_cfg) -> Catalog:
    """Embed `texts` with the tokenizer's encoder, encode them, index the codes (see module doc)."""
    from recgpt.tokenizer import embed_items

    cfg = replace(embed_cfg, model=tokenizer.embed_model)
    emb = embed_items(list(item_ids), list(texts), cfg)
    if emb.dim != tokenizer.embed_dim:
        raise ValueError(f"the encoder {tokenizer.embed_model!r} gave {emb.dim}-d embeddings but the tokenizer "
                         f"expects {tokenizer.embed_dim}-d")
    codes, overflow = assign_codes(tokenizer, emb.vectors.astype(np.float32), emb.model)
    text_emb = torch.from_numpy(np.ascontiguousarray(emb.vectors, np.float16))  # as cached: 2 bytes a value
    stats = {"embed_model": emb.model, "empty_text": emb.n_empty_text, "disambiguation_overflow": overflow}
    return Catalog.from_codes(emb.item_ids, codes, tokenizer.slot_vocab_sizes, text_emb, stats)


def read_log(folder):
    """A prepared dataset folder's interactions.parquet (None when the folder has none: a catalog without a log)."""
    import pandas as pd

    path = Path(folder) / "interactions.parquet"
    return pd.read_parquet(path) if path.is_file() else None


def read_catalog_items(folder):
    """The items table (item_id, text) of a prepared dataset folder; its interactions are not read."""
    import pandas as pd

    path = Path(folder) / "items.parquet"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no items table (a prepared dataset folder holds items.parquet)")
    items = pd.read_parquet(path)
    missing = [c for c in ("item_id", "text") if c not in items.columns]
    if missing:
        raise ValueError(f"{path}: lacks column(s) {missing}; got {list(items.columns)}")
    return items


def catalog_from_prepared(items, tokenizer, embed_cfg) -> Catalog:
    """Catalog of a prepared dataset's items table (item_id, text)."""
    return build_catalog(items["item_id"].astype(str).tolist(), items["text"].fillna("").astype(str).tolist(),
                         tokenizer, embed_cfg)
