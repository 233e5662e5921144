"""The typed config tree: defaults <- YAML <- dotted overrides, with errors that name the key."""
import pytest

from recgpt.config import ConfigError, RecGPTConfig, load_config, save_config


def test_overrides_take_precedence_over_yaml(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  lr: 0.01\n  max_steps: 7\n")
    cfg = load_config(path, ["train.lr=3e-4"])
    assert isinstance(cfg, RecGPTConfig)
    assert cfg.train.lr == pytest.approx(3e-4)
    assert cfg.train.max_steps == 7  # from the YAML
    assert cfg.model.n_layers == RecGPTConfig().model.n_layers  # untouched default


@pytest.mark.parametrize("override, fragment", [
    ("train.bogus=1", "train.bogus"),
    ("bogus.lr=1", "bogus"),
    ("train.lr=abc", "train.lr"),
    ("train.lr=-1", "train.lr"),
    ("model.codes.head=sideways", "model.codes.head"),
    ("model.n_heads=5", "model.d_model"),
    ("data.heldout_users=1.5", "data.heldout_users"),
    ("data.train_users=0", "data.train_users"),
])
def test_bad_values_fail_naming_the_key(override, fragment):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)


def test_unknown_key_in_yaml_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  learning_rate: 0.1\n")
    with pytest.raises(ConfigError, match="bad.yaml.*train.learning_rate"):
        load_config(path)


def test_malformed_override_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="key=value"):
        load_config(None, ["train.lr"])
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config(None, ["train.lr=0.002", "data.datasets=[ml-100k]"])
    save_config(cfg, tmp_path / "resolved.yaml")
    again = load_config(tmp_path / "resolved.yaml")
    assert again == cfg


def test_unquoted_no_on_the_command_line_means_no_mixed_precision():
    from recgpt.config import load_config

    assert load_config(None, ["train.mixed_precision=no"]).train.mixed_precision == "no"
    assert load_config(None, ["train.mixed_precision=bf16"]).train.mixed_precision == "bf16"
