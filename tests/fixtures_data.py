"""Session fixtures over the real datasets, shared by every test file.

- `prepared_dir(name)`: a factory; imports configs/datasets/<name>.yaml from ../shared/data once per session
  and returns the prepared folder (load it with recgpt.data.load_prepared).
- `tiny_data_config`: configs/tiny.yaml's DataConfig with raw_root = the real data and outputs in a tmp dir.
- `tiny_corpus`: the corpus of configs/tiny.yaml's datasets, built once (load it with recgpt.data.load_corpus).
"""
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def prepared_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("prepared")


@pytest.fixture(scope="session")
def prepared_dir(data_root, prepared_root):
    from recgpt.config import load_dataset_spec
    from recgpt.data import prepare_dataset

    done = {}

    def make(name: str) -> Path:
        if name not in done:
            done[name] = prepare_dataset(load_dataset_spec(name), data_root, prepared_root / name)
        return done[name]

    return make


@pytest.fixture(scope="session")
def tiny_data_config(data_root, prepared_root, tmp_path_factory):
    from recgpt.config import load_config

    cfg = load_config(REPO / "configs" / "tiny.yaml").data
    cfg.raw_root = str(data_root)
    cfg.prepared_root = str(prepared_root)
    cfg.corpus_dir = str(tmp_path_factory.mktemp("tiny") / "corpus")
    return cfg


@pytest.fixture(scope="session")
def tiny_corpus(tiny_data_config, prepared_dir) -> Path:
    from recgpt.data import build_corpus

    for name in tiny_data_config.datasets:  # shares the session's prepared folders
        prepared_dir(name)
    return build_corpus(tiny_data_config)
