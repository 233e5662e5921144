"""Load the config tree: dataclass defaults <- YAML file <- dotted overrides, validated before any work."""
import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional, Union

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from recgpt.config.baselines import BaselineConfig
from recgpt.config.data import DataConfig, DatasetSpec
from recgpt.config.embed import EmbedConfig
from recgpt.config.errors import ConfigError, UnknownDataset, check
from recgpt.config.model import ModelConfig
from recgpt.config.predict import EvalConfig, PredictConfig
from recgpt.config.rerank import RerankConfig
from recgpt.config.tokenizer import TokenizerConfig
from recgpt.config.train import TrainConfig

# The shipped YAMLs live beside the package in a source checkout; RECGPT_CONFIGS points elsewhere.
CONFIGS_DIR = Path(os.environ.get("RECGPT_CONFIGS", Path(__file__).resolve().parents[2] / "configs"))


@dataclass
class RunConfig:
    name: str = "run"
    output_root: str = "ckpt"  # runs live in <output_root>/<name>
    seed: int = 0

    def __post_init__(self):
        plain = bool(self.name) and self.name not in (".", "..") and not set(self.name) & {"/", "\\", "\0"}
        check(plain, "run.name", f"a plain folder name (no '/', '\\', '.' or '..': the run lives in "
                                 f"run.output_root/<name>), got {self.name!r}")


@dataclass
class RecGPTConfig:
    run: RunConfig = field(default_factory=RunConfig)
    data: DataConfig = field(default_factory=DataConfig)
    embed: EmbedConfig = field(default_factory=EmbedConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    predict: PredictConfig = field(default_factory=PredictConfig)
    rerank: RerankConfig = field(default_factory=RerankConfig)
    baseline: BaselineConfig = field(default_factory=BaselineConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.run.output_root) / self.run.name

    def __post_init__(self):  # checks across sections
        if self.eval.score_fit:
            pretrained = set(self.data.datasets)
            for domain in self.eval.fit_domains:
                check(domain not in pretrained and Path(domain).name not in pretrained, "eval.score_fit_domains",
                      f"{domain} is a pretraining dataset (data.datasets), not a held-out source domain")


def _build(schema, sources: Iterable, what: str):
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), *sources)
        return OmegaConf.to_object(merged)  # instantiates the dataclasses: __post_init__ validates ranges
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None) or ""
        message = str(getattr(e, "msg", None) or e).splitlines()[0]
        raise ConfigError(f"{what}: {key + ': ' if key else ''}{message}") from None
    except TypeError as e:  # OmegaConf's "Cannot merge incompatible container types" names no key: find it
        key, expected, found = _container_mismatch(OmegaConf.to_container(OmegaConf.structured(schema)), sources)
        if key is None:
            raise
        raise ConfigError(f"{what}: {key}: expected a {expected}, found a {found} ({e})") from None
    except ConfigError as e:  # a range check of __post_init__: say which file it came from
        raise ConfigError(f"{what}: {e}" if what != "config" else str(e)) from None


def _container_mismatch(schema: dict, sources) -> tuple:
    """(dotted key, expected, found) of the first value that is a list where the schema has a mapping (e.g.
    `files: [a.inter, a.item]` for `files: {inter: a.inter, item: a.item}`) or the other way round."""
    kinds = {dict: "mapping (key: value)", list: "list"}

    def walk(want, got, prefix):
        for key, value in got.items():
            have = want.get(key) if isinstance(want, dict) else None
            for kind, name in kinds.items():
                other = list if kind is dict else dict
                if isinstance(have, kind) and isinstance(value, other):
                    return f"{prefix}{key}", name, kinds[other]
            if isinstance(have, dict) and isinstance(value, dict):
                found = walk(have, value, f"{prefix}{key}.")
                if found[0]:
                    return found
        return None, None, None

    for source in sources:
        found = walk(schema, OmegaConf.to_container(source) if not isinstance(source, dict) else source, "")
        if found[0]:
            return found
    return None, None, None


