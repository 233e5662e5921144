"""Embedding at scale on real ml-100k titles: several processes fill one cache, the ONNX CPU backends."""
import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recgpt.tokenizer import embed_items, embed_texts, load_embeddings
from recgpt.tokenizer import embed as embed_mod
from recgpt.tokenizer.cache import text_sha
from tests.fixtures_tokenizer import stored_keys

REPO = Path(__file__).resolve().parents[1]
ACCELERATE = str(Path(sys.executable).with_name("accelerate"))


@pytest.fixture
def ml_200(prepared_dir, tmp_path) -> Path:
    """A prepared folder holding the first 200 ml-100k items (their real titles)."""
    folder = tmp_path / "ml_200"
    shutil.copytree(prepared_dir("ml-100k"), folder)
    pd.read_parquet(folder / "items.parquet").head(200).to_parquet(folder / "items.parquet")
    return folder


@pytest.mark.slow
@pytest.mark.distributed
def test_two_processes_write_the_same_vectors_as_one(ml_200, embed_config, tmp_path):
    items = pd.read_parquet(ml_200 / "items.parquet")
    ids, texts = items["item_id"].astype(str).tolist(), items["text"].tolist()
    one = embed_items(ids, texts, replace(embed_config, cache_dir=str(tmp_path / "cache1"), shard_size=32))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([ACCELERATE, "launch", "--multi_gpu", "--num_processes", "2", "-m", "recgpt.cli",
                           "tokenize", "embed", "--items", str(ml_200), f"embed.cache_dir={tmp_path / 'cache2'}",
                           f"embed.output_dir={tmp_path / 'out'}", "embed.shard_size=32"],
                          env=env, capture_output=True, text=True, timeout=400, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    two = load_embeddings(tmp_path / "out")
    assert two.item_ids == ids
    # batches differ between the runs (other neighbours, other padding): equal within fp16 rounding
    assert np.allclose(two.vectors.astype(np.float32), one.vectors.astype(np.float32), atol=2e-3)
    assert not np.allclose(two.vectors[:100].astype(np.float32), two.vectors[100:].astype(np.float32), atol=0.1)
    index = json.loads(next((tmp_path / "cache2").glob("*/index.json")).read_text())
    unique = len(set(texts))
    assert stored_keys(tmp_path / "cache2") == sorted(set(map(text_sha, texts)))  # each text once, both processes
    # each process wrote its own shards of 32 (100 texts each): both filled the one cache
    assert len(index["shards"]) == 2 * -(-(unique // 2) // 32)


@pytest.mark.slow
def test_onnx_backends_match_torch_and_export_once(real_items, real_embeddings, embed_config, tmp_path):
    pytest.importorskip("onnxruntime")
    texts = real_items[1][:120]
    reference = real_embeddings.vectors[:120].astype(np.float32)
    cfg = replace(embed_config, cache_dir=str(tmp_path / "cache"), backend="onnx")
    fp32 = embed_texts(texts, cfg).astype(np.float32)
    assert np.allclose(fp32, reference, atol=2e-3)
    int8 = embed_texts(texts, replace(cfg, backend="onnx-int8")).astype(np.float32)
    cosine = (int8 * reference).sum(1) / np.linalg.norm(int8, axis=1) / np.linalg.norm(reference, axis=1)
    assert cosine.min() > 0.95 and np.abs(int8 - reference).max() > 1e-3  # quantized, yet close
    # the int8 vectors have their own cache; the exported graphs are written once, then reused
    assert len(list((tmp_path / "cache").glob("*/index.json"))) == 2
    exported = sorted(p.name for p in (tmp_path / "cache" / "models" / "onnx").rglob("*.onnx"))
    assert exported == ["model-int8.onnx", "model.onnx"]
    embed_mod._load_onnx.cache_clear()
    stamp = next((tmp_path / "cache").rglob("model.onnx")).stat().st_mtime_ns
    embed_mod.load_encoder(cfg.model, "cpu", cfg.dtype, cfg.cache_dir, "onnx")
    assert next((tmp_path / "cache").rglob("model.onnx")).stat().st_mtime_ns == stamp


def test_onnx_backend_config_errors():
    from recgpt.config import EmbedConfig
    from recgpt.config.errors import ConfigError

    with pytest.raises(ConfigError, match=r"embed.backend: torch\|onnx\|onnx-int8, got .tensorrt."):
        EmbedConfig(backend="tensorrt")
    with pytest.raises(ConfigError, match="embed.backend: onnx runs on the CPU"):
        EmbedConfig(backend="onnx", device="cuda")
