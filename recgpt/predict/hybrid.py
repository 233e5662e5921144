"""Hybrid scoring weights, fitted on a held-out *source* domain and stored in the model's config.

score = sum over components c of w_c * standardize(c), components: code (code log-prob), dense (dense-head
cosine), knn (content kNN cosine, a fixed prior), pop (log popularity among the histories being scored).
`fit_score_weights` grid-searches the weight simplex for the best NDCG@K (leave-one-out, history excluded) on
a domain that is neither pretrained on nor reported (or several: `fit_and_store`), and `fit_and_store` writes the winner into
`model.config.score_weights`, so that `save_pretrained` / `from_pretrained` score the same way. It also
returns the best grid point with the model's own components at 0 (`priors`): the same fit, same users, of
what a user could combine without the model.
"""
import itertools
import math
from typing import Optional, Sequence

import torch

from recgpt.predict.ranking import NEG_INF, top_k_items
from recgpt.predict.scoring import add_moments, row_moments, standardize, weighted_sum

MODEL_COMPONENTS = ("code", "dense")  # the others are label-free priors that need no model
PRIOR_COMPONENTS = ("knn", "pop")


def model_free(grid: Sequence[dict]) -> list:
    """Indexes of the grid points with every model component at 0: what a user could combine without the model."""
    return [i for i, w in enumerate(grid) if not any(w.get(c, 0) > 0 for c in MODEL_COMPONENTS)]


def best_model_free(grid: Sequence[dict], values: Sequence[float]):
    """Index of the grid point with every model component at 0 and the highest value (ties: the first one);
    None when the grid has no such point."""
    free = model_free(grid)
    return max(free, key=lambda i: (values[i], -i)) if free else None


def simplex_grid(names: Sequence[str], step: float) -> list[dict]:
    """Every weight vector over `names` with entries in multiples of `step` summing to 1."""
    n = round(1 / step)
    grid = []
    for cut in itertools.combinations(range(n + len(names) - 1), len(names) - 1):
        parts = [b - a - 1 for a, b in zip((-1, *cut), (*cut, n + len(names) - 1))]
        grid.append({name: round(p * step, 6) for name, p in zip(names, parts)})
    return grid


def ndcg_at_k(scores: torch.Tensor, targets: Sequence[int], histories: Sequence[Sequence[int]], k: int) -> float:
    """Mean NDCG@k of one target per user, the user's history items excluded."""
    rows, _ = top_k_items(scores, k, histories)
    hit = rows == torch.as_tensor(list(targets))[:, None]
    gains = hit.float() / torch.log2(torch.arange(2, k + 2, dtype=torch.float32))[None, : rows.shape[1]]
    return float(gains.sum(1).mean())


def fit_score_weights(parts, targets: Sequence[int], histories: Sequence[Sequence[int]], k: int = 10,
                      step: float = 0.1, n_items: Optional[int] = None, chunk: int = 8192,
                      block: int = 1 << 20, names: Optional[Sequence[str]] = None) -> tuple[dict, list]:
    """(best weights, [(weights, NDCG@k)] for every grid point of `simplex_grid` over `names` (default: the keys
    of `parts`; needed when `parts` is a function)); ties go to the earlier grid point. `parts` and the rest: as
    `grid_ranks`."""
    names = sorted(parts if names is None else names)
    grid = simplex_grid(names, step)
    gains = rank_gains(grid_ranks(parts, targets, histories, grid, n_items, chunk, block), k)
    table = [(weights, float(g.mean())) for weights, g in zip(grid, gains)]
    best = max(range(len(table)), key=lambda i: (table[i][1], -i))
    return table[best][0], table


def rank_gains(ranks: torch.Tensor, k: Optional[int] = 10) -> torch.Tensor:
    """Float64 NDCG gains of `grid_ranks`' ranks: 1 / log2(rank + 2) within the top k (every rank: k None),
    0 beyond it and where the case has no rankable target (rank -1)."""
    hit = (ranks >= 0) if k is None else (ranks >= 0) & (ranks < k)
    return torch.where(hit, 1.0 / torch.log2(ranks.double().clamp_min(0) + 2), torch.zeros((), dtype=torch.float64))


