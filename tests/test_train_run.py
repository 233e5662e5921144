"""Pretraining on the tiny real corpus: learning, checkpoints, logging, resume, divergence."""
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from fixtures_train import RUN_STEPS, SAVE_EVERY, TINY
from recgpt.train import checkpoint as ckpt

REPO = Path(__file__).resolve().parents[1]


def _metrics(run_dir: Path) -> list:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_loss_decreases_and_everything_is_logged(tiny_run):
    rows = _metrics(tiny_run)
    train = [r for r in rows if "loss" in r]
    heldout = [r["heldout_loss"] for r in rows if "heldout_loss" in r]
    assert [r["step"] for r in train] == list(range(4, RUN_STEPS + 1, 4))
    for r in train:
        assert {"loss", "lr", "tokens_per_s", "target_tokens_per_s", "eta_s", "tokens_seen"} <= set(r)
        assert r["tokens_per_s"] > 0 and "mfu" not in r  # a CPU's peak is unknown: no made-up MFU
    assert train[-1]["loss"] < train[0]["loss"] - 1.0, [r["loss"] for r in train]
    assert len(heldout) == 2 and heldout[1] < heldout[0]
    assert train[-1]["lr"] < train[0]["lr"]  # cosine decay after warmup
    assert (tiny_run / "loss_curves.png").stat().st_size > 1000
    assert (tiny_run / "config.yaml").is_file()
    assert any(tiny_run.rglob("events.out.tfevents.*"))  # TensorBoard asked for in this run


def test_mfu_only_against_a_known_peak():
    from recgpt.train.tracking import Throughput, peak_flops

    assert peak_flops(torch.device("cpu"), 0.0) is None
    assert peak_flops(torch.device("cpu"), 2e12) == 2e12
    known = Throughput(n_params=1000, peak=1e9, world=2, max_steps=10)
    known.add(target_tokens=50, tokens=200, seconds=2.0)
    r = known.report(step=1)
    assert r["tokens_per_s"] == 100 and r["mfu"] == 6 * 1000 * 100 / 2e9
    unknown = Throughput(n_params=1000, peak=None, world=1, max_steps=10)
    unknown.add(target_tokens=50, tokens=200, seconds=2.0)
    assert "mfu" not in unknown.report(step=1)


def test_checkpoints_are_complete_and_carry_their_meta(tiny_run, tiny_inputs):
    complete, incomplete = ckpt.list_checkpoints(tiny_run)
    assert [p.name for p in complete] == [f"step-{s:08d}" for s in range(SAVE_EVERY, RUN_STEPS + 1, SAVE_EVERY)]
    assert not incomplete
    meta = ckpt.read_meta(complete[-1])
    assert meta["step"] == RUN_STEPS and meta["tokens_seen"] > meta["target_tokens_seen"] > 0
    assert meta["corpus_hash"] == tiny_inputs.corpus_hash and meta["tokenizer_hash"] == tiny_inputs.tokenizer_hash
    assert meta["config"]["train"]["max_steps"] == RUN_STEPS and math.isfinite(meta["loss"])
    assert set(meta["data_position"]) == {"epoch", "index"}
    assert (complete[-1] / ckpt.EXPORT_WEIGHTS).is_file() and (complete[-1] / "optimizer.bin").is_file()


