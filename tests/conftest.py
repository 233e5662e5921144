"""Shared fixtures. Tests run offline against the real datasets in ../shared/data (or $RECGPT_DATA)."""
import importlib
import os
from pathlib import Path

import pytest

for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(var, "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("RECGPT_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def data_root() -> Path:
    assert DATA.is_dir(), f"real datasets not found at {DATA} (set RECGPT_DATA)"
    return DATA


@pytest.fixture(scope="session", autouse=True)
def _no_deepspeed_shm_build():
    # DeepSpeed JIT-builds a shared-memory comm op (~50 s) on first init; CPU tests over gloo do not need it.
    try:
        importlib.import_module("deepspeed.comm.torch").build_shm_op = lambda: None
    except Exception:
        pass
    yield


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


# Fixture modules (tests/fixtures_*.py: prepared data, corpus, tokenizer, checkpoints) are shared by all tests.
pytest_plugins = sorted(p.stem for p in Path(__file__).parent.glob("fixtures_*.py"))
