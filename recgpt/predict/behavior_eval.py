"""Next-purchase protocols on multi-behaviour prepared datasets and the rule baselines scored on them.

Protocols (each a table of cases: user_id, history = row indices into the interactions, targets = item ids):
- `next_behavior_cases` ("next purchase", leave-last-out): the target is the user's last event of the target
  behaviour; the history is every event (any behaviour) before it. Users without such an event, or with
  nothing before it, are left out and counted.
- `shipped_target_cases`: the dataset's own target set (RetailRocket's test.csv); history = all events.
- `recgpt.data.sessions.last_session_split`: session-wise next purchase (targets = items bought in the
  last session, history = the sessions before it).
History handling: a history item may be recommended (users re-buy); `allow_history=False` removes the
user's own items from the popularity list. Metrics are recgpt.predict.metrics over item rows of the catalog
(items.parquet: every item of the interactions and of the target set).
"""
from typing import Sequence

import pandas as pd

from recgpt.predict.metrics import coverage, ranking_metrics
from recgpt.predict.rules import popular_purchases, purchase_ranking, repeat_recent, repeat_then_popular


def next_behavior_cases(interactions: pd.DataFrame, behavior: str = "buy") -> tuple[pd.DataFrame, dict]:
    inter = interactions.reset_index(drop=True)
    hit = (inter["behavior"] == behavior).to_numpy()
    rows, counts = [], {"users": int(inter["user_id"].nunique()), f"users_without_{behavior}": 0,
                        "users_without_history": 0}
    for user, idx in inter.groupby("user_id", sort=False).indices.items():
        mine = idx[hit[idx]]
        if not len(mine):
            counts[f"users_without_{behavior}"] += 1
            continue
        target = int(mine[-1])
        history = idx[idx < target].tolist()  # rows of a user are contiguous and in position order
        if not history:
            counts["users_without_history"] += 1
            continue
        rows.append({"user_id": user, "history": history, "targets": [inter.at[target, "item_id"]]})
    counts["cases"] = len(rows)
    return pd.DataFrame(rows, columns=["user_id", "history", "targets"]), counts


def shipped_target_cases(interactions: pd.DataFrame, targets: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    inter = interactions.reset_index(drop=True)
    wanted = targets.groupby("user_id", sort=False)["item_id"].agg(lambda s: list(dict.fromkeys(s)))
    groups = inter.groupby("user_id", sort=False).indices
    rows = [{"user_id": u, "history": groups[u].tolist(), "targets": t} for u, t in wanted.items() if u in groups]
    return pd.DataFrame(rows, columns=["user_id", "history", "targets"]), {"cases": len(rows)}


def case_lists(interactions: pd.DataFrame, items: pd.DataFrame, cases: pd.DataFrame):
    """(history item rows, history behaviours, target item rows) per case, rows = positions in `items`."""
    inter = interactions.reset_index(drop=True)
    index = pd.Index(items["item_id"].astype(str))
    item_rows = index.get_indexer(inter["item_id"].astype(str))
    row_of = dict(zip(index, range(len(index))))
    unknown = [t for targets in cases["targets"] for t in targets if t not in row_of]
    if (item_rows < 0).any() or unknown:
        raise ValueError(f"{int((item_rows < 0).sum())} interactions and {len(unknown)} targets name items that are "
                         "not in items.parquet")
    behaviors = inter["behavior"].to_numpy(dtype=object)
    hist_items = [item_rows[h].tolist() for h in cases["history"]]
    hist_behaviors = [behaviors[h].tolist() for h in cases["history"]]
    target_rows = [[row_of[t] for t in targets] for targets in cases["targets"]]
    return hist_items, hist_behaviors, target_rows


def evaluate_rules(interactions: pd.DataFrame, items: pd.DataFrame, cases: pd.DataFrame,
                   ks: Sequence[int] = (1, 5, 10, 20), allow_history: bool = True) -> dict:
    """{method: {metric@K: value, Coverage@K: ...}} for the rule baselines on `cases`."""
    hist_items, hist_behaviors, targets = case_lists(interactions, items, cases)
    k = max(ks)
    ranking = purchase_ranking(hist_items, hist_behaviors)
    methods = {
        "repeat cart/fav": repeat_recent(hist_items, hist_behaviors, k),
        "repeat any (GAMER rule)": repeat_recent(hist_items, hist_behaviors, k, source=None),
        "popular purchases": popular_purchases(hist_items, hist_behaviors, k, allow_history=allow_history,
                                               ranking=ranking),
        "repeat cart/fav, then popular": repeat_then_popular(hist_items, hist_behaviors, k, ranking=ranking),
    }
    return {name: {**ranking_metrics(recs, targets, ks), **coverage(recs, len(items), ks)}
            for name, recs in methods.items()}


def format_rules_table(results: dict, metrics: Sequence[str] = ("HR", "NDCG"), ks: Sequence[int] = (1, 5, 10, 20)):
    lines = ["| method | metric | " + " | ".join(f"@{k}" for k in ks) + " |",
             "|---|---|" + "---|" * len(ks)]
    for name, values in results.items():
        for metric in metrics:
            lines.append(f"| {name} | {metric} | " + " | ".join(f"{values[f'{metric}@{k}']:.4f}" for k in ks) + " |")
    return "\n".join(lines)
