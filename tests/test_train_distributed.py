"""Several processes on CPU over gloo: DDP and DeepSpeed ZeRO-2 through `accelerate launch launch/pretrain.py`,
each compared after its last step with one process on the same global batch (grad_accum = processes)."""
import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from fixtures_train import ZERO2_STEPS as STEPS, launch
from recgpt.train import checkpoint as ckpt


def _check_run(run_dir: Path, proc) -> dict:
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    complete, _ = ckpt.list_checkpoints(run_dir)
    assert [p.name for p in complete] == ["step-00000002", "step-00000004"]
    meta = ckpt.read_meta(complete[-1])
    assert meta["world_size"] == 2 and math.isfinite(meta["loss"]) and math.isfinite(meta["heldout_loss"])
    assert (complete[-1] / "random_states_1.pkl").is_file()  # every rank saved its RNG state
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [2, 4]  # one writer: the main process
    return meta


def _same_as_one_process(run_dir: Path, tiny_train_cfg, tiny_inputs, tmp_path) -> None:
    """2 processes x 1 micro-batch each = 1 process x 2 accumulated micro-batches: the same global batches in
    the same order, the same token-weighted loss, so the same loss and weights (within float reduction order)."""
    from recgpt.train.trainer import pretrain

    pretrain(tiny_train_cfg(*STEPS, "train.grad_accum=2", output_root=tmp_path / "one"), tiny_inputs)
    one, two = ckpt.step_dir(tmp_path / "one" / "tiny", 4), ckpt.step_dir(run_dir, 4)
    meta_one, meta_two = ckpt.read_meta(one), ckpt.read_meta(two)
    assert meta_two["tokens_seen"] == meta_one["tokens_seen"]
    assert meta_two["loss"] == pytest.approx(meta_one["loss"], rel=1e-4)
    assert meta_two["heldout_loss"] == pytest.approx(meta_one["heldout_loss"], rel=1e-4)
    w1, w2 = load_file(one / ckpt.EXPORT_WEIGHTS), load_file(two / ckpt.EXPORT_WEIGHTS)
    assert set(w1) == set(w2)
    start = load_file(ckpt.step_dir(run_dir, 2) / ckpt.EXPORT_WEIGHTS)
    moved = max(float((w2[k] - start[k]).abs().max()) for k in w2)
    assert moved > 1e-3  # the comparison below is not between two untrained models
    for name in w1:
        torch.testing.assert_close(w2[name], w1[name], rtol=1e-3, atol=1e-4)


@pytest.mark.slow
@pytest.mark.distributed
def test_ddp_two_processes_over_gloo(tiny_train_cfg, tiny_inputs, tmp_path):
    proc = launch(["--multi_gpu", "--num_processes", "2"], [*tiny_train_cfg.overrides(tmp_path), *STEPS],
                  {"ACCELERATE_USE_CPU": "1"})
    _check_run(tmp_path / "tiny", proc)
    assert "resumed" not in proc.stdout
    _same_as_one_process(tmp_path / "tiny", tiny_train_cfg, tiny_inputs, tmp_path)


@pytest.mark.slow
@pytest.mark.distributed
def test_deepspeed_zero2_two_processes(zero2_run, tiny_train_cfg, tiny_inputs, tmp_path):
    run_dir, proc = zero2_run
    meta = _check_run(run_dir, proc)
    last = ckpt.step_dir(run_dir, 4)
    assert (last / "pytorch_model").is_dir()  # DeepSpeed's own sharded state, written by save_state
    assert (last / ckpt.EXPORT_WEIGHTS).is_file()  # plus full weights for eval and export
    assert meta["step"] == 4
    _same_as_one_process(run_dir, tiny_train_cfg, tiny_inputs, tmp_path)
