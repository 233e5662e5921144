"""Session fixtures of the item tokenizer, on real item texts embedded with MiniLM.

- `tokenizer_cache_dir`: one embedding cache for the session (every fixture below shares it).
- `real_items`: (item ids, texts) of all ml-100k items (prepared by fixtures_data).
- `real_embeddings`: recgpt.tokenizer.Embeddings of all ml-100k items (1,682 real titles/years/genres).
- `fitted_tokenizers`: {"fsq-mlp", "fsq-reshape", "rqvae", "rqkmeans"} -> ItemTokenizer fitted on them
  with small budgets (seconds).
- `tiny_tokenizer`: a tokenizer folder (config.json, model.safetensors, report.json, codes.safetensors,
  item_ids.json) for the tiny corpus of configs/tiny.yaml, made through `recgpt tokenize embed` and `fit`.
- `stored_keys(cache_dir)`: a helper, not a fixture: the text shas an embedding cache's shards hold.
"""
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SMALL_FITS = {
    "fsq-mlp": dict(kind="fsq", encoder="mlp", epochs=8, batch_size=128, hidden=256),
    "fsq-reshape": dict(kind="fsq", encoder="reshape", epochs=20, batch_size=128, lr=1e-2, dedup_size=256),
    "rqvae": dict(kind="rqvae", epochs=6, batch_size=128, hidden=256, codebook_size=32, kmeans_iters=20),
    "rqkmeans": dict(kind="rqkmeans", codebook_size=32, kmeans_iters=20),
}


def stored_keys(cache_dir) -> list[str]:
    """Every text sha held by the shards of the one cache under `cache_dir`, sorted (repeats kept)."""
    from safetensors.torch import load_file

    index = next(Path(cache_dir).glob("*/index.json"))
    shards = json.loads(index.read_text())["shards"]
    return sorted(bytes(k).hex() for s in shards for k in load_file(index.parent / s)["shas"].numpy())


@pytest.fixture(scope="session")
def tokenizer_cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("embed_cache")


@pytest.fixture(scope="session")
def embed_config(tokenizer_cache_dir):
    from recgpt.config import EmbedConfig

    return EmbedConfig(cache_dir=str(tokenizer_cache_dir), batch_size=64)


@pytest.fixture(scope="session")
def real_items(prepared_dir) -> tuple[list[str], list[str]]:
    from recgpt.data import load_prepared

    items = load_prepared(prepared_dir("ml-100k")).items
    return items["item_id"].astype(str).tolist(), items["text"].tolist()


@pytest.fixture(scope="session")
def real_embeddings(real_items, embed_config):
    from recgpt.tokenizer import embed_items

    return embed_items(*real_items, embed_config)


@pytest.fixture(scope="session")
def fitted_tokenizers(real_embeddings):
    from recgpt.config import TokenizerConfig
    from recgpt.tokenizer import fit_tokenizer

    return {name: fit_tokenizer(real_embeddings, TokenizerConfig(**kw), progress=False)
            for name, kw in SMALL_FITS.items()}


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_corpus, tokenizer_cache_dir, tmp_path_factory) -> Path:
    from recgpt.tokenizer.cli import main

    out = tmp_path_factory.mktemp("tiny_tokenizer")
    common = ["--config", str(REPO / "configs" / "tiny.yaml"), f"data.corpus_dir={tiny_corpus}",
              f"embed.cache_dir={tokenizer_cache_dir}", f"embed.output_dir={out / 'embeddings'}"]
    assert main(["embed", *common]) == 0
    assert main(["fit", *common, f"tokenizer.output_dir={out / 'tokenizer'}"]) == 0
    return out / "tokenizer"
