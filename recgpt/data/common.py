"""Helpers shared by the importers: the raw-data container, checked file access and timestamp parsing."""
import codecs
import errno
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
        raise DataFormatError(path, f"{'a symlink loop' if symlink_loop(path) else 'missing file'} (files.{key})")
    if path.stat().st_size == 0:
        raise DataFormatError(path, "empty file")
    return path


def symlink_loop(path: Path) -> bool:
    """True when `path` is a symlink that never reaches a file or folder (is_file() / is_dir() say only False)."""
    try:
        Path(path).stat()
    except OSError as e:
        return e.errno == errno.ELOOP
    return False


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
            except UnicodeDecodeError as e:  # text is decoded in blocks: the failing block may start lines earlier
                raise undecodable(path, encoding, e) from None
            except (EOFError, OSError) as e:  # a truncated or corrupt .gz
                raise DataFormatError(path, f"cannot be read past line {number}: {e}") from None
            if not line:
                return
            number += 1
            line = line.rstrip("\r\n")
            if line.strip():
                yield number, line


def undecodable(path: Path, encoding: str, error: UnicodeDecodeError) -> DataFormatError:
    """The error naming the line of the first byte that does not decode (re-read line by line: a text
    reader decodes whole blocks, so the line it was at says nothing)."""
    decoder = codecs.getincrementaldecoder(encoding)("strict")
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                decoder.decode(raw)
            except UnicodeDecodeError as e:
                return DataFormatError(path, f"not valid {encoding} text: {e.reason} (byte {raw[e.start:e.end]!r} "
                                             f"at byte {e.start + 1} of the line)", number)
    return DataFormatError(path, f"not valid {encoding} text: {error.reason}")


def unterminated(path: Path) -> bool:
    """True when a plain text file's last line has no line end: the file was most likely cut in its last row.
    (A cut .gz fails its own end-of-stream check instead.)"""
    if str(path).endswith(".gz") or Path(path).stat().st_size == 0:
        return False
    with open(path, "rb") as f:
        f.seek(-1, 2)
        return f.read(1) not in (b"\n", b"\r")


def drop_cut_last_row(path: Path, rows: list, counts: dict, key: str) -> list:
    """Drop the last row of a file cut in it (no line end) and count it in counts[key]; never silently."""
    if rows and unterminated(path):
        from recgpt.logging import warn

        warn(f"{path}: the last line has no line end (file cut in its last row?): that row is skipped and "
             f"counted as {key}")
        counts[key] = counts.get(key, 0) + 1
        return rows[:-1]
    counts.setdefault(key, 0)
    return rows


BOM = "\ufeff"


def require_columns(path: Path, present, needed: dict, what: str = "column") -> None:
    """Fail naming the file, the missing columns and the columns that exist."""
    present = list(present)
    missing = [f"{col!r} ({role})" for role, col in needed.items() if col not in present]
    if missing:
        hint = (" - the file starts with a UTF-8 byte-order mark (BOM): save it as UTF-8 without BOM"
                if present and str(present[0]).startswith(BOM) else "")
        raise DataFormatError(path, f"missing {what}(s) {', '.join(missing)}; found {present}{hint}", 1, "header")


MAX_TIMESTAMP = 1e17  # well inside int64 in any unit (ms of year 3 million): beyond it a value is garbage


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
    too_big = np.abs(parsed.fillna(0).to_numpy(dtype=float)) >= MAX_TIMESTAMP
    if too_big.any():  # it would wrap around int64 (1e30 became INT64_MIN and sorted first)
        i = int(np.flatnonzero(too_big)[0])
        line = int(lines[i]) if lines is not None else i + 1
        raise DataFormatError(path, f"timestamp {values.iloc[i]!r} is out of range (|t| must be < {MAX_TIMESTAMP:.0e}, "
                                    "even in milliseconds)", line, where)
    check_one_unit(parsed.to_numpy(dtype=float, na_value=np.nan), values, path, lines, where)
    return np.floor(parsed).astype("Int64")


EPOCH_LIKE = 1e8  # 1973 in seconds: smaller values are counters or offsets, whose range says nothing of the unit
UNIT_JUMP = 1000.0  # seconds -> milliseconds: a real log spans decades, never a factor of 1000 in epoch time


def check_one_unit(parsed: np.ndarray, values: pd.Series, path: Path, lines: Optional[np.ndarray],
                   where: str) -> None:
    """Refuse epoch timestamps that span >= 3 orders of magnitude (seconds mixed with milliseconds): each
    would be ordered by its number and land decades away. Names the first row of the smaller group."""
    epoch = np.flatnonzero(parsed >= EPOCH_LIKE)  # NaN compares False
    if len(epoch) < 2:
        return
    low, high = parsed[epoch].min(), parsed[epoch].max()
    if high < UNIT_JUMP * low:
        return
    big = parsed[epoch] >= np.sqrt(low * high)  # split at the geometric middle of the jump
    odd, rest = (epoch[big], epoch[~big]) if big.sum() <= (~big).sum() else (epoch[~big], epoch[big])
    i = int(odd[0])
    line = int(lines[i]) if lines is not None else i + 1
    raise DataFormatError(path, f"timestamp {values.iloc[i]!r}: {len(odd)} of {len(epoch)} timestamps are near "
                                f"{parsed[i]:.1e} and {len(rest)} near {parsed[rest[0]]:.1e}, {high / low:.0e}x apart "
                                "(seconds mixed with milliseconds?): rows in two units would be misordered; convert "
                                "them to one unit (timestamp_unit)", line, where)


def frame(users, items, timestamps=None) -> pd.DataFrame:
    """The interactions frame every importer returns (ids as strings, timestamps nullable Int64)."""
    def as_str(values) -> np.ndarray:  # a missing id (None / NaN) becomes "", counted and dropped in prepare
        series = pd.Series(np.asarray(values, dtype=object))
        return series.astype(str).where(series.notna(), "").to_numpy(dtype=object)

    out = pd.DataFrame({"user_id": as_str(users), "item_id": as_str(items)})
    if timestamps is None:
        out["timestamp"] = pd.array([pd.NA] * len(out), dtype="Int64")
    else:
        out["timestamp"] = pd.array(np.asarray(timestamps, dtype=object), dtype="Int64")
    return out
