"""Bad input to pretraining fails before any work, with a message naming the key, path or value."""
from types import SimpleNamespace

import pytest

from fixtures_train import TINY
from recgpt.config import ConfigError, load_config
from recgpt.train import main
from recgpt.train.trainer import reconcile_deepspeed


@pytest.mark.parametrize("override, words", [
    ("train.bogus=1", ["train.bogus"]),
    ("train.lr=fast", ["train.lr"]),
    ("train.lr=-1", ["train.lr", "> 0"]),
    ("train.batching=zigzag", ["train.batching", "zigzag"]),
    ("train.min_lr_ratio=2", ["train.min_lr_ratio"]),
])
def test_bad_config_fails_through_the_entry_point(override, words, capsys, tmp_path):
    assert main(["--config", str(TINY), f"run.output_root={tmp_path}", override]) == 2
    err = capsys.readouterr().err
    assert all(w in err for w in words), err
    assert not any(tmp_path.iterdir())  # nothing was started


def test_missing_corpus_and_tokenizer_are_named(tmp_path, capsys, train_corpus):
    assert main(["--config", str(TINY), f"data.corpus_dir={tmp_path / 'no_corpus'}", f"run.output_root={tmp_path}"]) == 2
    assert str(tmp_path / "no_corpus") in capsys.readouterr().err
    assert main(["--config", str(TINY), f"data.corpus_dir={train_corpus}", f"run.output_root={tmp_path}",
                 f"tokenizer.output_dir={tmp_path / 'no_tok'}"]) == 2
    assert str(tmp_path / "no_tok") in capsys.readouterr().err


def _fake_accelerator(ds_config: dict, world: int = 2):
    plugin = SimpleNamespace(deepspeed_config=ds_config)
    return SimpleNamespace(state=SimpleNamespace(deepspeed_plugin=plugin), num_processes=world,
                           gradient_accumulation_steps=1)


def test_deepspeed_auto_values_are_filled_from_the_recgpt_config():
    train = load_config(TINY, ["train.grad_accum=4", "train.grad_clip=0.5"]).train
    ds = {"train_micro_batch_size_per_gpu": "auto", "gradient_accumulation_steps": "auto",
          "gradient_clipping": "auto", "train_batch_size": "auto",
          "zero_optimization": {"stage": 2, "reduce_bucket_size": "auto"}}
    acc = _fake_accelerator(ds)
    reconcile_deepspeed(acc, train, micro_batch_rows=8, d_model=64)
    assert ds["gradient_accumulation_steps"] == 4 and ds["gradient_clipping"] == 0.5
    assert ds["train_micro_batch_size_per_gpu"] == 8 and ds["train_batch_size"] == 8 * 4 * 2
    assert ds["zero_optimization"]["reduce_bucket_size"] == 64 * 64
    assert acc.gradient_accumulation_steps == 4


@pytest.mark.parametrize("key, value, names", [
    ("gradient_accumulation_steps", 8, "train.grad_accum"),
    ("gradient_clipping", 5.0, "train.grad_clip"),
    ("train_micro_batch_size_per_gpu", 16, "train.tokens_per_batch"),
])
def test_deepspeed_config_that_contradicts_recgpt_is_reported(key, value, names):
    train = load_config(TINY).train
    with pytest.raises(ConfigError, match=rf"{key}={value}.*{names}"):
        reconcile_deepspeed(_fake_accelerator({key: value}), train, micro_batch_rows=8, d_model=64)
    same = {"gradient_accumulation_steps": train.grad_accum, "gradient_clipping": train.grad_clip,
            "train_micro_batch_size_per_gpu": 8}[key]
    reconcile_deepspeed(_fake_accelerator({key: same}), train, micro_batch_rows=8, d_model=64)  # agreeing is fine


def test_deepspeed_optimizer_section_is_refused():
    with pytest.raises(ConfigError, match="optimizer"):
        reconcile_deepspeed(_fake_accelerator({"optimizer": {"type": "AdamW"}}), load_config(TINY).train, 8, 64)


def test_cli_dispatches_pretrain_and_eval(tmp_path, capsys):
    from recgpt.cli import main as cli

    assert cli(["pretrain", "--config", str(TINY), f"run.output_root={tmp_path}", "train.warmup_steps=-3"]) == 2
    assert "train.warmup_steps" in capsys.readouterr().err
    assert cli(["eval", "--ckpt", str(tmp_path / "nowhere")]) == 2
    assert str(tmp_path / "nowhere") in capsys.readouterr().err


def test_launcher_accumulation_that_contradicts_recgpt_is_reported(monkeypatch):
    from recgpt.train.trainer import make_accelerator

    monkeypatch.setenv("ACCELERATE_GRADIENT_ACCUMULATION_STEPS", "4")
    with pytest.raises(ConfigError, match="gradient_accumulation_steps=4.*train.grad_accum=1"):
        make_accelerator(load_config(TINY))
