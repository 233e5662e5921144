"""Top-K ranking metrics against a target set (one item for next-item protocols, N items for horizons).

For a ranked list r_1..r_K and a target set T (repeats inside the horizon count once):
  HR@K     = 1 if any r_i in T
  Recall@K = |{r_i in T}| / |T|
  NDCG@K   = sum_{r_i in T} 1/log2(i+1) / sum_{i <= min(|T|, K)} 1/log2(i+1)
  MRR@K    = 1/i for the first i with r_i in T, else 0
Means are over users. Per-position metrics ask, for the j-th target of the horizon, whether it is in the
top K. Coverage@K = distinct items in all top-K lists / catalog size. Lists hold item rows, -1 = empty.
"""
import math
from typing import Sequence

import numpy as np

METRICS = ("HR", "Recall", "NDCG", "MRR")


def _user_metrics(recs: Sequence[int], targets: set, k: int) -> dict:
    top = [r for r in list(recs)[:k]]
    hits = [i for i, r in enumerate(top) if r >= 0 and r in targets]
    # Repeated items inside one list would count twice; lists are deduplicated upstream, guard anyway.
    seen, unique_hits = set(), []
    for i in hits:
        if top[i] not in seen:
            seen.add(top[i])
            unique_hits.append(i)
    dcg = sum(1.0 / math.log2(i + 2) for i in unique_hits)
    idcg = sum(1.0 / math.log2(i + 2) for i in range(min(len(targets), k)))
    return {"HR": float(bool(unique_hits)), "Recall": len(unique_hits) / len(targets),
            "NDCG": dcg / idcg, "MRR": 1.0 / (unique_hits[0] + 1) if unique_hits else 0.0}


def ranking_metrics(recs: Sequence[Sequence[int]], targets: Sequence[Sequence[int]], ks: Sequence[int]) -> dict:
    """{"HR@1": mean, ...} for every metric and K; `targets[u]` must be non-empty."""
    if len(recs) != len(targets):
        raise ValueError(f"{len(recs)} recommendation lists but {len(targets)} target lists")
    sums = {f"{m}@{k}": 0.0 for k in ks for m in METRICS}
    for u, (rec, tgt) in enumerate(zip(recs, targets)):
        tgt = set(int(t) for t in tgt)
        if not tgt:
            raise ValueError(f"user {u} has no target items")
        for k in ks:
            for name, value in _user_metrics(rec, tgt, k).items():
                sums[f"{name}@{k}"] += value
    n = max(len(recs), 1)
    return {key: value / n for key, value in sums.items()}


def position_hit_rates(recs: Sequence[Sequence[int]], targets: Sequence[Sequence[int]], ks: Sequence[int]) -> dict:
    """{K: [share of users whose j-th target is in their top K, for j = 0..N-1]} (users lacking a j-th
    target are left out of position j)."""
    horizon = max((len(t) for t in targets), default=0)
    out = {}
    for k in ks:
        hits, counts = np.zeros(horizon), np.zeros(horizon)
        for rec, tgt in zip(recs, targets):
            top = set(int(r) for r in list(rec)[:k] if r >= 0)
            for j, t in enumerate(tgt):
                counts[j] += 1
                hits[j] += int(t) in top
        out[k] = [float(h / c) if c else 0.0 for h, c in zip(hits, counts)]
    return out


def coverage(recs: Sequence[Sequence[int]], n_items: int, ks: Sequence[int]) -> dict:
    return {f"Coverage@{k}": len({int(r) for rec in recs for r in list(rec)[:k] if r >= 0}) / n_items for k in ks}


def sampled_negative_metrics(scores, histories, targets, n_negatives: int, ks: Sequence[int], seed: int = 0,
                             offset: int = 0) -> dict:
    """HR@K / NDCG@K of each single target ranked among `n_negatives` items drawn uniformly without replacement
    from the catalog rows neither in the history nor the target (the SASRec / MFGAN papers' protocol).

    `scores` Float[B, N] (array-like). Case i draws with rng (seed, offset + i), so every model scored on the
    same cases meets the same negatives. A negative scored equal to the target counts as ranked above it.
    Returns sums over the cases (divide by the case count), so batches add up.
    """
    scores = np.asarray(scores, dtype=np.float64)
    sums = {f"{m}@{k}": 0.0 for k in ks for m in ("HR", "NDCG")}
    for i, (row, history, target) in enumerate(zip(scores, histories, targets)):
        if len(target) != 1:
            raise ValueError(f"case {offset + i}: the sampled-negatives protocol needs one target, got {len(target)}")
        target = int(target[0])
        allowed = np.setdiff1d(np.arange(len(row)), np.asarray(list(history) + [target], dtype=np.int64))
        rng = np.random.default_rng([seed, offset + i])
        negatives = rng.choice(allowed, size=min(n_negatives, len(allowed)), replace=False)
        rank = int((row[negatives] >= row[target]).sum())
        for k in ks:
            sums[f"HR@{k}"] += float(rank < k)
            sums[f"NDCG@{k}"] += 1.0 / math.log2(rank + 2) if rank < k else 0.0
    return sums


def per_user(recs, targets, k: int) -> dict:
    """{"HR": Float[U], "NDCG": Float[U]} at k."""
    values = [_user_metrics(r, set(int(t) for t in tgt), k) for r, tgt in zip(recs, targets)]
    return {m: np.array([v[m] for v in values]) for m in ("HR", "NDCG")}


def bootstrap_ratio(a: np.ndarray, b: np.ndarray, n: int = 1000, seed: int = 0) -> tuple[float, float, float]:
    """mean(a) / mean(b) and its 95% percentile interval over users resampled with replacement (pairs kept)."""
    rng = np.random.default_rng(seed)
    ratio = float(a.mean() / b.mean()) if b.mean() > 0 else float("nan")
    num, den = np.empty(n), np.empty(n)
    step = max(1, (1 << 22) // max(len(a), 1))  # resamples drawn in blocks of ~4 M indexes: the same stream
    for start in range(0, n, step):
        idx = rng.integers(0, len(a), size=(min(step, n - start), len(a)))
        num[start:start + len(idx)], den[start:start + len(idx)] = a[idx].mean(1), b[idx].mean(1)
    ratios = np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)
    lo, hi = np.nanpercentile(ratios, [2.5, 97.5]) if np.isfinite(ratios).any() else (float("nan"),) * 2
    return ratio, float(lo), float(hi)


def bootstrap_mean(a: np.ndarray, n: int = 1000, seed: int = 0) -> tuple[float, float, float]:
    """mean(a) and its 95% percentile interval over users resampled with replacement."""
    a = np.asarray(a, dtype=float)
    means = a[np.random.default_rng(seed).integers(0, len(a), size=(n, len(a)))].mean(1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(a.mean()), float(lo), float(hi)
