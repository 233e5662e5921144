"""Score weights chosen per user from the user's own history (`predict.weights=self`).

Hybrid weights fitted on another domain carry that domain's balance between the model, content kNN and
popularity, and the best balance differs between domains by a factor of ten or more (docs/benchmarks.md, "Can
one balance ... carry across domains?"). A user's history says which balance suits that user: every point of
the weight grid ranks the user's last history item from the items before it, and the user is scored with the
point that ranked it best, its gain 1 / log2(rank + 2) plus `strength` times a prior over the grid relative to
its best point. The prior is the domain's own log where the caller gives it (`log_prior`: the same ranking of
each of up to 2,000 seeded log sequences' last item from the items before it, averaged: the log's balance, read
as popularity is, never a held-out target), else the fitted grid's NDCG on the fit domain; a fit made on the
catalog's own dataset (in-domain, on its validation users) is its own labelled balance and stays the prior. A
user with one history item, or whose last item repeats an earlier one, has nothing to rank and gets the prior's
best point.
"""
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from recgpt.predict.hybrid import (MODEL_COMPONENTS, SCORE_FIT, best_model_free, component_chunks, grid_ranks,
                                   model_free, rank_gains)
from recgpt.predict.ranking import top_k_items
from recgpt.predict.scoring import combine

# chosen on the ten source domains of bench/balance.py (no held-out target), LOO and cold: with the fit domain's
# grid as the prior (no log given), and with the domain's own log as the prior
STRENGTH = 0.2
LOG_STRENGTH = 2.0
LOG_SEQUENCES = 2000


def own_cases(histories: Sequence[Sequence[int]]) -> tuple[list, list, list]:
    """(user indexes, histories without their last item, that last item) of the histories with two items or more."""
    users = [u for u, h in enumerate(histories) if len(h) >= 2]
    return users, [list(histories[u])[:-1] for u in users], [int(histories[u][-1]) for u in users]


def choose(own_ranks: torch.Tensor, users: Sequence[int], n_users: int, prior: Sequence[float],
           strength: float = STRENGTH) -> torch.Tensor:
    """Int64[n_users]: each user's grid point. `own_ranks` Int64[G, len(users)]: `grid_ranks` of each user's last
    history item (-1: nothing to rank); `prior` [G]: the fitted grid's NDCG. Ties go to the earlier grid point."""
    prior = torch.as_tensor(list(prior), dtype=torch.float64)
    if prior.numel() != own_ranks.shape[0]:
        raise ValueError(f"prior has {prior.numel()} values for a grid of {own_ranks.shape[0]} points")
    prior = prior / prior.max().clamp_min(1e-12)
    score = (strength * prior)[:, None].expand(-1, n_users).clone()
    ranked = own_ranks.ge(0).all(0)  # a repeated last item is excluded at every point alike
    index = torch.as_tensor(list(users), dtype=torch.long)[ranked]
    score[:, index] += rank_gains(own_ranks[:, ranked], None)
    return torch.argmax(score - 1e-12 * torch.arange(len(prior), dtype=torch.float64)[:, None], 0)


def own_ranks(rec, histories: Sequence[Sequence[int]], grid: Sequence[dict]) -> tuple[list, torch.Tensor]:
    """(users with an own item, Int64[G, len(users)]: `grid_ranks` of each one's last history item from the items
    before it), from a Recommender's components; the catalog's popularity is the one the histories are scored with."""
    users, before, last = own_cases(histories)
    if not users:
        return users, torch.zeros(len(grid), 0, dtype=torch.long)
    names = sorted({n for w in grid for n in w})
    return users, grid_ranks(component_chunks(rec, before, names), last, before, grid, rec.catalog.n_items)


def log_rows(sequences: Sequence[Sequence], catalog, limit: int = LOG_SEQUENCES, seed: int = 0,
             min_items: int = 2) -> list:
    """Catalog rows of up to `limit` seeded sequences of a domain's log (item ids, oldest first) that keep
    `min_items` items or more in the catalog: what `log_prior` ranks."""
    eligible = [i for i, s in enumerate(sequences) if len(s) >= min_items]
    if len(eligible) > limit:
        eligible = sorted(np.random.default_rng(seed).choice(eligible, limit, replace=False).tolist())
    rows = (catalog.rows([str(i) for i in sequences[i]])[0] for i in eligible)
    return [r for r in rows if len(r) >= min_items]


def log_prior(rec, rows: Sequence[Sequence[int]], grid: Sequence[dict], own: Optional[tuple] = None) -> Optional[list]:
    """Per grid point, the mean gain 1 / log2(rank + 2) of each log sequence's last item ranked from the items
    before it (`rows`: log_rows; a repeated last item left out), relative to the best point; None when no
    sequence has an item to rank. `own`: `own_ranks` of `rows` on `grid`, when already computed."""
    _, ranks = own if own is not None else own_ranks(rec, rows, grid)
    ranks = ranks[:, ranks.ge(0).all(0)]
    if ranks.shape[1] == 0:
        return None
    mean = rank_gains(ranks, None).mean(1)
    return (mean / mean.max().clamp_min(1e-12)).tolist()


