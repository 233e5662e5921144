"""Behaviour types of multi-behaviour logs (view / fav / cart / buy) and the held-out target set of a dataset.

Raw names are normalised to a few canonical names so that datasets agree ("pv", "click" -> "view";
"addtocart" -> "cart"; "transaction", "purchase" -> "buy"). A value that is none of the known aliases is kept
as its stripped lower-case text (e.g. KuaiRec's "like"), so a new log never needs a code change; the manifest
counts every behaviour, so an unexpected name is visible there. An empty value is an error naming its line.
"""
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from recgpt.data.errors import DataFormatError

# Canonical names in increasing strength of preference (GAMER's behaviour levels: click < cart < buy).
CANONICAL = ("view", "fav", "cart", "buy")
BEHAVIOR_NAMES = ("none", *CANONICAL)  # ids a model reads: 0 = none; then view, fav, cart, buy
BEHAVIOR_ID = {name: i for i, name in enumerate(BEHAVIOR_NAMES)}


def behavior_ids(names) -> np.ndarray:
    """int64 ids of behaviour names; names outside BEHAVIOR_NAMES (and None) are 0 = none."""
    return np.asarray([BEHAVIOR_ID.get(n, 0) if isinstance(n, str) else 0 for n in names], dtype=np.int64)
RANK = {name: level for level, name in enumerate(CANONICAL)}
ALIASES = {"pv": "view", "click": "view", "view": "view", "fav": "fav", "favorite": "fav", "favourite": "fav",
           "collect": "fav", "cart": "cart", "addtocart": "cart", "add_to_cart": "cart", "buy": "buy",
           "purchase": "buy", "transaction": "buy", "order": "buy"}


def normalize_behaviors(values, path: Path, lines: Optional[np.ndarray] = None, where: str = "line") -> np.ndarray:
    """Canonical behaviour names (object array) for raw values; an empty value raises naming its line."""
    text = pd.Series(np.asarray(values, dtype=object)).astype("string").str.strip().str.lower()
    empty = (text.isna() | (text == "")).to_numpy()
    if empty.any():
        i = int(np.flatnonzero(empty)[0])
        line = int(lines[i]) if lines is not None else i + 1
        raise DataFormatError(path, "empty behaviour value", line, where)
    names = text.to_numpy(dtype=object)
    return np.array([ALIASES.get(v, v) for v in names], dtype=object)


def behavior_rank(behaviors: pd.Series) -> np.ndarray:
    """Preference level of each row (unknown names after the canonical ones), for tie-breaking."""
    return behaviors.map(RANK).fillna(len(CANONICAL)).to_numpy(dtype=np.int64)


def behavior_counts(inter: pd.DataFrame) -> dict:
    """{behaviour: rows} in canonical order first, then other names alphabetically; {} without the column."""
    if "behavior" not in inter.columns:
        return {}
    counts = inter["behavior"].value_counts()
    order = [b for b in CANONICAL if b in counts.index] + sorted(b for b in counts.index if b not in RANK)
    return {name: int(counts[name]) for name in order}


def attach_targets(targets: pd.DataFrame, inter: pd.DataFrame, items: pd.DataFrame,
                   counts: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Keep the targets of users that are still in `inter` (the rest counted) and add target items that no
    kept interaction uses to `items` (with empty text), so the catalog can rank every target.

    targets: user_id, item_id, behavior (strings), one row per held-out event, in file order.
    """
    users = set(pd.unique(inter["user_id"]))
    known = targets["user_id"].isin(users).to_numpy()
    counts["targets_raw"] = len(targets)
    counts["targets_without_user"] = int((~known).sum())
    targets = targets[known].reset_index(drop=True)
    counts["targets"] = len(targets)
    counts["targets_in_history"] = int(targets.merge(inter[["user_id", "item_id"]].drop_duplicates(),
                                                     on=["user_id", "item_id"]).shape[0])
    cold = pd.unique(targets.loc[~targets["item_id"].isin(items["item_id"]), "item_id"])
    counts["items_only_in_targets"] = len(cold)
    if len(cold):
        extra = pd.DataFrame({"item_id": cold, "text": [""] * len(cold)})
        items = pd.concat([items, extra], ignore_index=True)
    counts["items"] = len(items)  # items.parquet rows: the catalog, target-only items included
    return targets, items
