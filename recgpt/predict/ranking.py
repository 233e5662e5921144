"""Top-k of score rows: what every ranking in recgpt.predict (model, hybrid, content kNN) ends with."""
from typing import Optional, Sequence

import torch

SCORE_BYTES = 1 << 28  # a [rows, N] float32 score matrix of the full-catalog paths: 256 MiB (a few live at once)
NEG_INF = float("-inf")


def histories_per_pass(n_items: int, rows_per_history: int = 1, budget: Optional[int] = None) -> int:
    """How many histories a full-catalog path takes at a time: its [rows, N] float32 scores under `budget`
    (default SCORE_BYTES; a beam's or RRA's rows counted per history); at least one."""
    budget = SCORE_BYTES if budget is None else budget
    return max(1, budget // (4 * max(n_items, 1) * rows_per_history))


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


def merge_top_k(best: Optional[tuple], scores: torch.Tensor, offset: int, k: int) -> tuple:
    """The running (values, rows) top-k merged with one chunk's Float[B, M] scores, whose first column is catalog row
    `offset`: best first, ties to the smaller row (as a stable sort of the whole row would give). Earlier chunks
    hold smaller rows, so the running entries go first among equals."""
    m = min(k, scores.shape[1])
    vals, idx = scores.topk(m, dim=1)
    for b in ((scores >= vals[:, -1:]).sum(1) > m).nonzero().flatten().tolist():  # a tie straddles the cut
        v, i = torch.sort(scores[b], descending=True, stable=True)
        vals[b], idx[b] = v[:m], i[:m]
    idx, order = idx.sort(dim=1)  # (value desc, row asc): rows ascending, then a stable sort on the values
    vals, idx = vals.gather(1, order), idx + offset
    if best is not None:
        vals, idx = torch.cat([best[0], vals], dim=1), torch.cat([best[1], idx], dim=1)
    vals, order = vals.sort(dim=1, descending=True, stable=True)
    return vals[:, :k], idx.gather(1, order)[:, :k]
