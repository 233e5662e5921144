"""Generic CSV / TSV / Parquet tables with a column mapping in the spec.

Spec: files.inter (+ files.item optional); columns.user, columns.item (required), columns.timestamp
(optional, numeric in timestamp_unit), columns.item_key (item-file key column, default columns.item).
`.tsv` files are tab-separated, other text files comma-separated; `.parquet` is read with pyarrow.
"""
from pathlib import Path

import numpy as np
import pandas as pd

from recgpt.config.data import DatasetSpec
from recgpt.data.common import RawData, frame, numeric_timestamps, require_columns, resolve_file
from recgpt.data.errors import DataFormatError


def read_table(path: Path) -> tuple[pd.DataFrame, str, int]:
    """(table as strings / raw values, what a row number means, offset from row index to that number)."""
    if path.suffix == ".parquet":
        try:
            return pd.read_parquet(path), "row", 0
        except Exception as e:  # pyarrow raises several types for a corrupt file
            raise DataFormatError(path, f"not a readable parquet file: {e}") from None
    sep = "\t" if path.suffix == ".tsv" else ","
    try:
        table = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, skip_blank_lines=False)
    except pd.errors.ParserError as e:  # the message names the line ("Expected 3 fields in line 7, saw 4")
        raise DataFormatError(path, f"malformed row: {str(e).strip()}") from None
    except pd.errors.EmptyDataError:
        raise DataFormatError(path, "empty file (no header)") from None
    except UnicodeDecodeError as e:
        raise DataFormatError(path, f"not valid utf-8 text: {e.reason}") from None
    short = table.isna().any(axis=1).to_numpy()  # too few fields on a line leaves NaN even with dtype=str
    if short.any():
        i = int(np.flatnonzero(short)[0])
        raise DataFormatError(path, f"expected {table.shape[1]} fields {list(table.columns)}, found fewer", i + 2)
    return table, "line", 2


def read(spec: DatasetSpec, folder: Path) -> RawData:
    inter_path = resolve_file(folder, spec.files.get("inter"), "inter")
    table, where, offset = read_table(inter_path)
    if "user" not in spec.columns or "item" not in spec.columns:
        raise DataFormatError(inter_path, "the spec needs columns.user and columns.item for a table dataset")
    needed = {"user": spec.columns["user"], "item": spec.columns["item"]}
    if spec.columns.get("timestamp"):
        needed["timestamp"] = spec.columns["timestamp"]
    require_columns(inter_path, table.columns, needed)
    if table.empty:
        raise DataFormatError(inter_path, "no rows after the header")
    timestamps = None
    if "timestamp" in needed:
        rows = np.arange(len(table)) + offset
        timestamps = numeric_timestamps(table[needed["timestamp"]], inter_path, rows, where)
    interactions = frame(table[needed["user"]], table[needed["item"]], timestamps)

    sources, counts = [inter_path], {}
    items = pd.DataFrame({"item_id": pd.Series([], dtype=object)})
    if spec.files.get("item"):
        item_path = resolve_file(folder, spec.files["item"], "item")
        item_table, _, _ = read_table(item_path)
        key = spec.columns.get("item_key", needed["item"])
        require_columns(item_path, item_table.columns, {"item_key": key})
        item_table = item_table.rename(columns={key: "item_id"})
        item_table["item_id"] = item_table["item_id"].astype(str)
        repeated = item_table["item_id"].duplicated()
        counts["item_rows_repeated"] = int(repeated.sum())
        items = item_table[~repeated].reset_index(drop=True)
        sources.append(item_path)
    return RawData(interactions, items, sources, counts)
