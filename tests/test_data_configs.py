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


@pytest.mark.parametrize("path", OTHER_YAMLS, ids=lambda p: p.name)
def test_pipeline_configs_load(path):
    cfg = load_config(path)
    for name in cfg.data.datasets:
        load_dataset_spec(name)


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


@pytest.mark.parametrize("override, fragment", [
    ("format=xml", "format"),
    ("timestamp_unit=days", "timestamp_unit"),
    ("imports.null_timestamps=middle", "import.null_timestamps"),
    ("imports.duplicates=merge", "import.duplicates"),
    ("text.max_chars=0", "text.max_chars"),
    ("name=a:b", "name"),
])
def test_bad_dataset_spec_values_name_the_key(override, fragment):
    from recgpt.config import ConfigError

    with pytest.raises(ConfigError, match=fragment):
        load_dataset_spec("steam", [override])


def test_repeated_corpus_datasets_rejected():
    from recgpt.config import ConfigError

    with pytest.raises(ConfigError, match="data.datasets"):
        load_config(None, ["data.datasets=[lastfm,lastfm]"])
