"""Every shipped YAML loads (litgpt-style config hub test), and the bundled sample imports with its specs."""
import json
from pathlib import Path

import pytest
import yaml

from recgpt.config import RecGPTConfig, load_config, load_dataset_spec
from recgpt.config.data import DatasetSpec

REPO = Path(__file__).resolve().parents[1]
SECTIONS = set(RecGPTConfig.__dataclass_fields__)
DATASET_YAMLS = sorted((REPO / "configs" / "datasets").glob("*.yaml"))
OTHER_YAMLS = sorted(p for p in (REPO / "configs").rglob("*.y*ml") if p.parent.name != "datasets")
LAUNCH_FILES = sorted(p for p in (REPO / "launch").rglob("*") if p.suffix in (".yaml", ".yml", ".json"))


@pytest.mark.parametrize("path", DATASET_YAMLS, ids=lambda p: p.name)
def test_dataset_specs_load(path):
    spec = load_dataset_spec(path)
    assert isinstance(spec, DatasetSpec) and spec.name == path.stem
    assert spec.files, f"{path.name}: no files configured"


def _leaves(tree: dict, prefix: str = ""):
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


@pytest.mark.parametrize("path", OTHER_YAMLS, ids=lambda p: p.name)
def test_pipeline_configs_load(path):
    """Every value the YAML sets reaches the typed config (nothing ignored, nothing renamed), and every dataset it
    names has a spec."""
    from recgpt.config import config_to_dict

    cfg = load_config(path)
    loaded = dict(_leaves(config_to_dict(cfg)))
    written = dict(_leaves(yaml.safe_load(path.read_text())))
    assert written, f"{path.name} sets nothing"
    for key, value in written.items():
        assert key in loaded, f"{path.name}: {key} is not a config key"
        if isinstance(value, str) and isinstance(loaded[key], float):
            value = float(value)  # YAML 1.1 reads 3e-3 as text; the typed config as the float it is
        assert loaded[key] == value, (key, loaded[key], value)
    assert cfg.data.datasets
    for name in cfg.data.datasets:
        assert load_dataset_spec(name).name == name


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_files_parse(path):
    text = path.read_text()
    data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    assert isinstance(data, dict) and data, f"{path}: empty or not a mapping"
    if path.suffix != ".json" and set(data) <= SECTIONS:  # a recgpt config, not an accelerate one
        load_config(path)


def test_sample_specs_import_from_the_bundled_sample(tmp_path):
    from recgpt.data import build_corpus, load_corpus, load_prepared

    cfg = load_config(REPO / "configs" / "sample.yaml").data
    sample = REPO / cfg.raw_root
    size = sum(p.stat().st_size for p in sample.rglob("*") if p.is_file())
    assert size < 5 * 2 ** 20, f"bundled sample is {size} bytes"
    cfg.raw_root, cfg.prepared_root, cfg.corpus_dir = str(sample), str(tmp_path / "prep"), str(tmp_path / "corpus")
    corpus = load_corpus(build_corpus(cfg))
    assert set(corpus.items["dataset"]) == set(cfg.datasets) and len(cfg.datasets) >= 2
    users = corpus.manifest["counts"]["splits"]
    assert users["train"]["users"] + users["heldout"]["users"] == 300 + 1200
    from recgpt.data import prepare_dataset

    steam = load_prepared(prepare_dataset(load_dataset_spec("sample_steam"), sample, tmp_path / "steam"))
    assert steam.manifest["counts"]["users"] == 1500
    assert steam.interactions.groupby("user_id").size().min() >= 3


def test_make_sample_reproduces_the_committed_sample(tmp_path, data_root):
    import subprocess
    import sys

    subprocess.run([sys.executable, str(REPO / "data_processing" / "make_sample.py"), "--out", str(tmp_path),
                    f"data.raw_root={data_root}"], check=True, capture_output=True)
    committed = REPO / "data" / "sample"
    made = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert made and all((committed / p).read_bytes() == (tmp_path / p).read_bytes() for p in made)


@pytest.mark.parametrize("override", ["format=xml", "timestamp_unit=days", "imports.null_timestamps=middle",
                                      "imports.duplicates=merge", "text.max_chars=0", "name=a:b",
                                      "imports.duplicate=drop"])
def test_bad_dataset_spec_values_name_the_key(override):
    """The message names the spec file and the key exactly as it is written in the YAML."""
    import re

    from recgpt.config import ConfigError

    key, value = override.split("=")
    with pytest.raises(ConfigError) as error:
        load_dataset_spec("steam", [override])
    message = str(error.value)
    assert message.startswith(str(REPO / "configs" / "datasets" / "steam.yaml") + ": "), message
    assert re.search(rf"(^|[\s:]){re.escape(key)}:", message), message  # the whole key, not a fragment of it
    assert "\n" not in message


def test_repeated_corpus_datasets_rejected():
    from recgpt.config import ConfigError

    with pytest.raises(ConfigError, match="data.datasets"):
        load_config(None, ["data.datasets=[lastfm,lastfm]"])
