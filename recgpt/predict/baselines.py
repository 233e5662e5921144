"""Baselines reported beside every model run: a model that does not beat them has learned nothing.

All see only what the model sees (the histories and, for content kNN, the catalog's item texts), never a target.
"""
from typing import Optional, Sequence

from recgpt.config.args import BASELINES  # noqa: F401 (the baselines below)
from recgpt.config.predict import ContentKnnConfig

KNN = ContentKnnConfig()  # the defaults, when no config is given


def recency(histories: Sequence[Sequence[int]], k: int) -> list[list[int]]:
    """The user's most recent distinct items, most recent first."""
    out = []
    for history in histories:
        seen, recs = set(), []
        for item in reversed(list(history)):
            if item not in seen:
                seen.add(item)
                recs.append(int(item))
                if len(recs) == k:
                    break
        out.append(recs)
    return out


def item_popularity(histories: Sequence[Sequence[int]], n_items: Optional[int] = None) -> list[int]:
    """Items by interaction count over the histories, most popular first (ties: smaller row first)."""
    from recgpt.data.popularity import item_counts, ranking

    histories = [list(map(int, h)) for h in histories]
    n = n_items if n_items is not None else 1 + max((max(h) for h in histories if h), default=-1)
    return ranking(item_counts(histories, n))


def popularity(histories: Sequence[Sequence[int]], k: int, allow_history: bool = True,
               ranking: Optional[list[int]] = None) -> list[list[int]]:
    """The k most popular items (over the histories), skipping the user's own items unless allowed."""
    ranking = item_popularity(histories) if ranking is None else ranking
    if allow_history:
        return [ranking[:k] for _ in histories]
    out = []
    for history in histories:
        own, recs = set(int(i) for i in history), []
        for item in ranking:
            if item not in own:
                recs.append(item)
                if len(recs) == k:
                    break
        out.append(recs)
    return out


def normalize_rows(emb) -> "torch.Tensor":
    """Float[N, D] unit rows (a zero row stays zero)."""
    import torch

    emb = torch.as_tensor(emb).float()
    return emb / emb.norm(dim=1, keepdim=True).clamp_min(1e-12)


def as_rows(item_emb):
    """A tensor or an ItemVectors as it is (rows are read from it in its own dtype); anything else as a tensor."""
    import torch

    return item_emb if isinstance(item_emb, torch.Tensor) or hasattr(item_emb, "rows") else torch.as_tensor(item_emb)


def user_vectors(histories: Sequence[Sequence[int]], item_emb, last: int = KNN.last, decay: float = KNN.decay):
    """Float[B, D]: recency-weighted mean of each history's last `last` unit item vectors, weight decay^age
    (age 0 = the most recent item; a repeated item counts once per occurrence)."""
    import torch

    item_emb = as_rows(item_emb)
    out = torch.zeros(len(histories), item_emb.shape[1])
    for b, history in enumerate(histories):
        recent = list(history)[-last:][::-1]
        if not recent:
            raise ValueError(f"history {b} is empty: content kNN needs at least one item")
        weights = decay ** torch.arange(len(recent), dtype=torch.float32)
        unit = normalize_rows(item_emb[torch.as_tensor(recent, dtype=torch.long)]).cpu()  # only the rows it reads
        out[b] = (weights[:, None] * unit).sum(0) / weights.sum()
    return out


def content_knn_scores(histories: Sequence[Sequence[int]], item_emb, last: int = KNN.last, decay: float = KNN.decay,
                       items: slice = slice(None), chunk: int = 65536):
    """Float[B, n]: cosine between each user vector (see user_vectors) and the catalog items `items` (all by
    default), read `chunk` rows at a time (`item_emb` may be fp16 or an ItemVectors: no float copy of it)."""
    item_emb = as_rows(item_emb)
    return cosines(normalize_rows(user_vectors(histories, item_emb, last, decay)), item_emb, items, chunk)


def cosines(user, item_emb, items: slice = slice(None), chunk: int = 65536):
    """Float[B, n]: unit user vectors [B, D] against the unit rows `items` of item_emb, `chunk` rows at a time."""
    import torch

    lo, hi, _ = items.indices(len(item_emb))
    return torch.cat([user @ normalize_rows(item_emb[i:min(i + chunk, hi)]).cpu().t() for i in range(lo, hi, chunk)]
                     or [user[:, :0]], dim=1)


def content_knn(histories: Sequence[Sequence[int]], item_emb, k: int, allow_history: bool = True,
                last: int = KNN.last, decay: float = KNN.decay, batch_size: int = 1024,
                chunk: int = 65536) -> list[list[int]]:
    """Content kNN: the k catalog items whose text embedding is closest (cosine) to the user's recent items;
    the user's own items are skipped unless allowed. Needs no training: what a zero-shot model must beat."""
    import torch

    from recgpt.predict.ranking import NEG_INF, merge_top_k

    item_emb, out = as_rows(item_emb), []
    for start in range(0, len(histories), batch_size):  # the catalog `chunk` items at a time: never [B, N]
        part = histories[start:start + batch_size]
        seen = torch.as_tensor([(b, int(r)) for b, h in enumerate(part) for r in set(h)] if not allow_history else [],
                               dtype=torch.long).view(-1, 2)
        best, user = None, normalize_rows(user_vectors(part, item_emb, last, decay))  # once per batch of users
        for lo in range(0, len(item_emb), chunk):
            scores = cosines(user, item_emb, slice(lo, lo + chunk), chunk)
            inside = seen[(seen[:, 1] >= lo) & (seen[:, 1] < lo + scores.shape[1])]
            scores[inside[:, 0], inside[:, 1] - lo] = NEG_INF
            best = merge_top_k(best, scores, lo, k)
        if best is None:  # an empty catalog
            out += [[] for _ in part]
            continue
        out += [[int(r) for r, v in zip(rows, vals) if v > NEG_INF] for vals, rows in zip(*[t.tolist() for t in best])]
    return out


def baseline_lists(method: str, histories: Sequence[Sequence[int]], k: int, allow_history: bool = True,
                   item_emb=None, knn: Optional[ContentKnnConfig] = None,
                   ranking: Optional[list[int]] = None) -> list[list[int]]:
    """Top-k catalog rows of one baseline. Recency recommends the history itself, so allow_history does not
    apply to it; popularity counts the given histories; content kNN needs the catalog's item embeddings."""
    if method == "recency":
        return recency(histories, k)
    if method == "popularity":
        return popularity(histories, k, allow_history, ranking)
    if method == "content_knn":
        if item_emb is None:
            raise ValueError("content_knn needs the catalog's item text embeddings (a catalog built from item "
                             "texts: set_catalog / set_catalog_from_prepared)")
        knn = knn or KNN
        return content_knn(histories, item_emb, k, allow_history, knn.last, knn.decay)
    raise ValueError(f"unknown baseline {method!r}; one of {BASELINES}")
