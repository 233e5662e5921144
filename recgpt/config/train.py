"""Config of pretraining (optimiser, schedule, batching, checkpoints, logging)."""
from dataclasses import dataclass, field

from recgpt.config.errors import check


@dataclass
class TrainConfig:
    max_steps: int = 1000
    lr: float = 3e-4
    weight_decay: float = 0.01
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    grad_accum: int = 1
    tokens_per_batch: int = 16384  # per device; packing fills rows up to this many tokens
    mixed_precision: str = "bf16"  # no | bf16 | fp16
    eval_every: int = 200
    save_every: int = 200
    keep_last: int = 3
    log_every: int = 10
    trackers: list[str] = field(default_factory=lambda: ["jsonl"])  # jsonl, tensorboard, wandb
    seed: int = 0

    def __post_init__(self):
        check(self.max_steps >= 1, "train.max_steps", f"must be >= 1, got {self.max_steps}")
        check(self.lr > 0, "train.lr", f"must be > 0, got {self.lr}")
        check(self.grad_accum >= 1, "train.grad_accum", f"must be >= 1, got {self.grad_accum}")
        check(self.mixed_precision in ("no", "bf16", "fp16"), "train.mixed_precision",
              f"no|bf16|fp16, got {self.mixed_precision!r}")
        check(self.keep_last >= 1, "train.keep_last", f"must be >= 1, got {self.keep_last}")
        check(self.tokens_per_batch >= 1, "train.tokens_per_batch", f"must be >= 1, got {self.tokens_per_batch}")
        known = {"jsonl", "tensorboard", "wandb"}
        check(set(self.trackers) <= known, "train.trackers", f"unknown {sorted(set(self.trackers) - known)}")
