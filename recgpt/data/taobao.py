"""Alibaba Tianchi `UserBehavior.csv` (Taobao): headerless `user,item,category,behavior,timestamp` rows,
behaviour pv / cart / fav / buy (normalised to view / cart / fav / buy), unix seconds. Spec: files.inter.

- A last line cut off mid-row (a byte-prefix of the original file) is a counted skip
  (`truncated_last_line`): fewer than 5 fields, or no newline after it and a timestamp with fewer digits than
  the row before. Any other row with the wrong number of fields is an error naming its line. The user of
  the cut line is kept with the rows that are complete (their history may continue in the full file).
- Rows outside the dataset's documented window (2017-11-25 to 2017-12-03, China time) are real events of
  these users (the original file has them too); they are kept, placed by the numeric sort, and counted
  (`rows_before_window`, `rows_after_window`). Drop them downstream if a protocol needs the window only.
- Items: one row per item with its `category` (the only item information there is; use it as item text).
  An item listed under several categories keeps the first one seen and is counted
  (`items_with_several_categories`).
"""
from pathlib import Path

import numpy as np
import pandas as pd

from recgpt.config.data import DatasetSpec
from recgpt.data.behavior import normalize_behaviors
from recgpt.data.common import RawData, frame, numbered_lines, numeric_timestamps, resolve_file
from recgpt.data.errors import DataFormatError

FIELDS = ("user", "item", "category", "behavior", "timestamp")
WINDOW = (1511539200, 1512316800)  # [2017-11-25 00:00, 2017-12-04 00:00) UTC+8, as the dataset page states


def ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(-1, 2)
        return f.read(1) in (b"\n", b"\r")


def read_rows(path: Path) -> tuple[list[list[str]], np.ndarray, int]:
    """(rows of 5 fields, their line numbers, 1 if the cut last line was skipped else 0)."""
    rows, numbers = [], []
    for number, line in numbered_lines(path):
        rows.append(line.split(","))
        numbers.append(number)
    if not rows:
        raise DataFormatError(path, "no rows")
    truncated = 0
    last = rows[-1]
    cut = len(last) < len(FIELDS) or (
        len(last) == len(FIELDS) and len(rows) > 1 and len(rows[-2]) == len(FIELDS)
        and not ends_with_newline(path) and len(last[4].strip()) < len(rows[-2][4].strip()))
    if cut:
        rows, numbers, truncated = rows[:-1], numbers[:-1], 1
    for values, number in zip(rows, numbers):
        if len(values) != len(FIELDS):
            raise DataFormatError(path, f"expected {len(FIELDS)} comma-separated fields ({', '.join(FIELDS)}), "
                                        f"found {len(values)}", number)
    return rows, np.asarray(numbers, dtype=np.int64), truncated


def read(spec: DatasetSpec, folder: Path) -> RawData:
    path = resolve_file(folder, spec.files.get("inter"), "inter")
    rows, numbers, truncated = read_rows(path)
    if not rows:
        raise DataFormatError(path, "no complete rows")
    users, items, categories, behaviors, stamps = (np.asarray(col, dtype=object) for col in zip(*rows))
    timestamps = numeric_timestamps(pd.Series(stamps, dtype=object), path, numbers)
    interactions = frame(users, items, timestamps)
    interactions["behavior"] = normalize_behaviors(behaviors, path, numbers)

    values = timestamps.to_numpy(dtype=float, na_value=np.nan)
    counts = {"truncated_last_line": truncated,
              "rows_before_window": int((values < WINDOW[0]).sum()),
              "rows_after_window": int((values >= WINDOW[1]).sum())}
    pairs = pd.DataFrame({"item_id": interactions["item_id"], "category": pd.Series(categories).str.strip()})
    counts["items_with_several_categories"] = int((pairs.drop_duplicates().groupby("item_id").size() > 1).sum())
    item_table = pairs.drop_duplicates("item_id", keep="first").reset_index(drop=True)
    return RawData(interactions, item_table, [path], counts)
