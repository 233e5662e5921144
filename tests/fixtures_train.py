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
import os
import shutil
import subprocess
import sys
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


ACCELERATE = str(Path(sys.executable).with_name("accelerate"))
ZERO2_STEPS = ["train.max_steps=4", "train.save_every=2", "train.eval_every=4", "train.log_every=2",
               "train.tokens_per_batch=500"]


def launch(launch_args: list, overrides: list, env_extra: dict = None) -> subprocess.CompletedProcess:
    """`accelerate launch [launch_args] launch/pretrain.py --config configs/tiny.yaml [overrides]`."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", **(env_extra or {})}
    cmd = [ACCELERATE, "launch", *launch_args, str(REPO / "launch" / "pretrain.py"), "--config", str(TINY), *overrides]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400, cwd=REPO)


@pytest.fixture(scope="session")
def zero2_run(tiny_train_cfg, tmp_path_factory):
    """(run folder, process) of one 2-process DeepSpeed ZeRO-2 run on CPU (gloo): ZERO2_STEPS, checkpoints at
    steps 2 and 4. Copy the folder before changing anything in it."""
    root = tmp_path_factory.mktemp("zero2")
    proc = launch(["--config_file", str(REPO / "launch" / "accelerate" / "zero2.yaml"), "--num_processes", "2"],
                  [*tiny_train_cfg.overrides(root), *ZERO2_STEPS])
    return root / "tiny", proc


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
