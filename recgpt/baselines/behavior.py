"""The multi-behaviour in-domain split: one training split per dataset, several next-purchase protocols on it.

Events are packed into one int, `item_row * N_BEHAVIORS + behaviour id` (`pack` / `unpack`, ids of
recgpt.model.behavior), so the shared training loop, windows and subsets of recgpt.baselines carry the
behaviour of every event unchanged; catalog rows = items.parquet (every item of the interactions and of a
shipped target set). Protocols (targets are catalog rows; history handling: history items may be recommended,
because users buy what they viewed or carted):
  next_buy      target = the user's last purchase; history = every event before it; validation = the
                second-to-last purchase (users with two or more), history = every event before that.
  next_any      target = the user's last event of any behaviour; history = every event before it.
  session_buy   targets = the items bought in the user's last session (inactivity gap), history = the
                sessions before it (recgpt.data.sessions.last_session_split).
  shipped       the dataset's own target set (RetailRocket test.csv); history = every event.
A user's training sequence stops before the earliest held-out event of any protocol (the validation or test
purchase, the last event, the last session), so no target of any protocol is trained on and one trained
model serves them all. Input "buy" keeps purchases only (GAMER's single-behaviour sequences) in training and
in every history; a history left empty is counted and scored by the training purchases' popularity.
"""
from dataclasses import dataclass

import numpy as np
import pandas as pd

from recgpt.data.sessions import with_sessions
from recgpt.data.behavior import BEHAVIOR_ID, BEHAVIOR_NAMES, behavior_ids
from recgpt.predict.protocols import TestCases

N_BEHAVIORS = len(BEHAVIOR_NAMES)
BUY = BEHAVIOR_ID["buy"]
PROTOCOLS = ("next_buy", "next_any", "session_buy", "shipped")
INPUTS = ("all", "buy")


def pack(items, behaviors) -> list[int]:
    return [int(i) * N_BEHAVIORS + int(b) for i, b in zip(items, behaviors)]


def unpack(events):
    """(item rows, behaviour ids) of packed events: ints, lists, numpy arrays or tensors (-1 = padding stays -1 / 0)."""
    if isinstance(events, int):
        return events // N_BEHAVIORS, events % N_BEHAVIORS
    pad = events < 0
    items, behaviors = events // N_BEHAVIORS, events % N_BEHAVIORS
    if hasattr(items, "masked_fill"):
        return items.masked_fill(pad, -1), behaviors.masked_fill(pad, 0)
    return np.where(pad, -1, items), np.where(pad, 0, behaviors)


@dataclass
class BehaviorSplit:
    dataset: str
    input: str  # "all" (every behaviour) or "buy" (purchases only)
    item_ids: list[str]  # catalog row -> item id
    train: list[list[int]]  # packed events, oldest first
    train_users: list[str]
    valid: TestCases  # next_buy validation (packed histories)
    tests: dict  # protocol -> TestCases (packed histories)
    counts: dict
    train_rows: np.ndarray  # rows of the interactions (in their stored order) the training sequences hold

    @property
    def n_items(self) -> int:
        return len(self.item_ids)


def _user_events(inter: pd.DataFrame, items: pd.DataFrame, gap_minutes: float):
    inter = with_sessions(inter, gap_minutes).reset_index(drop=True)
    index = pd.Index(items["item_id"].astype(str))
    rows = index.get_indexer(inter["item_id"].astype(str))
    if (rows < 0).any():
        raise ValueError(f"{int((rows < 0).sum())} interactions name items that are not in items.parquet")
    beh = behavior_ids(inter["behavior"].tolist()) if "behavior" in inter else np.zeros(len(inter), np.int64)
    for user, idx in inter.groupby("user_id", sort=False).indices.items():
        yield str(user), idx, rows[idx], beh[idx], inter["session"].to_numpy()[idx]


def _cases(name, parts) -> TestCases:
    users, histories, targets = (list(p) for p in zip(*parts)) if parts else ([], [], [])
    return TestCases(name, users, histories, targets, counts={"evaluated": len(users)})


def build_behavior_split(prepared, input: str = "all", gap_minutes: float = 30.0) -> BehaviorSplit:
    """The split of a prepared multi-behaviour dataset (recgpt.data.load_prepared)."""
    if input not in INPUTS:
        raise ValueError(f"input must be one of {INPUTS}, got {input!r}")
    items = prepared.items
    catalog = items["item_id"].astype(str).tolist()
    row_of = {item: i for i, item in enumerate(catalog)}
    shipped = {}
    if prepared.targets is not None:
        for user, item in zip(prepared.targets["user_id"].astype(str), prepared.targets["item_id"].astype(str)):
            wanted = shipped.setdefault(user, [])
            if row_of[item] not in wanted:
                wanted.append(row_of[item])
    keep = (lambda b: b == BUY) if input == "buy" else (lambda b: np.ones(len(b), bool))
    parts = {name: [] for name in ("valid", *PROTOCOLS)}
    train, train_users, train_rows, empty = [], [], [], {name: 0 for name in parts}

    def add(name, user, rows, beh, end, targets):
        mask = keep(beh[:end])
        history = pack(rows[:end][mask], beh[:end][mask])
        empty[name] += not history
        parts[name].append((user, history, [int(t) for t in targets]))

    for user, idx, rows, beh, session in _user_events(prepared.interactions, items, gap_minutes):
        n, cut = len(rows), len(rows)
        buys = np.flatnonzero(beh == BUY)
        if len(buys) and buys[-1] > 0:
            add("next_buy", user, rows, beh, buys[-1], [rows[buys[-1]]])
            cut = min(cut, buys[-1])
            if len(buys) >= 2 and buys[-2] > 0:
                add("valid", user, rows, beh, buys[-2], [rows[buys[-2]]])
                cut = min(cut, buys[-2])
        if n >= 2:
            add("next_any", user, rows, beh, n - 1, [rows[-1]])
            cut = min(cut, n - 1)
        first_last = int(np.argmax(session == session[-1]))
        bought = list(dict.fromkeys(rows[first_last:][beh[first_last:] == BUY].tolist()))
        if first_last > 0 and bought:
            add("session_buy", user, rows, beh, first_last, bought)
            cut = min(cut, first_last)
        if user in shipped:
            add("shipped", user, rows, beh, n, shipped[user])
        mask = keep(beh[:cut])
        train_rows.append(idx[:cut][mask])
        if mask.sum() >= 1:
            train.append(pack(rows[:cut][mask], beh[:cut][mask]))
            train_users.append(user)
    cases = {name: _cases(name, p) for name, p in parts.items()}
    for name, c in cases.items():
        c.counts["empty_histories"] = empty[name]
    tests = {name: cases[name] for name in PROTOCOLS if len(cases[name])}
    counts = {"items": len(catalog), "train_sequences": len(train), "train_events": sum(map(len, train)),
              "valid_users": len(cases["valid"]), **{f"{k}_users": len(v) for k, v in tests.items()},
              "empty_histories": empty}
    return BehaviorSplit(prepared.name, input, catalog, train, train_users, cases["valid"], tests, counts,
                         np.concatenate(train_rows) if train_rows else np.zeros(0, np.int64))


def training_purchase_ranking(split: BehaviorSplit) -> list[int]:
    """Catalog rows by number of purchases in the training sequences (the fallback of an empty history)."""
    items, beh = unpack(np.asarray([e for s in split.train for e in s], dtype=np.int64))
    counts = np.bincount(items[beh == BUY], minlength=split.n_items)
    return np.argsort(-counts, kind="stable").tolist()
