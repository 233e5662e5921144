"""Session fixtures of the predict stage, on real item texts and real tokenizers.

- `ml100k_catalog`: the 1,682 real ml-100k items encoded by an RQ-KMeans tokenizer fitted on their MiniLM
  embeddings (`real_embeddings` of fixtures_tokenizer): real code tuples, small slot vocabularies (32 per slot + disambiguation).
- `make_decoder(head, seed)`: a randomly initialised real ItemCodeDecoder for that catalog's slot sizes.
- `exported_model`: an export folder like ckpt/<run>/best (model + tokenizer/ + codes + item ids).
- `TableScorer`: a hand-made next-item distribution (row = the history's last item) for strategy tests.
"""
import pytest
import torch



class TableScorer:
    """Next-item log-probs read from a table Float[N, N] by the last item of each history."""

    def __init__(self, probs):
        self.table = torch.log(torch.as_tensor(probs, dtype=torch.float32))
        self.calls = []

    @property
    def n_items(self) -> int:
        return self.table.shape[1]

    def log_probs(self, histories):
        self.calls.append([list(h) for h in histories])
        return self.table[[h[-1] for h in histories]]


def fit_small_tokenizer(embeddings, kind: str = "rqkmeans", seed: int = 0):
    from recgpt.config import TokenizerConfig
    from recgpt.tokenizer import fit_tokenizer

    cfg = TokenizerConfig(kind=kind, codebook_size=32, kmeans_iters=20, epochs=2, batch_size=256, seed=seed)
    return fit_tokenizer(embeddings, cfg, progress=False)


@pytest.fixture(scope="session")
def predict_tokenizer(real_embeddings):
    return fit_small_tokenizer(real_embeddings)


@pytest.fixture(scope="session")
def ml100k_catalog(real_embeddings, predict_tokenizer):
    from recgpt.predict.catalog import Catalog, assign_codes

    codes, overflow = assign_codes(predict_tokenizer, real_embeddings.vectors,
                                   real_embeddings.model)
    return Catalog.from_codes(real_embeddings.item_ids, codes, predict_tokenizer.slot_vocab_sizes,
                              stats={"disambiguation_overflow": overflow})


@pytest.fixture(scope="session")
def make_decoder(predict_tokenizer):
    from recgpt.model import ItemCodeDecoder, ItemCodeDecoderConfig

    def make(head: str = "parallel", seed: int = 0, max_items: int = 20):
        torch.manual_seed(seed)
        config = ItemCodeDecoderConfig.from_recipe("code", predict_tokenizer.slot_vocab_sizes, n_layers=2, d_model=32,
                                                   n_heads=4, d_ff=64, dropout=0.0, max_items=max_items,
                                                   codes={"head": head})
        return ItemCodeDecoder(config).eval()

    return make


@pytest.fixture(scope="session")
def ml100k_histories(prepared_dir, ml100k_catalog):
    """Real ml-100k user histories (catalog rows, oldest first) of 40 users of varied lengths."""
    from recgpt.data import load_prepared
    from recgpt.predict.protocols import build_test_cases

    inter = load_prepared(prepared_dir("ml-100k")).interactions
    cases = build_test_cases(inter, ml100k_catalog, "loo", max_users=40, seed=1)
    return cases.histories


@pytest.fixture(scope="session")
def exported_model(tmp_path_factory, make_decoder, predict_tokenizer, ml100k_catalog):
    """ckpt/<run>/best layout: config.json + model.safetensors, tokenizer/, codes.safetensors, item_ids.json,
    source.json (the hash of the tokenizer + codes it was trained with, as `recgpt eval` writes it)."""
    from recgpt.io import write_json
    from recgpt.tokenizer import save_item_codes
    from recgpt.tokenizer.base import tokenizer_hash

    best = tmp_path_factory.mktemp("run") / "best"
    make_decoder("parallel", seed=3).save_pretrained(str(best))
    predict_tokenizer.save(best / "tokenizer")
    save_item_codes(best / "codes.safetensors", ml100k_catalog.item_ids, ml100k_catalog.codes.numpy())
    write_json(best / "source.json", {"tokenizer_hash": tokenizer_hash(best / "tokenizer", best / "codes.safetensors")})
    return best
