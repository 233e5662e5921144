"""Helpers shared by the importers: the raw-data container, checked file access and timestamp parsing."""
import gzip
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import pandas as pd

from recgpt.data.errors import DataFormatError


@dataclass
class RawData:
    """What an importer returns: rows in file order, before ordering, de-duplication and text building.

    interactions: user_id (str), item_id (str), timestamp (nullable Int64, in the raw unit).
    items: item_id (str) plus raw fields (str or list of str), one row per item of the item file.
    counts: skips the importer made itself (e.g. metadata lines without an id), named for the manifest.
    interactions may carry a `behavior` column (canonical names, recgpt.data.behavior); `targets` (user_id,
    item_id, behavior) is a held-out target set shipped with the data (RetailRocket's test.csv), or None.
    """
    interactions: pd.DataFrame
    items: pd.DataFrame
    sources: list[Path]
    counts: dict = field(default_factory=dict)
    targets: Optional[pd.DataFrame] = None


def resolve_file(folder: Path, name: Optional[str], key: str) -> Path:
    """The file `name` (spec.files[key]) inside `folder`; a clear error when it is not configured or absent."""
    if not name:
        raise DataFormatError(folder, f"no file configured for files.{key}")
    path = Path(folder) / name
    if not path.is_file():
        raise DataFormatError(path, f"missing file (files.{key})")
    if path.stat().st_size == 0:
        raise DataFormatError(path, "empty file")
    return path


def open_text(path: Path, encoding: str = "utf-8"):
    """Open a text file, transparently gunzipping `*.gz`."""
    if str(path).endswith(".gz"):
        return gzip.open(path, "rt", encoding=encoding, errors="strict")
    return open(path, "r", encoding=encoding, newline="")


def numbered_lines(path: Path, encoding: str = "utf-8") -> Iterator[tuple[int, str]]:
    """(1-based line number, line without its newline), skipping blank lines; decoding errors name the line."""
    with open_text(path, encoding) as f:
        number = 0
        while True:
            try:
                line = f.readline()
            except UnicodeDecodeError as e:
                raise DataFormatError(path, f"not valid {encoding} text: {e.reason}", number + 1) from None
            if not line:
                return
            number += 1
            line = line.rstrip("\r\n")
            if line.strip():
                yield number, line


def require_columns(path: Path, present, needed: dict, what: str = "column") -> None:
    """Fail naming the file, the missing columns and the columns that exist."""
    present = list(present)
    missing = [f"{col!r} ({role})" for role, col in needed.items() if col not in present]
    if missing:
        raise DataFormatError(path, f"missing {what}(s) {', '.join(missing)}; found {present}", 1, "header")


def numeric_timestamps(values: pd.Series, path: Path, lines: Optional[np.ndarray] = None,
                       where: str = "line") -> pd.Series:
    """Parse raw timestamps as numbers (int or float text) into nullable Int64; never as strings.

    Empty / NA values become null. A value that is not a number raises DataFormatError naming its line
    (`lines[i]` is the file line of row i; row index + 1 otherwise).
    """
    text = values.astype("string").str.strip()
    empty = text.isna() | (text == "")
    parsed = pd.to_numeric(text.where(~empty), errors="coerce")
    bad = parsed.isna() & ~empty
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        line = int(lines[i]) if lines is not None else i + 1
        raise DataFormatError(path, f"timestamp {values.iloc[i]!r} is not a number", line, where)
    finite = parsed.dropna()
    if len(finite) and not np.isfinite(finite.to_numpy(dtype=float)).all():
        i = int(np.flatnonzero(~np.isfinite(parsed.fillna(0).to_numpy(dtype=float)))[0])
        line = int(lines[i]) if lines is not None else i + 1
        raise DataFormatError(path, f"timestamp {values.iloc[i]!r} is not finite", line, where)
    return np.floor(parsed).astype("Int64")


def frame(users, items, timestamps=None) -> pd.DataFrame:
    """The interactions frame every importer returns (ids as strings, timestamps nullable Int64)."""
    def as_str(values) -> np.ndarray:
        return pd.Series(np.asarray(values, dtype=object)).astype(str).to_numpy(dtype=object)

    out = pd.DataFrame({"user_id": as_str(users), "item_id": as_str(items)})
    if timestamps is None:
        out["timestamp"] = pd.array([pd.NA] * len(out), dtype="Int64")
    else:
        out["timestamp"] = pd.array(np.asarray(timestamps, dtype=object), dtype="Int64")
    return out
