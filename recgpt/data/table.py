"""Generic CSV / TSV / Parquet tables with a column mapping in the spec.

Spec: files.inter (+ files.item optional); columns.user, columns.item (required), columns.timestamp
(optional, numeric in timestamp_unit), columns.behavior (optional: the event type of a multi-behaviour log,
normalised by recgpt.data.behavior), columns.item_key (item-file key column, default columns.item).
`.tsv` files are tab-separated, other text files comma-separated; `.parquet` is read with pyarrow.
"""
import csv
from pathlib import Path

import numpy as np
import pandas as pd

from recgpt.config.data import DatasetSpec
from recgpt.data.behavior import normalize_behaviors
from recgpt.data.common import (RawData, drop_cut_last_row, frame, numeric_timestamps, open_text, require_columns,
                                resolve_file, undecodable)
from recgpt.data.errors import DataFormatError


def read_table(path: Path, counts: dict, key: str) -> tuple[pd.DataFrame, np.ndarray, str]:
    """(table as strings / raw values, the line or row number of each row, "line" or "row"). A text file's
    last row cut off (no line end) is skipped and counted in counts[key]."""
    if path.suffix == ".parquet":
        try:
            table = pd.read_parquet(path)
            return table, np.arange(len(table)), "row"
        except Exception as e:  # pyarrow raises several types for a corrupt file
            raise DataFormatError(path, f"not a readable parquet file: {e}") from None
    sep = "\t" if path.suffix == ".tsv" else ","
    start = 1
    try:
        with open_text(path) as f:
            reader = csv.reader(f, delimiter=sep, strict=True)  # strict: a quote left open is an error, not rows lost
            header = next(reader, None)
            if header is None:
                raise DataFormatError(path, "empty file (no header)")
            records, start = [], reader.line_num + 1
            for values in reader:  # a record starts on the line after the previous one ended
                if values:
                    records.append((values, start, reader.line_num))
                start = reader.line_num + 1
            records = drop_cut_last_row(path, records, counts, key)
            rows, lines = [], []
            for values, number, end in records:
                if len(values) != len(header):  # named at the line it starts on, not where the reader stopped
                    spans = f" (a quoted field opened here runs to line {end}: unclosed quote?)" if end > number else ""
                    raise DataFormatError(path, f"expected {len(header)} fields {header}, found {len(values)}"
                                                f"{spans}", number)
                rows.append(values)
                lines.append(number)
    except csv.Error as e:  # named at the line where the record starts (an unclosed quote: where it opens)
        raise DataFormatError(path, f"malformed CSV in the record starting here: {e} (read to line "
                                    f"{reader.line_num}{'; a quote left open?' if reader.line_num > start else ''})",
                              start) from None
    except UnicodeDecodeError as e:
        raise undecodable(path, "utf-8", e) from None
    table = pd.DataFrame(rows, columns=header, dtype=object) if rows else pd.DataFrame(columns=header)
    return table, np.asarray(lines, dtype=np.int64), "line"


def read(spec: DatasetSpec, folder: Path) -> RawData:
    inter_path = resolve_file(folder, spec.files.get("inter"), "inter")
    counts = {}
    table, numbers, where = read_table(inter_path, counts, "cut_last_rows_dropped")
    if "user" not in spec.columns or "item" not in spec.columns:
        raise DataFormatError(inter_path, "the spec needs columns.user and columns.item for a table dataset")
    needed = {"user": spec.columns["user"], "item": spec.columns["item"]}
    if spec.columns.get("timestamp"):
        needed["timestamp"] = spec.columns["timestamp"]
    if spec.columns.get("behavior"):
        needed["behavior"] = spec.columns["behavior"]
    require_columns(inter_path, table.columns, needed)
    if table.empty:
        raise DataFormatError(inter_path, "no rows after the header")
    timestamps = None
    if "timestamp" in needed:
        timestamps = numeric_timestamps(table[needed["timestamp"]], inter_path, numbers, where)
    interactions = frame(table[needed["user"]], table[needed["item"]], timestamps)
    if "behavior" in needed:
        interactions["behavior"] = normalize_behaviors(table[needed["behavior"]], inter_path, numbers, where)

    sources = [inter_path]
    items = pd.DataFrame({"item_id": pd.Series([], dtype=object)})
    if spec.files.get("item"):
        item_path = resolve_file(folder, spec.files["item"], "item")
        item_table, _, _ = read_table(item_path, counts, "item_cut_last_rows_dropped")
        key = spec.columns.get("item_key", needed["item"])
        require_columns(item_path, item_table.columns, {"item_key": key})
        item_table = item_table.rename(columns={key: "item_id"})
        item_table["item_id"] = item_table["item_id"].astype(str)
        repeated = item_table["item_id"].duplicated()
        counts["item_rows_repeated"] = int(repeated.sum())
        items = item_table[~repeated].reset_index(drop=True)
        sources.append(item_path)
    return RawData(interactions, items, sources, counts)
