"""Top-k of score rows: what every ranking in recgpt.predict (model, hybrid, content kNN) ends with."""
from typing import Optional, Sequence

import torch

NEG_INF = float("-inf")


def top_k_items(scores: torch.Tensor, k: int, exclude: Optional[Sequence[Sequence[int]]] = None):
    """(rows Long[B, k'], scores [B, k']) best first, k' = min(k, N); excluded and -inf entries get row -1."""
    if exclude is not None and any(len(rows) for rows in exclude):
        scores = scores.clone()
        for i, rows in enumerate(exclude):
            if len(rows):
                scores[i, torch.as_tensor(list(rows), dtype=torch.long, device=scores.device)] = NEG_INF
    vals, idx = scores.topk(min(k, scores.shape[1]), dim=1)
    idx = torch.where(torch.isfinite(vals), idx, torch.full_like(idx, -1))
    return idx, vals
