"""kill -9 a real training process (at a random step, then in the middle of a save), rerun the same command,
and get the loss curve and weights of an uninterrupted run; an unloadable newest checkpoint falls back."""
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from fixtures_train import RUN_STEPS, SAVE_EVERY, TINY
from recgpt.train import checkpoint as ckpt

REPO = Path(__file__).resolve().parents[1]
STEPS = 14
COMMON = [f"train.max_steps={STEPS}", "train.save_every=1", "train.keep_last=2", "train.log_every=1",
          "train.eval_every=1000", "train.warmup_steps=2"]


def losses(run_dir: Path) -> dict:
    """step -> loss; a step logged twice (by a killed process and again after its resume) keeps the last."""
    out = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line) if line.strip() else {}
        if "loss" in row:
            out[row["step"]] = row["loss"]
    return out


def start(cmd: list, log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(cmd, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT, cwd=REPO)


def kill_when(proc: subprocess.Popen, condition, timeout: float = 600) -> bool:
    """kill -9 as soon as condition() holds; False when the process ended first."""
    deadline = time.time() + timeout
    while proc.poll() is None and time.time() < deadline:
        if condition():
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.001)
    return False


@pytest.mark.slow
def test_kill_9_anywhere_then_the_same_command_continues_the_same_curve(tiny_train_cfg, tiny_inputs, tmp_path):
    from recgpt.train.trainer import pretrain

    pretrain(tiny_train_cfg(*COMMON, output_root=tmp_path / "straight"), tiny_inputs)
    straight = losses(tmp_path / "straight" / "tiny")
    run = tmp_path / "killed" / "tiny"
    cmd = [sys.executable, str(REPO / "launch" / "pretrain.py"), "--config", str(TINY),
           *tiny_train_cfg.overrides(tmp_path / "killed"), *COMMON]
    seed = random.randrange(1 << 30)
    kill_step = random.Random(seed).randint(2, STEPS - 6)

    # 1: killed at a random step (whatever it is doing then: a step, a log line, a save)
    first = start(cmd, tmp_path / "first.log")
    assert kill_when(first, lambda: (run / "metrics.jsonl").is_file() and max(losses(run), default=0) >= kill_step)
    complete_after_first = [p.name for p in ckpt.list_checkpoints(run)[0]]

    # 2: the same command, killed while it writes a checkpoint (a step folder without meta.json)
    second = start(cmd, tmp_path / "second.log")
    newest = max(int(p.name[5:]) for p in ckpt.list_checkpoints(run)[0])
    caught = kill_when(second, lambda: any(not (p / ckpt.META).exists() and int(p.name[5:]) > newest + 1
                                           for p in run.glob("step-*")))
    assert caught, (tmp_path / "second.log").read_text()[-3000:]
    incomplete = [p.name for p in ckpt.list_checkpoints(run)[1]]
    assert incomplete, "killed during a save, so a step folder without meta.json is left"

    # 3: the same command again, to the end
    third = start(cmd, tmp_path / "third.log")
    assert third.wait(timeout=600) == 0, (tmp_path / "third.log").read_text()[-3000:]
    log = (tmp_path / "third.log").read_text()
    assert "ignoring incomplete checkpoint" in log and "resumed from" in log

    resumed = losses(run)
    assert sorted(resumed) == sorted(straight) == list(range(1, STEPS + 1))
    worst = max(abs(resumed[s] - straight[s]) / straight[s] for s in straight)
    a, b = ckpt.step_dir(tmp_path / "straight" / "tiny", STEPS), ckpt.step_dir(run, STEPS)
    assert ckpt.read_meta(a)["data_position"] == ckpt.read_meta(b)["data_position"]
    wa, wb = load_file(a / ckpt.EXPORT_WEIGHTS), load_file(b / ckpt.EXPORT_WEIGHTS)
    weight_diff = max(float((wa[k] - wb[k]).abs().max()) for k in wa)
    print(f"kill -9 test (seed {seed}): first killed at step {kill_step} (complete after it: "
          f"{complete_after_first}), second killed mid-save ({incomplete} incomplete), {STEPS} steps; "
          f"max relative loss difference {worst:.2e}, max weight difference {weight_diff:.2e}")
    assert worst < 1e-4
    for name in wa:
        torch.testing.assert_close(wb[name], wa[name], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("damage", ["model.safetensors", "optimizer.bin", "random_states_0.pkl", "meta.json"])
def test_unloadable_newest_checkpoint_falls_back_to_the_older_one(damage, tiny_run, tiny_train_cfg, tiny_inputs,
                                                                   tmp_path, capsys):
    from recgpt.train.trainer import Trainer

    shutil.copytree(tiny_run, tmp_path / "tiny")
    bad = ckpt.step_dir(tmp_path / "tiny", RUN_STEPS) / damage
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2])  # truncated, as by a full disk or a copy cut short
    trainer = Trainer(tiny_train_cfg(f"train.max_steps={RUN_STEPS + 2}", output_root=tmp_path), tiny_inputs).build()
    err = capsys.readouterr().err
    assert f"cannot resume from {ckpt.step_dir(tmp_path / 'tiny', RUN_STEPS)}" in err and damage in err
    assert "trying the next older checkpoint" in err
    assert trainer.step == SAVE_EVERY  # not 0: never silently from scratch
    trainer.accelerator.end_training()
