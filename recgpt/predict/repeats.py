"""A user's own items in the list as often as the catalog's log repeats them (`predict.allow_history=auto`).

Some catalogs are consumed again (a restaurant visited again, a game reviewed again: yelp's and steam's logs), most
never are (the Amazon 5-core logs). A list with the history excluded misses every repeat target; a list that scores
history items like any other item fills itself with them where nothing repeats (a third of NDCG@10 lost on the Amazon
targets, docs/benchmarks.md). The catalog's log says which, without a label: over the log sequences the log prior
reads (up to 2,000 seeded ones, the log before the protocol's targets), p[r] is the share whose last item is the
(r + 1)-th most recent distinct earlier item, q[j] the share whose last item, a new one, is at rank j of the list with
the history excluded. Each made non-increasing (isotonic), the user's distinct history items, most recent first, are
merged into the history-excluded list by these shares, ties to the new item: the order of the two lists that maximises
the expected DCG if the shares are the user's. A log that never repeats an item gives the history-excluded list.
For a horizon of H items (a target set), the shares are read alike from log sequences longer than H: p[r], the share
whose last H items hold the (r + 1)-th most recent distinct item before them, q[j], the share whose last H items
hold the item at rank j of the list ranked from the items before them (expected DCG stays a sum over positions).
"""
import math
from typing import Optional, Sequence

import numpy as np
import torch

from recgpt.predict.baselines import recency
from recgpt.predict.self_weights import rank_self_weighted

MIN_WINDOWS = 50  # fewer log sequences than this longer than the horizon: no share is read (predict.min_users')


def target_ranks(rows: Sequence[Sequence[int]], horizon: int = 1) -> list:
    """Per sequence, the recency rank (0: the most recent distinct earlier item) of each distinct item of its last
    `horizon` among the items before them, -1 for a new one."""
    out = []
    for row in rows:
        row = [int(i) for i in row]
        before = recency([row[:-horizon]], len(row))[0]
        out.append([before.index(t) if t in before else -1 for t in dict.fromkeys(row[-horizon:])])
    return out


def shares(ranks: Sequence[int], n: int, k: int) -> np.ndarray:
    """Float[k]: the non-increasing (isotonic) fit of the share of `n` sequences at each rank 0..k-1 (-1: none)."""
    from sklearn.isotonic import IsotonicRegression

    counts = np.bincount(np.asarray([r for r in ranks if 0 <= r < k], dtype=np.int64), minlength=k)[:k]
    raw = counts / max(n, 1)
    return IsotonicRegression(increasing=False).fit_transform(np.arange(k), raw) if raw.any() else raw


def curves(rec, weights: dict, k: int, horizon: int = 1) -> tuple[np.ndarray, np.ndarray, int]:
    """(p, q, n): Float[k] each (module doc) from the n sequences of the Recommender's log longer than `horizon`
    (`rec.log_windows`), the list ranked with `weights`."""
    rows = rec.log_windows(horizon)
    repeated = [r for ranks in target_ranks(rows, horizon) for r in ranks]
    if horizon == 1:  # the log prior's own ranking where `weights` is a point of its grid
        explore = rec.log_ranks(weights)[1].tolist()
    else:
        lists = rank_self_weighted(rec, [r[:-horizon] for r in rows], [weights],
                                   torch.zeros(len(rows), dtype=torch.long), k)[0]
        targets = [set(row[-horizon:]) for row in rows]
        explore = [j for wanted, got in zip(targets, lists) for j, i in enumerate(got) if i in wanted]
    return shares(repeated, len(rows), k), shares(explore, len(rows), k), len(rows)


def fallback_note(rec, strategy: str, horizon: int) -> Optional[str]:
    """Why allow_history=auto excludes the history instead (it places items for the exact strategy from a log with
    enough sequences longer than the horizon), or None."""
    if strategy != "exact":
        why = f"strategy {strategy}"
    elif not rec.log:
        why = "the catalog has no log (set_log)"
    elif horizon > 1 and (n := len(rec.log_windows(horizon))) < MIN_WINDOWS:
        why = f"the log has {n} sequences longer than the horizon {horizon} (under {MIN_WINDOWS})"
    else:
        return None
    return (f"allow_history=auto places history items for the exact strategy from the catalog's log: {why}, so they "
            "are excluded")


def place(rec, recs, scores, histories, weights: dict, k: int, horizon: int = 1) -> tuple[list, list, dict]:
    """(lists, scores, summary): `recs` / `scores`, ranked with `weights` and the history excluded, with each
    user's own items merged in by the shares of the Recommender's log (`curves`, `merge`, `summary`)."""
    p, q, n = rec.repeat_shares(weights, k, horizon)
    recs, scores = merge(recs, scores, histories, p, q, k)
    return recs, scores, summary(p, q, n, recs, histories)


def list_weights(rec, plan: Optional[tuple]) -> dict:
    """The weights whose list the shares are read from: the best point of the per-user weights' prior (`plan`:
    Recommender.weights_plan's), else the fitted weights."""
    return plan[0][int(np.argmax(plan[1]))] if plan else rec.scorer.weights


def merge(recs: Sequence[Sequence[int]], scores: Sequence[Sequence[float]], histories: Sequence[Sequence[int]],
          p: np.ndarray, q: np.ndarray, k: int) -> tuple[list, list]:
    """Lists of at most k: each history-excluded list with the user's distinct history items (most recent first)
    merged in where their share p beats the next new item's q (module doc). A history item has no score of the
    list's (NaN)."""
    out_recs, out_scores = [], []
    for row, score, history in zip(recs, scores, histories):
        own = recency([history], k)[0]
        i = r = 0
        merged, values = [], []
        while len(merged) < k:
            p_next = p[r] if r < len(own) and r < len(p) else 0.0
            q_next = q[i] if i < len(q) else 0.0
            if p_next > q_next or (i >= len(row) and p_next > 0):
                merged.append(own[r])
                values.append(math.nan)
                r += 1
            elif i < len(row):
                merged.append(int(row[i]))
                values.append(float(score[i]))
                i += 1
            else:
                break
        out_recs.append(merged)
        out_scores.append(values)
    return out_recs, out_scores


def summary(p: np.ndarray, q: np.ndarray, n: int, recs: Sequence[Sequence[int]], histories, k: int = 10) -> dict:
    """What the report says of the merge: the log's repeat share and the history items per list's top k."""
    placed = [len(set(r[:k]) & set(map(int, h))) for r, h in zip(recs, histories)]
    return {"log_sequences": n, "repeat_share_top": round(float(p.sum()), 5), "new_share_top": round(float(q.sum()), 5),
            f"history_items_per_top{k}": round(float(np.mean(placed)) if placed else 0.0, 4)}
