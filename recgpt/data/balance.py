"""A catalog's own balance between content and popularity, read from its log without a label.

The score cos(last item, item) + a * log(1 + count) ranks each sampled sequence's last item from the item before
it (the items before it never ranked; a last item that repeats an earlier one left out), and the `a` of a fixed
grid with the highest mean gain 1 / log2(rank + 2) is the catalog's balance. It spans two orders of magnitude
between domains (docs/benchmarks.md, bench/balance.py: about .02 for the Amazon catalogs, .3 for yelp, .5 for
steam), which one learned weight cannot follow; the dense head's `popularity=balanced` takes it as given.
"""
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

GRID = (0.0, 0.005, 0.01, 0.02, 0.03, 0.05, 0.07, 0.1, 0.15, 0.2, 0.3, 0.5, 0.7, 1.0)
SEQUENCES = 2000  # sampled sequences per catalog


def seeded_subset(indices: Sequence[int], limit: int = SEQUENCES, seed: int = 0) -> list:
    """Up to `limit` of `indices`, drawn with `seed`, in their order."""
    indices = list(indices)
    if len(indices) > limit:
        indices = sorted(np.random.default_rng(seed).choice(indices, limit, replace=False).tolist())
    return indices


def log_balance(vectors: torch.Tensor, log_popularity: torch.Tensor, rows: Sequence[Sequence[int]],
                grid: Sequence[float] = GRID, block: int = 128) -> float:
    """The grid's a whose cos + a * log popularity ranks the rows' last items best (see the module); `vectors`
    Float[N, D] as the model sees the catalog (centered), `log_popularity` Float[N], `rows` catalog row lists.
    0.0 (content alone) when no row has an item to rank."""
    units = F.normalize(vectors.float(), dim=-1)
    pop = log_popularity.float().to(units.device)
    a = torch.tensor(list(grid), dtype=torch.float32, device=units.device)
    total, count = torch.zeros(len(a), device=units.device), 0
    usable = [r for r in rows if len(r) >= 2 and r[-1] not in r[:-1]]
    for start in range(0, len(usable), block):
        part = usable[start:start + block]
        target = torch.as_tensor([r[-1] for r in part], device=units.device)
        cos = units[torch.as_tensor([r[-2] for r in part], device=units.device)] @ units.t()  # [B, N]
        before = torch.zeros_like(cos, dtype=torch.bool)
        for b, r in enumerate(part):
            before[b, torch.as_tensor(r[:-1], device=units.device)] = True
        for j in range(len(a)):
            score = (cos + a[j] * pop[None]).masked_fill_(before, -float("inf"))
            rank = (score > score[torch.arange(len(part)), target][:, None]).sum(1)
            total[j] += (1 / torch.log2(rank.float() + 2)).sum()
        count += len(part)
    return float(grid[int(total.argmax())]) if count else 0.0
