"""In-domain splits of one prepared dataset, the same for every method (baselines and recgpt alike).

Items are catalog rows 0..N-1 (the items that occur in the interactions, in order of first occurrence).
  loo      users with >= 3 items; train = items[:-2]; valid = items[:-2] -> items[-2]; test = items[:-1] -> items[-1]
  horizon  users with > H items (arXiv 2409.17730); train = items[:-H]; targets = the last H items as a set;
           the users are split 50/50 at random (seeded, per user) into valid and test
  cold     a seeded `cold_fraction` of users with >= 2 items is held out of training entirely; each is reduced
           to one random 2-4 item window (RecGPT's protocol), then split 50/50 into valid and test
Shorter users train on their whole sequence and are never evaluated. Nothing of a valid or test target is
ever in `train`. Randomness is keyed by (seed, user id), so a user's split never depends on other users.
"""
from dataclasses import dataclass
from typing import Optional

import pandas as pd

from recgpt.data import splits
from recgpt.predict.protocols import TestCases, user_sequences


@dataclass
class InDomainSplit:
    dataset: str
    protocol: str
    item_ids: list[str]  # catalog row -> item id
    train: list[list[int]]  # training sequences, oldest first
    train_users: list[str]
    valid: TestCases
    test: TestCases
    counts: dict
    items: Optional[pd.DataFrame] = None  # the prepared items (item fields for MFGAN's factors), when loaded

    @property
    def n_items(self) -> int:
        return len(self.item_ids)


def _half(seed: int, protocol: str, user: str) -> str:
    return "valid" if splits.unit_hash(seed, f"{protocol}-half:{user}") < 0.5 else "test"


def split_user(items: list, user: str, protocol: str, horizon: int, cold_fraction: float, seed: int):
    """(train sequence or None, {split: (history, targets)})."""
    keep = int(splits.train_lengths([len(items)], protocol if protocol != "cold" else "all", horizon)[0])
    if protocol == "loo":
        if keep == len(items):
            return items, {}
        loo = splits.leave_one_out(items)
        return items[:keep], {"valid": (loo.valid_history, [loo.valid_target]),
                            "test": (loo.test_history, [loo.test_target])}
    if protocol == "horizon":
        if keep == len(items):
            return items, {}
        cut = splits.last_n(items, horizon)
        return items[:keep], {_half(seed, protocol, user): (cut.history, cut.targets)}
    if protocol == "cold":
        if len(items) < 2 or not splits.is_heldout(f"cold:{user}", cold_fraction, seed):
            return items, {}
        window = splits.cold_window(items, user, seed)
        return None, {_half(seed, protocol, user): (window.history, [window.target])}
    raise ValueError(f"unknown protocol {protocol!r}; one of loo, horizon, cold")


def build_split(interactions: pd.DataFrame, dataset: str, protocol: str = "loo", horizon: int = 10,
                cold_fraction: float = 0.2, seed: int = 0) -> InDomainSplit:
    seqs = user_sequences(interactions)
    item_ids = list(pd.unique(interactions.sort_values("position", kind="stable")["item_id"].astype(str)))
    row = {item: i for i, item in enumerate(item_ids)}
    train, train_users = [], []
    cases = {name: ([], [], []) for name in ("valid", "test")}
    for user, items in seqs.items():
        rows = [row[i] for i in items]
        train_seq, evaluated = split_user(rows, str(user), protocol, horizon, cold_fraction, seed)
        if train_seq is not None and len(train_seq) >= 1:
            train.append(list(train_seq))
            train_users.append(str(user))
        for name, (history, targets) in evaluated.items():
            for part, value in zip(cases[name], (str(user), list(history), list(targets))):
                part.append(value)
    tests = {name: TestCases(protocol, *parts, counts={"evaluated": len(parts[0])}) for name, parts in cases.items()}
    counts = {"users": len(seqs), "items": len(item_ids), "train_sequences": len(train),
              "train_interactions": sum(len(s) for s in train), "valid_users": len(tests["valid"]),
              "test_users": len(tests["test"])}
    return InDomainSplit(dataset, protocol, item_ids, train, train_users, tests["valid"], tests["test"], counts)


def subset(cases: TestCases, max_users, seed: int) -> TestCases:
    """A seeded subset of at most `max_users` cases, independent of the cases' order."""
    if max_users is None or len(cases) <= max_users:
        return cases
    keep = sorted(sorted(range(len(cases)), key=lambda i: splits.unit_hash(seed, cases.user_ids[i]))[:max_users])
    return TestCases(cases.protocol, [cases.user_ids[i] for i in keep], [cases.histories[i] for i in keep],
                     [cases.targets[i] for i in keep], {**cases.counts, "evaluated": len(keep)})


def load_split(cfg, data_cfg) -> InDomainSplit:
    """The split of `cfg.dataset` (a BaselineConfig) from its prepared folder (prepared on demand)."""
    from recgpt.data import load_prepared
    from recgpt.predict.run import resolve_dataset

    prepared = load_prepared(resolve_dataset(cfg.dataset, data_cfg))
    split = build_split(prepared.interactions, prepared.name, cfg.protocol, cfg.horizon, cfg.cold_fraction, cfg.seed)
    split.items = prepared.items
    return split
