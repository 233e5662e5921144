"""AdamW with decoupled weight decay on matrices only, and linear warmup + cosine decay to a floor."""
import math

import torch


def build_optimizer(model: torch.nn.Module, train_cfg) -> torch.optim.AdamW:
    """A plain torch AdamW (also under DeepSpeed: a DeepSpeed-config optimizer would JIT-build fused_adam)."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        # Biases, norms and embedding tables are not shrunk toward zero.
        (no_decay if param.ndim < 2 or "embed" in name or "norm" in name else decay).append(param)
    groups = [{"params": decay, "weight_decay": train_cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=train_cfg.lr, betas=tuple(train_cfg.betas))


def lr_factor(step: int, warmup_steps: int, max_steps: int, min_lr_ratio: float) -> float:
    """Multiplier of the peak lr at optimizer step `step` (0-based)."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, max_steps - warmup_steps))
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(optimizer, train_cfg) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, train_cfg.warmup_steps, train_cfg.max_steps, train_cfg.min_lr_ratio))
