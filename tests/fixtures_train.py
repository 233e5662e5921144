"""Session fixtures of pretraining, on the tiny real corpus (configs/tiny.yaml datasets) and its tokenizer.

- `train_corpus`: the tiny corpus with its held-out split cut to its first HELDOUT_USERS sequences, so that
  every held-out evaluation in the tests stays a few seconds (the manifest records the cut, so the corpus
  hash differs from the full one).
- `tiny_train_cfg(*overrides, output_root=None)`: configs/tiny.yaml pointed at that corpus and the session's
  tokenizer, with small test budgets, checkpoints under a fresh tmp folder unless output_root is given.
- `tiny_inputs`: the loaded training inputs (sequences, code table, hashes).
- `tiny_run`: one pretraining run (RUN_STEPS steps, checkpoints every SAVE_EVERY), trained once per session;
  its run folder. Copy it before changing anything in it.
"""
import json
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs" / "tiny.yaml"
HELDOUT_USERS = 48
RUN_STEPS, SAVE_EVERY = 24, 12
# Small budgets for a 2-core machine: short rows of the tiny corpus, small micro-batches.
TEST_OVERRIDES = ["train.tokens_per_batch=1000", "train.log_every=4", "eval.batch_tokens=2000"]


@pytest.fixture(scope="session")
def train_corpus(tiny_corpus, tmp_path_factory) -> Path:
    from datasets import load_from_disk

    out = tmp_path_factory.mktemp("train_corpus") / "corpus"
    shutil.copytree(tiny_corpus, out, ignore=shutil.ignore_patterns("sequences"))
    sequences = load_from_disk(str(Path(tiny_corpus) / "sequences"))
    sequences["heldout"] = sequences["heldout"].select(range(HELDOUT_USERS))
    sequences.save_to_disk(str(out / "sequences"))
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["test_cut"] = {"heldout_sequences": HELDOUT_USERS}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return out


def tiny_overrides(corpus: Path, tokenizer: Path, output_root: Path) -> list:
    return [f"data.corpus_dir={corpus}", f"tokenizer.output_dir={tokenizer}", f"run.output_root={output_root}",
            *TEST_OVERRIDES]


@pytest.fixture(scope="session")
def tiny_train_cfg(train_corpus, tiny_tokenizer, tmp_path_factory):
    from recgpt.config import load_config

    def make(*overrides, output_root=None):
        root = output_root or tmp_path_factory.mktemp("ckpt")
        return load_config(TINY, [*tiny_overrides(train_corpus, tiny_tokenizer, root), *overrides])

    make.overrides = lambda root: tiny_overrides(train_corpus, tiny_tokenizer, root)
    return make


@pytest.fixture(scope="session")
def tiny_inputs(tiny_train_cfg):
    from recgpt.train.inputs import load_training_inputs

    return load_training_inputs(tiny_train_cfg())


@pytest.fixture(scope="session")
def tiny_run(tiny_train_cfg, tiny_inputs) -> Path:
    from recgpt.train.trainer import pretrain

    cfg = tiny_train_cfg(f"train.max_steps={RUN_STEPS}", f"train.save_every={SAVE_EVERY}",
                         f"train.eval_every={SAVE_EVERY}", "train.trackers=[jsonl,tensorboard]")
    summary = pretrain(cfg, tiny_inputs)
    assert summary["step"] == RUN_STEPS
    return Path(summary["run_dir"])


class Killed(Exception):
    """Stands in for a kill in the middle of a fit."""


@pytest.fixture
def kill_at_call(monkeypatch):
    """kill_at_call(module, name, n): `module.name` raises Killed at its n-th call; returns the real function."""
    def arm(module, name: str, n: int):
        real, calls = getattr(module, name), {"n": 0}

        def dying(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == n:
                raise Killed
            return real(*args, **kwargs)

        monkeypatch.setattr(module, name, dying)
        return real
    return arm
