"""One typed config tree for every recgpt stage.

Each component owns a dataclass in its own module; `RecGPTConfig` composes them. YAML files hold only what
differs from the defaults; dotted overrides (`train.lr=3e-4`) come last. Unknown keys, wrong types and
out-of-range values fail in `load_config`, before any work starts.
"""
from recgpt.config.baselines import BaselineConfig, FactorConfig, MFGANConfig
from recgpt.config.data import DataConfig, DatasetSpec, ImportConfig, TextConfig
from recgpt.config.embed import EmbedConfig
from recgpt.config.errors import ConfigError
from recgpt.config.loader import (
    config_from_argv,
    config_to_dict,
    RecGPTConfig,
    RunConfig,
    known_dataset_specs,
    load_config,
    load_dataset_spec,
    save_config,
)
from recgpt.config.model import ModelConfig
from recgpt.config.predict import EvalConfig, PredictConfig
from recgpt.config.rerank import RerankConfig
from recgpt.config.tokenizer import TokenizerConfig
from recgpt.config.train import TrainConfig

__all__ = [
    "BaselineConfig", "FactorConfig", "MFGANConfig", "ConfigError", "config_from_argv", "config_to_dict", "DataConfig", "DatasetSpec", "EmbedConfig", "EvalConfig", "ImportConfig", "ModelConfig",
    "PredictConfig", "RecGPTConfig", "RerankConfig", "RunConfig", "TextConfig", "TokenizerConfig", "TrainConfig",
    "known_dataset_specs", "load_config", "load_dataset_spec", "save_config",
]
