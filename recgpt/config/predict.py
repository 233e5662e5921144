"""Config of checkpoint selection and prediction."""
from dataclasses import dataclass, field
from typing import Optional

from recgpt.config.errors import check


@dataclass
class EvalConfig:
    # heldout_users: held-out users of the pretraining corpus; domains: separate prepared datasets
    source: str = "heldout_users"
    domains: list[str] = field(default_factory=list)
    batch_tokens: int = 16384

    def __post_init__(self):
        check(self.source in ("heldout_users", "domains"), "eval.source", f"heldout_users|domains, got {self.source!r}")


@dataclass
class PredictConfig:
    dataset: Optional[str] = None
    model_dir: str = "ckpt/run/best"
    output_dir: Optional[str] = None
    protocol: str = "loo"  # loo | cold | horizon
    horizon: int = 1
    strategy: str = "exact"  # exact | beam | greedy | sample | rra | ra
    beam_size: int = 20
    temperature: float = 1.0
    n_samples: int = 8
    ks: list[int] = field(default_factory=lambda: [1, 3, 5, 10, 20])
    allow_history: bool = True
    batch_size: int = 256
    max_users: Optional[int] = None
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self):
        check(self.protocol in ("loo", "cold", "horizon"), "predict.protocol", f"loo|cold|horizon, got {self.protocol!r}")
        check(self.horizon >= 1, "predict.horizon", f"must be >= 1, got {self.horizon}")
        strategies = ("exact", "beam", "greedy", "sample", "rra", "ra")
        check(self.strategy in strategies, "predict.strategy", f"one of {strategies}, got {self.strategy!r}")
        check(len(self.ks) > 0 and all(k >= 1 for k in self.ks), "predict.ks", f"positive ints, got {self.ks}")
        check(self.temperature > 0, "predict.temperature", f"must be > 0, got {self.temperature}")