def grid_ranks(parts, targets: Sequence[int], histories: Sequence[Sequence[int]], grid: Sequence[dict],
               n_items: Optional[int] = None, chunk: int = 8192, block: int = 1 << 20) -> torch.Tensor:
    """Int64[G, U]: per weight point of `grid` (dicts over the components), the items ranked above each user's
    target (history excluded; ties to the smaller row), -1 where the target is in the history or has no score.
    `parts`: the raw component scores {name: Float[U, N]}, or a function of a slice of catalog rows giving
    {name: Float[U, n]} (`component_chunks`; then `n_items` is N). The catalog is read `chunk` items at a time,
    never [U, N] whole: a first pass gets each component's mean and spread per user and the target's value, a
    second counts the items above the target, `block` scores (users x items) at a time."""
    if not callable(parts):
        n_items, matrices = next(iter(parts.values())).shape[1], parts
        parts = lambda span: {name: x[:, span].float() for name, x in matrices.items()}  # noqa: E731
    spans = [slice(lo, min(lo + chunk, n_items)) for lo in range(0, n_items, chunk)]
    target = torch.as_tensor(list(targets), dtype=torch.long)
    users = torch.arange(len(target))
    acc, raw = {}, {}
    for span in spans:  # pass 1: moments over the whole catalog and each user's target value
        inside = (target >= span.start) & (target < span.stop)
        for name, x in parts(span).items():
            acc[name] = add_moments(acc.get(name), x)
            if name not in raw:
                raw[name] = torch.full((len(target), 1), NEG_INF)
            raw[name][inside, 0] = x[users[inside], target[inside] - span.start]
    names = sorted(acc)
    moments = {name: row_moments(acc[name]) for name in names}
    at_target = {name: standardize(raw[name], *moments[name]) for name in names}
    target_score = [weighted_sum(at_target, weights) for weights in grid]
    seen = torch.as_tensor([(u, r) for u, h in enumerate(histories) for r in set(map(int, h))],
                           dtype=torch.long).view(-1, 2)  # (user, history row): never ranked
    in_history = torch.zeros(len(target), dtype=torch.bool)
    in_history[seen[:, 0][seen[:, 1] == target[seen[:, 0]]]] = True
    above = torch.zeros(len(grid), len(target), dtype=torch.long)
    for span in spans:  # pass 2: per grid point, the items ranked above each target
        chunk_parts = parts(span)
        z = {name: standardize(chunk_parts[name], *moments[name]) for name in names}
        del chunk_parts
        excluded = torch.zeros(len(target), span.stop - span.start, dtype=torch.bool)
        inside = seen[(seen[:, 1] >= span.start) & (seen[:, 1] < span.stop)]
        excluded[inside[:, 0], inside[:, 1] - span.start] = True
        before = torch.arange(span.start, span.stop)[None] < target[:, None]  # a tie ranks the smaller row first
        rows = max(1, block // (span.stop - span.start))  # users at a time: small temporaries, no page faults
        for lo in range(0, len(target), rows):
            users_z = {name: x[lo:lo + rows] for name, x in z.items()}
            users_before, users_excluded = before[lo:lo + rows], excluded[lo:lo + rows]
            for g, weights in enumerate(grid):
                x, t = weighted_sum(users_z, weights), target_score[g][lo:lo + rows]
                above[g, lo:lo + rows] += ((x > t) | ((x == t) & users_before)).masked_fill_(users_excluded, False).sum(1)
    valid = ~in_history[None] & torch.isfinite(torch.stack(target_score)[..., 0])
    return above.masked_fill_(~valid, -1)


def component_chunks(rec, histories: Sequence[Sequence[int]], names, batch_size: int = 256):
    """A function of a slice of catalog rows giving {name: Float[U, n]}: a Recommender's raw component scores of
    those items for every history (the histories' states computed once, `batch_size` at a time)."""
    scorer = rec.scorer
    batches = [histories[lo:lo + batch_size] for lo in range(0, len(histories), batch_size)]
    states = [(part, scorer.state(part), {}) for part in batches]

    def chunk(span: slice) -> dict:
        out = {name: [] for name in names}
        for part, state, memo in states:
            for name, scores in scorer.components(part, state, names, span, memo).items():
                out[name].append(scores.float().cpu())
        return {name: torch.cat(c) for name, c in out.items()}
    return chunk


def domain_table(rec, prepared, names: Sequence[str], max_users: int, k: int, step: float, seed: int,
                 protocol: str = "loo") -> list:
    """[(weights, NDCG@k)] over the simplex grid on one prepared domain's users (`protocol`: loo or cold)."""
    from recgpt.predict.protocols import build_test_cases, popularity_before_targets

    catalog = rec.set_catalog_from_prepared(prepared, popularity=None)
    rec.set_popularity(popularity_before_targets(prepared.interactions, catalog, protocol, 1, seed))
    return grid_ndcg(rec, build_test_cases(prepared.interactions, rec.catalog, protocol, 1, seed, max_users), names,
                     k, step)[1]


def grid_ndcg(rec, cases, names: Sequence[str], k: int = 10, step: float = 0.1) -> tuple:
    """(best weights, [(weights, NDCG@k)] for every point of the weight grid) of a Recommender's components on
    test cases' first targets (history excluded)."""
    parts = component_chunks(rec, cases.histories, list(names))
    return fit_score_weights(parts, [t[0] for t in cases.targets], cases.histories, k, step, rec.catalog.n_items,
                             names=names)


def fit_and_store(rec, domains, names: Sequence[str], max_users: int = 1000, k: int = 10, step: float = 0.1,
                  seed: int = 0) -> dict:
    """Fit the weights on held-out source domains' LOO users (prepared datasets, none of them reported) and
    store them in the model config. With several domains the criterion is the mean over domains of NDCG@k
    relative to that domain's best single prior (knn or pop alone), so that no domain dominates by its scale.
    Returns {"weights", "ndcg" (per domain), "single_components", "table", "priors" (the best grid point with
    every model component at 0, its "ndcg" and "relative"; None without a prior among `names`)}."""
    domains = domains if isinstance(domains, (list, tuple)) else [domains]
    tables = {d.name: domain_table(rec, d, names, max_users, k, step, seed) for d in domains}
    grid = [w for w, _ in next(iter(tables.values()))]
    singles = {d: {n: next(v for w, v in t if math.isclose(w[n], 1.0)) for n in names} for d, t in tables.items()}
    # each domain's scale: its best single prior (its best single component when no prior is fitted); it
    # does not depend on the model, so the priors row is the same for every model fitted on these domains
    scale_by = [n for n in names if n in PRIOR_COMPONENTS] or list(names)
    scale = {d: max(max(singles[d][n] for n in scale_by), 1e-12) for d in tables}
    relative = [sum(t[i][1] / scale[d] for d, t in tables.items()) / len(tables) for i in range(len(grid))]
    best = max(range(len(grid)), key=lambda i: (relative[i], -i))
    p, priors = best_model_free(grid, relative), None
    if p is not None:
        priors = {"weights": {n: v for n, v in grid[p].items() if n not in MODEL_COMPONENTS},
                  "ndcg": {d: t[p][1] for d, t in tables.items()}, "relative": relative[p]}
    rec.model.config.score_weights = grid[best]
    rec.use_catalog(rec.catalog)  # the scorer reads the new weights
    return {"weights": grid[best], "ndcg": {d: t[best][1] for d, t in tables.items()}, "relative": relative[best],
            "single_components": singles, "dataset": ",".join(tables), "domains": list(tables), "priors": priors,
            "table": [{"weights": w, "relative": r} for w, r in zip(grid, relative)]}


SCORE_FIT = "score_fit.json"  # beside an exported model: what fit_and_store returned
