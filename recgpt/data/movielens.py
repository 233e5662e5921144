"""MovieLens raw files: ML-100K `u.data` (tab: user, item, rating, timestamp) + `u.item` ('|', latin-1,
19 genre flags), or ML-1M/10M `ratings.dat` + `movies.dat` ('::'-separated, genres joined by '|').

Item fields: title, year, genres (a list). Spec: files.ratings, files.movies (optional).
"""
import re
from pathlib import Path

import numpy as np
import pandas as pd

from recgpt.config.data import DatasetSpec
from recgpt.data.common import RawData, frame, numbered_lines, numeric_timestamps, resolve_file
from recgpt.data.errors import DataFormatError

# Order of the genre flags in u.item (the ML-100K u.genre file).
GENRES_100K = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
               "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
               "War", "Western"]
YEAR_IN_TITLE = re.compile(r"\((\d{4})\)\s*$")


def split_lines(path: Path, sep: str, width: int, encoding: str, names: list[str]):
    """Rows of exactly `width` fields (extra trailing fields of u.item are an error too)."""
    rows, numbers = [], []
    for number, line in numbered_lines(path, encoding):
        values = line.split(sep)
        if len(values) != width:
            raise DataFormatError(path, f"expected {width} {sep!r}-separated fields ({', '.join(names)}), "
                                        f"found {len(values)}", number)
        rows.append(values)
        numbers.append(number)
    if not rows:
        raise DataFormatError(path, "no rows")
    return rows, np.asarray(numbers)


def read_ratings(path: Path):
    sep = "::" if path.name.endswith(".dat") else "\t"
    rows, numbers = split_lines(path, sep, 4, "utf-8", ["user", "item", "rating", "timestamp"])
    users, items, _, stamps = zip(*rows)
    return frame(users, items, numeric_timestamps(pd.Series(stamps, dtype=object), path, numbers))


def read_movies(path: Path) -> pd.DataFrame:
    records = []
    if path.name.endswith(".dat"):
        rows, _ = split_lines(path, "::", 3, "latin-1", ["item", "title", "genres"])
        for item, title, genres in rows:
            year = YEAR_IN_TITLE.search(title)
            records.append({"item_id": item, "title": title, "year": year.group(1) if year else "",
                            "genres": [g for g in genres.split("|") if g and g != "(no genres listed)"]})
    else:
        width = 5 + len(GENRES_100K)
        rows, numbers = split_lines(path, "|", width, "latin-1", ["item", "title", "release date", "video date",
                                                                   "url", "19 genre flags"])
        for values, number in zip(rows, numbers):
            flags = values[5:]
            if any(f not in ("0", "1") for f in flags):
                raise DataFormatError(path, f"genre flags must be 0/1, found {flags}", int(number))
            date = values[2].strip()
            records.append({"item_id": values[0], "title": values[1], "year": date[-4:] if date else "",
                            "genres": [g for g, f in zip(GENRES_100K, flags) if f == "1"]})
    return pd.DataFrame(records)


def read(spec: DatasetSpec, folder: Path) -> RawData:
    ratings_path = resolve_file(folder, spec.files.get("ratings"), "ratings")
    interactions = read_ratings(ratings_path)
    sources, items = [ratings_path], pd.DataFrame({"item_id": pd.Series([], dtype=object)})
    counts = {}
    if spec.files.get("movies"):
        movies_path = resolve_file(folder, spec.files["movies"], "movies")
        items = read_movies(movies_path)
        repeated = items["item_id"].duplicated()
        counts["item_rows_repeated"] = int(repeated.sum())
        items = items[~repeated].reset_index(drop=True)
        sources.append(movies_path)
    return RawData(interactions, items, sources, counts)
