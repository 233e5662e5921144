"""RecBole atomic files: tab-separated `.inter` / `.item` with a `name:type` header.

Types: token (a string), token_seq (space-separated tokens, kept as the original string), float, float_seq.
The `.inter` file needs user and item columns; a timestamp column is optional (file order is the order then).
Spec: files.inter, files.item (optional); columns.user / item / timestamp override the default names.
"""
from pathlib import Path

import numpy as np
import pandas as pd

from recgpt.config.data import DatasetSpec
from recgpt.data.common import RawData, drop_cut_last_row, frame, numbered_lines, numeric_timestamps, require_columns, resolve_file
from recgpt.data.errors import DataFormatError

TYPES = ("token", "token_seq", "float", "float_seq")


def read_atomic(path: Path, counts: dict, key: str) -> tuple[pd.DataFrame, np.ndarray]:
    """(all columns as strings, the file line of each row); errors name the file and line. A last row cut
    off (no line end) is skipped and counted in counts[key]."""
    lines = list(numbered_lines(path))
    if not lines:
        raise DataFormatError(path, "empty file (no header)")
    first, lines = lines[0], drop_cut_last_row(path, lines[1:], counts, key)
    header = first[1].split("\t")
    names = []
    for field in header:
        name, sep, kind = field.partition(":")
        if not sep or not name or kind not in TYPES:
            raise DataFormatError(path, f"header field {field!r} is not 'name:type' with type in {TYPES}", first[0])
        names.append(name)
    if len(set(names)) != len(names):
        raise DataFormatError(path, f"repeated column names in header {names}", first[0])
    columns = [[] for _ in names]
    numbers = []
    width = len(names)
    for number, line in lines:
        values = line.split("\t")
        if len(values) != width:
            raise DataFormatError(path, f"expected {width} tab-separated fields {names}, found {len(values)}", number)
        for column, value in zip(columns, values):
            column.append(value)
        numbers.append(number)
    table = pd.DataFrame({name: pd.Series(col, dtype=object) for name, col in zip(names, columns)})
    return table, np.asarray(numbers, dtype=np.int64)


def read(spec: DatasetSpec, folder: Path) -> RawData:
    inter_path = resolve_file(folder, spec.files.get("inter"), "inter")
    counts = {}
    inter, lines = read_atomic(inter_path, counts, "cut_last_rows_dropped")
    if inter.empty:
        raise DataFormatError(inter_path, "no interaction rows after the header")
    user = spec.columns.get("user", "user_id")
    item = spec.columns.get("item", "item_id")
    require_columns(inter_path, inter.columns, {"user": user, "item": item})
    ts_col = spec.columns.get("timestamp", "timestamp")
    timestamps = numeric_timestamps(inter[ts_col], inter_path, lines) if ts_col in inter.columns else None
    interactions = frame(inter[user], inter[item], timestamps)

    sources = [inter_path]
    items = pd.DataFrame({"item_id": pd.Series([], dtype=object)})
    if spec.files.get("item"):
        item_path = resolve_file(folder, spec.files["item"], "item")
        table, item_lines = read_atomic(item_path, counts, "item_cut_last_rows_dropped")
        item_key = spec.columns.get("item_key", item)
        require_columns(item_path, table.columns, {"item": item_key})
        table = table.rename(columns={item_key: "item_id"})
        repeated = table["item_id"].duplicated()
        counts["item_rows_repeated"] = int(repeated.sum())  # the first row of an item wins
        items = table[~repeated].reset_index(drop=True)
        sources.append(item_path)
    return RawData(interactions, items, sources, counts)