def self_weights(rec, histories: Sequence[Sequence[int]], grid: Sequence[dict], prior: Sequence[float],
                 strength: float = STRENGTH) -> torch.Tensor:
    """Int64[len(histories)]: the grid point each history is scored with (`choose` on `own_ranks`)."""
    users, ranks = own_ranks(rec, histories, grid)
    return choose(ranks, users, len(histories), prior, strength)


def priors_points(rec, histories: Sequence[Sequence[int]], plan: Optional[tuple], own: Optional[tuple] = None):
    """(grid, Int64[len(histories)] grid points) of the priors row, content kNN and popularity weighted as the model
    is but without it (what a user combines without recgpt): with per-user weights (`plan`: the (grid, prior,
    strength) of Recommender.weights_plan) each history's `choose` among the grid's points with the model's
    components at 0, else the fitted grid's best such point for every history. None without a fitted grid or
    without such a point in it. `own`: `own_ranks` of the histories on the plan's grid, when already computed."""
    if plan is not None:
        grid, prior, strength = plan
        free = model_free(grid)
        if not free:
            return None
        users, ranks = own if own is not None else own_ranks(rec, histories, grid)
        chosen = choose(ranks[free], users, len(histories), [prior[i] for i in free], strength)
        return grid, torch.as_tensor(free, dtype=torch.long)[chosen]
    if rec.weight_prior is None:
        return None
    grid, relative = rec.weight_prior
    best = best_model_free(grid, relative)
    return None if best is None else (grid, torch.full((len(histories),), best, dtype=torch.long))


def read_prior(model_dir) -> Optional[tuple[list, list]]:
    """(grid, NDCG relative to the best point) of the score fit stored beside an exported model (score_fit.json,
    written by `recgpt eval` with eval.score_fit), or None when the export has no such grid."""
    from recgpt.io import read_json

    path = Path(model_dir) / SCORE_FIT
    table = read_json(path).get("table") if path.is_file() else None
    if not table:
        return None
    try:
        return [dict(row["weights"]) for row in table], [float(row["relative"]) for row in table]
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path}: its table must list {{'weights': {{...}}, 'relative': float}} rows ({e!r})") from None


def read_fit_domains(model_dir) -> list:
    """The datasets the score fit stored beside an exported model was made on (score_fit.json's "domains", or
    the keys of its per-domain NDCG in an export of before that field), [] without a fit."""
    from recgpt.io import read_json

    path = Path(model_dir) / SCORE_FIT
    fit = read_json(path) if path.is_file() else {}
    return [str(d) for d in fit.get("domains", fit.get("ndcg") or [])]


def rank_self_weighted(rec, histories: Sequence[Sequence[int]], grid: Sequence[dict], points: torch.Tensor,
                       k: int, allow_history: bool = False, batch_size: int = 256) -> tuple[list, list]:
    """(top-k catalog rows, their scores) per history, each history scored with its grid point `points[u]`; the
    history's items excluded unless `allow_history`."""
    scorer = rec.scorer
    names = sorted({n for w in grid for n in w if w[n]})
    recs, scores = [None] * len(histories), [None] * len(histories)
    for start in range(0, len(histories), batch_size):
        part = histories[start:start + batch_size]
        state = scorer.state(part) if set(names) & set(MODEL_COMPONENTS) else None  # the priors need no model
        parts = scorer.components(part, state, names)
        chosen = points[start:start + len(part)]
        for g in torch.unique(chosen).tolist():
            users = (chosen == g).nonzero().view(-1)
            combined = combine({n: x[users] for n, x in parts.items()}, grid[g])
            rows, values = top_k_items(combined, k, None if allow_history else [part[u] for u in users.tolist()])
            for u, row, value in zip(users.tolist(), rows.tolist(), values.tolist()):
                kept = [i for i, r in enumerate(row) if r >= 0]
                recs[start + u], scores[start + u] = [int(row[i]) for i in kept], [float(value[i]) for i in kept]
    return recs, scores


def plan(weights: str, prior: Optional[tuple], source, strategy: str,
         mode: str) -> tuple[Optional[tuple], Optional[str]]:
    """((grid, prior) to score with per-user weights, or None; the note when weights="self" falls back to the
    fitted weights, or None). `prior`: read_prior of the export at `source`."""
    if weights != "self":
        return None, None
    if strategy != "exact" or mode != "exact":  # one exact step's top K, whatever the horizon
        return None, (f"weights=self scores one exact step (strategy {strategy}, scoring {mode}): the fitted "
                      "weights are used")
    if prior is None:
        return None, (f"weights=self: {Path(source) / 'score_fit.json'} holds no fitted weight grid (no score fit, "
                      "or one exported before the grid was kept): scoring with the fitted weights")
    return prior, None
