"""UCSD Steam: reviews (parquet with user_id, item_id, posted; or the original json(.gz) of Python-literal lines)
plus `steam_games.json.gz` (one Python dict literal per line, parsed with ast.literal_eval, never eval/pickle).

`posted` is "YYYY-MM-DD", the original "Posted November 5, 2011." or null / a date without a year
("Posted July 15."): those become null timestamps; imports.null_timestamps says where they sort.
Timestamps are unix seconds at 00:00 UTC of the day.
Spec: files.reviews, files.games (optional).
"""
import ast
import re
from pathlib import Path

import numpy as np
import pandas as pd

from recgpt.config.data import DatasetSpec
from recgpt.data.common import RawData, frame, numbered_lines, require_columns, resolve_file
from recgpt.data.errors import DataFormatError

ISO_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
POSTED = re.compile(r"^Posted (\w+) (\d{1,2})(?:, (\d{4}))?\.?$")


def literal_lines(path: Path):
    """(line number, dict) for each line holding a Python dict literal."""
    for number, line in numbered_lines(path):
        try:
            value = ast.literal_eval(line)
        except (ValueError, SyntaxError, MemoryError, RecursionError) as e:
            raise DataFormatError(path, f"not a Python literal: {type(e).__name__}", number) from None
        if not isinstance(value, dict):
            raise DataFormatError(path, f"expected a dict literal, found {type(value).__name__}", number)
        yield number, value


def posted_to_day(value, path: Path, row: int, where: str):
    """ISO day string (or None) from a `posted` value; error naming the row for anything else."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    text = str(value).strip()
    if not text:
        return None
    if ISO_DAY.match(text):
        return text
    match = POSTED.match(text)
    if match:
        month, day, year = match.groups()
        if year is None:
            return None  # the crawl year is not shown: unknown
        try:
            return pd.to_datetime(f"{day} {month} {year}", format="%d %B %Y").strftime("%Y-%m-%d")
        except ValueError:
            pass
    raise DataFormatError(path, f"posted {value!r} is not a date (YYYY-MM-DD or 'Posted Month D, YYYY.')", row, where)


def days_to_seconds(days: list, path: Path, rows, where: str) -> pd.Series:
    parsed = pd.to_datetime(pd.Series(days, dtype=object), format="%Y-%m-%d", errors="coerce", utc=True)
    bad = parsed.isna().to_numpy() & np.array([d is not None for d in days], dtype=bool)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataFormatError(path, f"posted {days[i]!r} is not a valid calendar day", int(rows[i]), where)
    seconds = (parsed - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
    return seconds.astype("Int64")


def read_reviews(path: Path):
    if path.suffix == ".parquet":
        try:
            table = pd.read_parquet(path, columns=None)
        except Exception as e:  # pyarrow raises several types for a corrupt file
            raise DataFormatError(path, f"not a readable parquet file: {e}") from None
        require_columns(path, table.columns, {"user": "user_id", "item": "item_id", "timestamp": "posted"})
        if table.empty:
            raise DataFormatError(path, "no review rows")
        rows = np.arange(len(table))  # 0-based parquet row numbers
        days = [posted_to_day(v, path, int(r), "row") for v, r in zip(table["posted"].tolist(), rows)]
        return table["user_id"], table["item_id"], days, rows, "row"
    users, items, days, rows = [], [], [], []
    for number, record in literal_lines(path):
        if "user_id" not in record or not isinstance(record.get("reviews"), list):
            raise DataFormatError(path, "expected keys 'user_id' and 'reviews' (a list)", number)
        for review in record["reviews"]:
            if not isinstance(review, dict) or "item_id" not in review:
                raise DataFormatError(path, "a review without 'item_id'", number)
            users.append(record["user_id"])
            items.append(review["item_id"])
            days.append(posted_to_day(review.get("posted"), path, number, "line"))
            rows.append(number)
    if not users:
        raise DataFormatError(path, "no reviews in the file")
    return users, items, days, np.asarray(rows), "line"


def read(spec: DatasetSpec, folder: Path) -> RawData:
    reviews_path = resolve_file(folder, spec.files.get("reviews"), "reviews")
    users, items, days, rows, where = read_reviews(reviews_path)
    interactions = frame(users, items, days_to_seconds(days, reviews_path, rows, where))
    sources, counts = [reviews_path], {}
    games = pd.DataFrame({"item_id": pd.Series([], dtype=object)})
    if spec.files.get("games"):
        games_path = resolve_file(folder, spec.files["games"], "games")
        records, seen, without_id, repeated = [], set(), 0, 0
        for _, record in literal_lines(games_path):
            game_id = record.get("id")
            if game_id is None or str(game_id).strip() == "":
                without_id += 1
                continue
            game_id = str(game_id)
            if game_id in seen:
                repeated += 1  # the first line of a game wins
                continue
            seen.add(game_id)
            records.append({**record, "item_id": game_id})
        counts.update(games_without_id=without_id, item_rows_repeated=repeated)
        if records:
            games = pd.DataFrame(records)
        sources.append(games_path)
    return RawData(interactions, games, sources, counts)
