"""Test cases of a prepared dataset: (user, history, targets) per protocol, from recgpt.data.splits.

  loo      history = all but the last item, target = the last item
  cold     RecGPT's cold start: one seeded random contiguous window of 2-4 items, target = its last item
  horizon  the last N items are the target set, history = what precedes them
Users too short for the protocol are skipped and counted; history items missing from the catalog are
dropped and counted; a user whose target or whole history is missing from the catalog is skipped and
counted. Histories keep every item here; the scorer keeps the most recent max_items of them.
"""
from dataclasses import dataclass, field
from typing import Optional

import pandas as pd

from recgpt.data import splits
from recgpt.data.splits import user_sequences


@dataclass
class TestCases:
    protocol: str
    user_ids: list[str]
    histories: list[list[int]]  # catalog rows, oldest first
    targets: list[list[int]]  # catalog rows, in order (one for loo/cold, N for horizon)
    counts: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.user_ids)


def split_user(items: list, user_id: str, protocol: str, horizon: int, seed: int) -> Optional[tuple[list, list]]:
    """(history, targets) for one user, or None when the sequence is too short for the protocol."""
    if protocol == "loo":
        if len(items) < 2:
            return None
        split = splits.last_n(items, 1)
        return split.history, split.targets
    if protocol == "cold":
        if len(items) < 2:
            return None
        window = splits.cold_window(items, user_id, seed)
        return window.history, [window.target]
    if protocol == "horizon":
        if len(items) <= horizon:
            return None
        split = splits.last_n(items, horizon)
        return split.history, split.targets
    raise ValueError(f"unknown protocol {protocol!r}; one of loo, cold, horizon")


def build_test_cases(interactions: pd.DataFrame, catalog, protocol: str, horizon: int = 1, seed: int = 0,
                     max_users: Optional[int] = None) -> TestCases:
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    seqs = user_sequences(interactions)
    order = {user: i for i, user in enumerate(seqs.index)}
    users = list(seqs.index)
    if max_users is not None:
        # A seeded subset of the evaluable users that does not depend on the file's user order.
        users = sorted(users, key=lambda u: splits.unit_hash(seed, u))
    counts = {"users": len(seqs), "too_short": 0, "target_not_in_catalog": 0, "empty_history": 0,
              "history_items_not_in_catalog": 0}
    picked = []
    for user in users:
        if max_users is not None and len(picked) == max_users:
            break
        split = split_user(seqs[user], user, protocol, horizon, seed)
        if split is None:
            counts["too_short"] += 1
            continue
        history, targets = split
        target_rows, missing_targets = catalog.rows(targets)
        if missing_targets:
            counts["target_not_in_catalog"] += 1
            continue
        rows, missing = catalog.rows(history)
        counts["history_items_not_in_catalog"] += missing
        if not rows:
            counts["empty_history"] += 1
            continue
        picked.append((order[user], user, rows, target_rows))
    counts["users_considered"] = sum(counts[k] for k in ("too_short", "target_not_in_catalog", "empty_history")) \
        + len(picked)
    picked.sort()  # users in order of first appearance
    cases = TestCases(protocol, [u for _, u, _, _ in picked], [h for _, _, h, _ in picked],
                      [t for _, _, _, t in picked], counts)
    counts["evaluated"] = len(cases)
    # users a target of whom repeats one of their history items: out of reach of any list that skips history items
    counts["targets_in_history"] = sum(bool(set(t) & set(h)) for h, t in zip(cases.histories, cases.targets))
    return cases


def sequences_before_targets(interactions: pd.DataFrame, protocol: str, horizon: int = 1, seed: int = 0) -> list:
    """Each user's item ids before the user's targets under the protocol (every user's, evaluated or not; a user
    too short to have a target whole), in the log's user order: what evaluation may read of the log."""
    out = []
    for user, items in user_sequences(interactions).items():
        if protocol == "cold" and len(items) >= 2:
            window = splits.cold_window(items, user, seed)
            cut = window.start + len(window.history)  # the target's position
        elif protocol in ("loo", "cold", "horizon") and split_user(items, user, protocol, horizon, seed) is not None:
            cut = len(items) - (horizon if protocol == "horizon" else 1)
        else:
            cut = len(items)
        out.append(list(items[:cut]))
    return out


def popularity_before_targets(interactions: pd.DataFrame, catalog, protocol: str, horizon: int = 1,
                              seed: int = 0):
    """Int64[N] counts of the catalog's items over the dataset's log before each user's targets under the
    protocol (sequences_before_targets): the catalog's popularity in evaluation, which never counts a target and
    does not depend on which users are scored."""
    from recgpt.data.popularity import counts_of_ids

    before = [i for items in sequences_before_targets(interactions, protocol, horizon, seed) for i in items]
    return counts_of_ids(catalog.item_ids, before)
