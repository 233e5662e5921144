"""Every shipped accelerate YAML and DeepSpeed JSON parses and leaves recgpt's numbers to recgpt."""
import json
from pathlib import Path

import pytest
import yaml

LAUNCH = Path(__file__).resolve().parents[1] / "launch"
RECGPT_OWNED = ("train_micro_batch_size_per_gpu", "gradient_accumulation_steps", "gradient_clipping", "train_batch_size")


@pytest.mark.parametrize("path", sorted((LAUNCH / "deepspeed").glob("*.json")), ids=lambda p: p.name)
def test_deepspeed_json_leaves_batch_accumulation_clipping_and_lr_to_recgpt(path):
    ds = json.loads(path.read_text())
    assert all(ds[key] == "auto" for key in RECGPT_OWNED)
    assert "optimizer" not in ds and "scheduler" not in ds  # recgpt gives DeepSpeed a torch AdamW + schedule
    assert ds["bf16"]["enabled"] == "auto"
    if ds["zero_optimization"]["stage"] == 3:  # full weights can be exported from ZeRO-3 shards
        assert ds["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True


@pytest.mark.parametrize("path", sorted((LAUNCH / "accelerate").glob("*.yaml")), ids=lambda p: p.name)
def test_accelerate_yaml_parses_and_points_at_a_shipped_deepspeed_json(path):
    cfg = yaml.safe_load(path.read_text())
    assert cfg["distributed_type"] in ("NO", "MULTI_GPU", "DEEPSPEED")
    assert "mixed_precision" not in cfg and "gradient_accumulation_steps" not in cfg  # the recgpt config decides
    if cfg["distributed_type"] == "DEEPSPEED":
        ds_file = Path(cfg["deepspeed_config"]["deepspeed_config_file"])
        assert (LAUNCH.parent / ds_file).is_file()
    assert {p.stem for p in (LAUNCH / "accelerate").glob("*.yaml")} == {
        "single", "ddp", "zero1", "zero2", "zero3", "multinode_ddp", "multinode_zero2", "multinode_zero3",
        "multinode_zero2_pdsh"}


def test_full_size_pretrain_config_loads_with_the_recgpt_model_shape():
    from recgpt.config import load_config

    cfg = load_config(LAUNCH.parent / "configs" / "pretrain.yaml")
    assert (cfg.model.n_layers, cfg.model.d_model, cfg.model.n_heads) == (3, 768, 12)
    assert cfg.train.tokens_per_batch >= 40 * 1024 and cfg.train.warmup_steps < cfg.train.max_steps
