"""Several processes on CPU over gloo: every recipe a shipped config uses trains under DDP and DeepSpeed ZeRO-2
through `accelerate launch launch/pretrain.py`, each compared after its last step with one process on the same
global batch (grad_accum = processes). The recipes run on the tiny real corpus at a small width: what breaks
distributed training (a built part without a gradient) does not depend on the width."""
import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from fixtures_train import REPO, TINY, ZERO2_STEPS as STEPS, launch
from recgpt.train import checkpoint as ckpt

SMALL = ["model.n_layers=1", "model.d_model=32", "model.n_heads=4", "model.d_ff=64", "model.dropout=0.0"]
CONFIGS = sorted(p for p in (REPO / "configs").glob("*.yaml"))


def recipe_of(config: Path) -> tuple:
    """(recipe name, the config's own model overrides as dotted keys) of a shipped config (sizes left out)."""
    import yaml

    model = (yaml.safe_load(config.read_text()) or {}).get("model") or {}
    sizes = {"n_layers", "d_model", "n_heads", "d_ff", "dropout", "max_items"}

    def dotted(prefix, value):
        if isinstance(value, dict):
            return [x for k, v in value.items() for x in dotted(f"{prefix}.{k}", v)]
        return [f"{prefix}={'null' if value is None else value}"]

    keys = [x for k, v in model.items() if k not in sizes | {"recipe"} for x in dotted(f"model.{k}", v)]
    return model.get("recipe", "text_dense"), tuple(keys)


# one case per distinct model section of the shipped configs (cpu, sample and pretrain share text_dense's), and
# text_state, the in-domain recipe no shipped config names
MODELS = sorted({**{recipe_of(c)[0]: recipe_of(c) for c in CONFIGS}, "text_state": ("text_state", ())}.values())


def test_every_shipped_config_model_is_covered():
    covered = {recipe_of(c) for c in CONFIGS}
    assert covered <= set(MODELS) and {"text_dense", "code", "text_state"} <= {r for r, _ in MODELS}


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


def model_overrides(model: tuple, tiny_tokenizer) -> list:
    recipe, keys = model
    return [f"model.recipe={recipe}", *SMALL, *keys, f"train.text_embeddings_dir={tiny_tokenizer.parent / 'embeddings'}"]


_ONE = {}


def one_process(tiny_train_cfg, tiny_inputs, tmp_path_factory, extra: list) -> Path:
    """1 process x 2 accumulated micro-batches, trained once per model section."""
    from recgpt.train.trainer import pretrain

    key = tuple(extra)
    if key not in _ONE:
        root = tmp_path_factory.mktemp("one")
        pretrain(tiny_train_cfg(*STEPS, *extra, "train.grad_accum=2", output_root=root))
        _ONE[key] = ckpt.step_dir(root / "tiny", 4)
    return _ONE[key]


def _same_as_one_process(run_dir: Path, one: Path) -> None:
    """2 processes x 1 micro-batch each = 1 process x 2 accumulated micro-batches: the same global batches in
    the same order, the same token-weighted loss, so the same loss and weights (within float reduction order)."""
    two = ckpt.step_dir(run_dir, 4)
    meta_one, meta_two = ckpt.read_meta(one), ckpt.read_meta(two)
    assert meta_two["tokens_seen"] == meta_one["tokens_seen"]
    assert meta_two["loss"] == pytest.approx(meta_one["loss"], rel=1e-4)
    assert meta_two["heldout_loss"] == pytest.approx(meta_one["heldout_loss"], rel=1e-4)
    w1, w2 = ckpt.load_export_weights(one), ckpt.load_export_weights(two)  # tied names restored
    assert set(w1) == set(w2)
    stored = [set(load_file(folder / ckpt.EXPORT_WEIGHTS)) for folder in (one, two)]
    assert stored[0] == stored[1] <= set(w1)  # a tied matrix stored once, whatever the DeepSpeed stage
    start = ckpt.load_export_weights(ckpt.step_dir(run_dir, 2))
    moved = max(float((w2[k] - start[k]).abs().max()) for k in w2)
    assert moved > 1e-3  # the comparison below is not between two untrained models
    for name in w1:
        torch.testing.assert_close(w2[name], w1[name], rtol=1e-3, atol=1e-4)


@pytest.mark.slow
@pytest.mark.distributed
@pytest.mark.parametrize("model", MODELS, ids=lambda m: m[0])
def test_ddp_two_processes_over_gloo(model, tiny_train_cfg, tiny_inputs, tiny_tokenizer, tmp_path, tmp_path_factory):
    extra = model_overrides(model, tiny_tokenizer)
    proc = launch(["--multi_gpu", "--num_processes", "2"], [*tiny_train_cfg.overrides(tmp_path), *STEPS, *extra],
                  {"ACCELERATE_USE_CPU": "1"})
    _check_run(tmp_path / "tiny", proc)
    assert "resumed" not in proc.stdout
    _same_as_one_process(tmp_path / "tiny", one_process(tiny_train_cfg, tiny_inputs, tmp_path_factory, extra))


@pytest.mark.slow
@pytest.mark.distributed
@pytest.mark.parametrize("model", MODELS, ids=lambda m: m[0])
def test_deepspeed_zero2_two_processes(model, zero2_run, tiny_train_cfg, tiny_inputs, tiny_tokenizer, tmp_path,
                                       tmp_path_factory):
    if model == recipe_of(TINY):  # tiny.yaml's own model: the session's ZeRO-2 run (fixtures_train.zero2_run)
        (run_dir, proc), extra = zero2_run, []
    else:
        extra = model_overrides(model, tiny_tokenizer)
        proc = launch(["--config_file", str(REPO / "launch" / "accelerate" / "zero2.yaml"), "--num_processes", "2"],
                      [*tiny_train_cfg.overrides(tmp_path), *STEPS, *extra])
        run_dir = tmp_path / "tiny"
    meta = _check_run(run_dir, proc)
    last = ckpt.step_dir(run_dir, 4)
    assert (last / "pytorch_model").is_dir()  # DeepSpeed's own sharded state, written by save_state
    assert (last / ckpt.EXPORT_WEIGHTS).is_file()  # plus full weights for eval and export
    assert meta["step"] == 4
    _same_as_one_process(run_dir, one_process(tiny_train_cfg, tiny_inputs, tmp_path_factory, extra))