def test_keep_last_prunes_old_checkpoints(tmp_path):
    for step in (1, 2, 3, 4):
        (ckpt.step_dir(tmp_path, step)).mkdir()
        (ckpt.step_dir(tmp_path, step) / ckpt.META).write_text("{}")
    ckpt.step_dir(tmp_path, 5).mkdir()  # in progress: newer than every complete one, kept
    ckpt.prune(tmp_path, keep_last=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-00000003", "step-00000004", "step-00000005"]


def test_incomplete_checkpoint_is_skipped_on_resume(tiny_run, tiny_train_cfg, tiny_inputs, tmp_path, capsys):
    from recgpt.train.trainer import Trainer

    run = tmp_path / "tiny"
    shutil.copytree(tiny_run, run)
    broken = ckpt.step_dir(run, RUN_STEPS + 4)
    shutil.copytree(ckpt.step_dir(run, RUN_STEPS), broken)
    (broken / ckpt.META).unlink()  # a save interrupted before meta.json
    (broken / ckpt.EXPORT_WEIGHTS).write_bytes(b"truncated")
    trainer = Trainer(tiny_train_cfg(f"train.max_steps={RUN_STEPS + 2}", output_root=tmp_path), tiny_inputs).build()
    assert "ignoring incomplete checkpoint" in capsys.readouterr().err
    assert trainer.step == RUN_STEPS
    assert trainer.stream.state() == ckpt.read_meta(ckpt.step_dir(run, RUN_STEPS))["data_position"]
    trainer.accelerator.end_training()


def test_checkpoint_of_another_tokenizer_is_refused(tiny_run, tiny_train_cfg, tiny_inputs, tmp_path):
    from dataclasses import replace

    from recgpt.train.trainer import Trainer

    shutil.copytree(tiny_run, tmp_path / "tiny")
    other = replace(tiny_inputs, tokenizer_hash="0" * 64)
    with pytest.raises(ckpt.CheckpointMismatch, match="tokenizer"):
        Trainer(tiny_train_cfg(output_root=tmp_path), other).build()


def test_resume_in_a_new_process_equals_a_straight_run(tiny_train_cfg, tiny_inputs, tmp_path):
    from recgpt.train.trainer import Trainer, pretrain

    n = 3
    common = [f"train.max_steps={2 * n}", "train.save_every=3", "train.eval_every=100", "train.warmup_steps=2",
              "train.grad_accum=2"]
    pretrain(tiny_train_cfg(*common, output_root=tmp_path / "a"), tiny_inputs)
    first = Trainer(tiny_train_cfg(*common, output_root=tmp_path / "b"), tiny_inputs).build()
    for _ in range(n):  # n steps of the same 2n-step schedule, saved, then this process is done
        first.train_step()
    first.save()
    first.accelerator.end_training()
    first.release()  # the run folder's lock, as the end of this process would
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, str(REPO / "launch" / "pretrain.py"), "--config", str(TINY),
           *tiny_train_cfg.overrides(tmp_path / "b"), *common]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resumed from" in proc.stdout + proc.stderr
    a, b = (ckpt.step_dir(Path(p) / "tiny", 2 * n) for p in (tmp_path / "a", tmp_path / "b"))
    meta_a, meta_b = ckpt.read_meta(a), ckpt.read_meta(b)
    assert meta_a["data_position"] == meta_b["data_position"] and meta_a["tokens_seen"] == meta_b["tokens_seen"]
    assert meta_b["loss"] == pytest.approx(meta_a["loss"], rel=1e-5)
    wa, wb = load_file(a / ckpt.EXPORT_WEIGHTS), load_file(b / ckpt.EXPORT_WEIGHTS)
    for name in wa:
        torch.testing.assert_close(wb[name], wa[name], rtol=1e-4, atol=1e-5)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tiny_train_cfg, tiny_inputs, tmp_path, monkeypatch):
    from recgpt.train.trainer import Trainer, TrainingDiverged

    real = Trainer.compute_loss

    def poisoned(self, batch):
        loss_sum, n = real(self, batch)
        return (loss_sum * float("nan"), n) if self.step >= 3 else (loss_sum, n)

    monkeypatch.setattr(Trainer, "compute_loss", poisoned)
    cfg = tiny_train_cfg("train.max_steps=8", "train.save_every=3", "train.eval_every=100", output_root=tmp_path)
    trainer = Trainer(cfg, tiny_inputs).build()
    with pytest.raises(TrainingDiverged, match=r"loss is nan at step 4.*step-00000003"):
        trainer.train()
    complete, incomplete = ckpt.list_checkpoints(cfg.run_dir)
    assert [p.name for p in complete] == ["step-00000003"] and not incomplete
    meta = ckpt.read_meta(complete[0])
    assert math.isfinite(meta["loss"])
    weights = load_file(complete[0] / ckpt.EXPORT_WEIGHTS)
    assert all(torch.isfinite(t).all() for t in weights.values())


@pytest.mark.gpu
def test_bf16_training_on_gpu(tiny_train_cfg, tiny_inputs, tmp_path):
    from recgpt.train.trainer import pretrain

    cfg = tiny_train_cfg("train.max_steps=6", "train.mixed_precision=bf16", "train.save_every=6",
                         "train.eval_every=6", output_root=tmp_path)
    summary = pretrain(cfg, tiny_inputs)
    meta = ckpt.read_meta(ckpt.step_dir(cfg.run_dir, 6))
    assert math.isfinite(summary["loss"]) and math.isfinite(meta["heldout_loss"])
    rows = _metrics(cfg.run_dir)
    assert all(0 < r["mfu"] < 1 for r in rows if "mfu" in r)  # against the device's peak from the table