def load_config(path: Optional[Union[str, Path]] = None, overrides: Iterable[str] = ()) -> RecGPTConfig:
    """Defaults, then the YAML at `path` (if any), then `key=value` overrides; raises ConfigError."""
    sources = []
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        sources.append(load_yaml(path))
    overrides = list(overrides)
    if overrides:
        sources.append(parse_overrides(overrides))
    sources.insert(0, recipe_source(sources))
    return _build(RecGPTConfig, sources, str(path) if path else "config")


def recipe_source(sources: list):
    """The `model:` keys of the recipe the sources name (the last `model.recipe` wins; default text_dense), to be
    merged under them: a config names a recipe and overrides it key by key."""
    from recgpt.config.recipes import RECIPES, canonical, recipe_model

    name = ModelConfig.recipe
    for source in sources:
        model = source.get("model") if isinstance(source, DictConfig) else None
        if isinstance(model, DictConfig) and "recipe" in model:
            name = model["recipe"]
    name = canonical(name)
    check(isinstance(name, str) and name in RECIPES, "model.recipe", f"one of {sorted(RECIPES)}, got {name!r}")
    return OmegaConf.create({"model": recipe_model(name)})


def load_yaml(path: Path):
    """A YAML file whose top level is a mapping; errors name the file and line."""
    import yaml

    try:
        loaded = OmegaConf.load(path)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{where}: not valid YAML: {getattr(e, 'problem', None) or e}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot be read: {e}") from None
    if not isinstance(loaded, DictConfig):
        raise ConfigError(f"{path}: the top level must be a mapping of keys (e.g. `train:` / `data:`), "
                          f"found a {type(loaded).__name__.replace('Config', '').lower()}")
    return loaded


def parse_overrides(overrides: list):
    for item in overrides:
        if "=" not in item or item.startswith("="):
            raise ConfigError(f"override {item!r} is not of the form key=value")
    try:
        return OmegaConf.from_dotlist(overrides)
    except (OmegaConfBaseException, ValueError) as e:
        raise ConfigError(f"overrides {overrides}: {str(e).splitlines()[0]}") from None


def save_config(cfg, path: Union[str, Path]) -> None:
    """Write the resolved config (every value, not just the overrides) as YAML."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(OmegaConf.to_yaml(OmegaConf.structured(cfg)))


def config_to_dict(cfg) -> dict:
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)


def known_dataset_specs(configs_dir: Path = None) -> list[str]:
    folder = Path(configs_dir or CONFIGS_DIR) / "datasets"
    return sorted(p.stem for p in folder.glob("*.yaml"))


def load_dataset_spec(name_or_path: Union[str, Path], overrides: Iterable[str] = ()) -> DatasetSpec:
    """A dataset spec by name (configs/datasets/<name>.yaml) or by YAML path."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = CONFIGS_DIR / "datasets" / f"{name_or_path}.yaml"
    if not path.is_file():
        raise UnknownDataset(f"unknown dataset {str(name_or_path)!r}: no {path}; known: {', '.join(known_dataset_specs())}")
    sources = [load_yaml(path)]
    if overrides:
        sources.append(parse_overrides(list(overrides)))
    spec = _build(DatasetSpec, sources, str(path))
    if spec.name != path.stem:  # the prepared folder and its report are filed under spec.name
        raise ConfigError(f"{path}: name: {spec.name!r} differs from the file name {path.stem!r}; a dataset is "
                          f"prepared and reported under its name, so this spec would replace the report of "
                          f"{spec.name!r}: make the two equal")
    return spec


class ArgumentParser(argparse.ArgumentParser):
    """A bad command line is a ConfigError (one line), not argparse's usage dump and exit."""

    def error(self, message):
        raise ConfigError(f"{message} (see --help)")


def config_from_argv(argv, description: str = "", extra=None):
    """Parse `[--config FILE] [key=value ...]` plus any flags `extra(parser)` adds; returns (cfg, args).

    Entry points stay thin: they call this and hand the config to a package function.
    """
    parser = ArgumentParser(description=description)
    parser.add_argument("--config", default=None, help="YAML holding what differs from the defaults")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.lr=3e-4")
    if extra is not None:
        extra(parser)
    args = parser.parse_intermixed_args(argv)  # key=value overrides may come before or after the flags
    return load_config(args.config, args.overrides), args
