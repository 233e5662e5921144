"""Config of pretraining (optimiser, schedule, batching, checkpoints, logging)."""
from dataclasses import dataclass, field
from typing import Optional

from recgpt.config.errors import check


@dataclass
class TrainConfig:
    max_steps: int = 1000
    lr: float = 3e-4
    weight_decay: float = 0.01
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio at max_steps
    grad_clip: float = 1.0  # max global grad norm; 0 disables clipping
    grad_accum: int = 1
    tokens_per_batch: int = 16384  # per device and micro-batch, padding included
    # pack: several users per row (segment ids), rows of `row_items` items; bucket: one user per row,
    # rows of similar length padded to the longest in their batch. Never padded to a fixed maximum.
    batching: str = "pack"
    row_items: int = 0  # items per packed row; 0 = model.max_items
    mixed_precision: str = "bf16"  # no | bf16 | fp16
    eval_every: int = 200
    eval_max_batches: int = 0  # cap on held-out micro-batches per periodic eval; 0 = the whole split
    save_every: int = 200
    keep_last: int = 3
    # also save the untrained state as step 0, so checkpoint selection (eval.select_by=zero_shot) can prefer
    # not training at all when training transfers worse (it counts toward keep_last)
    save_initial: bool = False
    resume: bool = True  # continue from the newest complete checkpoint of the run, if any
    log_every: int = 10
    trackers: list[str] = field(default_factory=lambda: ["jsonl"])  # jsonl, tensorboard, wandb
    # Peak FLOP/s of one device for the MFU estimate; 0 = look the device up in the table of known GPUs.
    # Where neither gives a peak (CPUs, unknown GPUs) the log shows tokens/s and "mfu n/a".
    peak_flops: float = 0.0
    # Inputs (None = the usual places: <tokenizer.output_dir>/codes.safetensors, <corpus_dir>/embeddings).
    codes_path: Optional[str] = None
    text_embeddings_dir: Optional[str] = None
    # Fine-tuning: start from an exported model (ckpt/<run>/best); training must use its tokenizer.
    init_from: Optional[str] = None
    # pretrained: start from init_from's weights | random: its architecture and tokenizer, fresh weights (the
    # from-scratch control of a fine-tuning run, the same model by construction)
    init_weights: str = "pretrained"
    seed: int = 0

    def __post_init__(self):
        check(self.max_steps >= 1, "train.max_steps", f"must be >= 1, got {self.max_steps}")
        check(self.lr > 0, "train.lr", f"must be > 0, got {self.lr}")
        check(self.weight_decay >= 0, "train.weight_decay", f"must be >= 0, got {self.weight_decay}")
        check(len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas), "train.betas",
              f"two values in [0, 1), got {self.betas}")
        check(self.warmup_steps >= 0, "train.warmup_steps", f"must be >= 0, got {self.warmup_steps}")
        check(0.0 <= self.min_lr_ratio <= 1.0, "train.min_lr_ratio", f"must be in [0, 1], got {self.min_lr_ratio}")
        check(self.grad_clip >= 0, "train.grad_clip", f"must be >= 0, got {self.grad_clip}")
        check(self.grad_accum >= 1, "train.grad_accum", f"must be >= 1, got {self.grad_accum}")
        check(self.batching in ("pack", "bucket"), "train.batching", f"pack|bucket, got {self.batching!r}")
        check(self.row_items >= 0, "train.row_items", f"must be >= 0, got {self.row_items}")
        if self.mixed_precision == "False":  # YAML 1.1 reads an unquoted `no` (train.mixed_precision=no) as false
            self.mixed_precision = "no"
        check(self.mixed_precision in ("no", "bf16", "fp16"), "train.mixed_precision",
              f"no|bf16|fp16, got {self.mixed_precision!r}")
        check(self.eval_every >= 1, "train.eval_every", f"must be >= 1, got {self.eval_every}")
        check(self.eval_max_batches >= 0, "train.eval_max_batches", f"must be >= 0, got {self.eval_max_batches}")
        check(self.save_every >= 1, "train.save_every", f"must be >= 1, got {self.save_every}")
        check(self.log_every >= 1, "train.log_every", f"must be >= 1, got {self.log_every}")
        check(self.keep_last >= 1, "train.keep_last", f"must be >= 1, got {self.keep_last}")
        check(self.tokens_per_batch >= 1, "train.tokens_per_batch", f"must be >= 1, got {self.tokens_per_batch}")
        check(self.peak_flops >= 0, "train.peak_flops", f"must be >= 0, got {self.peak_flops}")
        check(self.init_weights in ("pretrained", "random"), "train.init_weights",
              f"pretrained|random, got {self.init_weights!r}")
        check(self.init_weights == "pretrained" or bool(self.init_from), "train.init_weights",
              "random takes the architecture of train.init_from, which is not set")
        known = {"jsonl", "tensorboard", "wandb"}
        check(set(self.trackers) <= known, "train.trackers", f"unknown {sorted(set(self.trackers) - known)}")
