"""RetailRocket `events.csv` (`timestamp` ms, `visitorid`, `event` view / addtocart / transaction, `itemid`,
`transactionid`) and, optionally, a held-out target file (`visitorid,itemid`: the CML/SSLRec `test.csv`, each
user's next purchase). Spec: files.events, files.targets (optional); timestamp_unit: ms.

Events become view / cart / buy. Ties: the file is sorted by (timestamp, visitor, item), so its order says
nothing about a view and a cart of one item in the same millisecond; rows of one user with equal timestamps
are ordered by behaviour (view < cart < buy), then by file order. Target rows carry behaviour "buy"; a target
line without a user or item is an error naming its line. No item information exists: items have no text.
"""
from pathlib import Path

import numpy as np
import pandas as pd

from recgpt.config.data import DatasetSpec
from recgpt.data.behavior import behavior_rank, normalize_behaviors
from recgpt.data.common import RawData, frame, numeric_timestamps, require_columns, resolve_file
from recgpt.data.errors import DataFormatError
from recgpt.data.table import read_table

EVENT_COLUMNS = {"timestamp": "timestamp", "user": "visitorid", "behavior": "event", "item": "itemid"}
TARGET_COLUMNS = {"user": "visitorid", "item": "itemid"}


def non_empty(table: pd.DataFrame, columns: dict, path: Path, numbers: np.ndarray) -> None:
    for role, name in columns.items():
        empty = table[name].astype("string").str.strip().fillna("").eq("").to_numpy()
        if empty.any():
            raise DataFormatError(path, f"empty {name!r} ({role})", int(numbers[np.flatnonzero(empty)[0]]))


def read_events(path: Path, counts: dict) -> pd.DataFrame:
    table, numbers, where = read_table(path, counts, "cut_last_rows_dropped")
    require_columns(path, table.columns, EVENT_COLUMNS)
    if table.empty:
        raise DataFormatError(path, "no rows after the header")
    non_empty(table, {k: v for k, v in EVENT_COLUMNS.items() if k != "timestamp"}, path, numbers)
    timestamps = numeric_timestamps(table["timestamp"], path, numbers, where)
    out = frame(table["visitorid"].str.strip(), table["itemid"].str.strip(), timestamps)
    out["behavior"] = normalize_behaviors(table["event"], path, numbers, where)
    # Stable: equal (timestamp, behaviour) rows keep file order; the prepare step's stable per-user sort on
    # timestamp then keeps this behaviour order inside ties.
    order = np.lexsort((np.arange(len(out)), behavior_rank(out["behavior"]), out["timestamp"].fillna(0).to_numpy()))
    return out.iloc[order].reset_index(drop=True)


def read_targets(path: Path, counts: dict) -> pd.DataFrame:
    table, numbers, _ = read_table(path, counts, "target_cut_last_rows_dropped")
    require_columns(path, table.columns, TARGET_COLUMNS)
    non_empty(table, TARGET_COLUMNS, path, numbers)
    return pd.DataFrame({"user_id": table["visitorid"].str.strip().astype(str),
                         "item_id": table["itemid"].str.strip().astype(str), "behavior": "buy"})


def read(spec: DatasetSpec, folder: Path) -> RawData:
    events_path = resolve_file(folder, spec.files.get("events"), "events")
    counts: dict = {}
    interactions = read_events(events_path, counts)
    sources, targets = [events_path], None
    if spec.files.get("targets"):
        targets_path = resolve_file(folder, spec.files["targets"], "targets")
        targets = read_targets(targets_path, counts)
        sources.append(targets_path)
    items = pd.DataFrame({"item_id": pd.Series([], dtype=object)})
    return RawData(interactions, items, sources, counts, targets)
