"""Amazon Reviews 2023: `<Domain>.jsonl(.gz)` reviews + `meta_<Domain>.jsonl(.gz)` item metadata, one JSON
object per line.

Reviews need user_id, the item key (columns.item, default parent_asin) and timestamp (milliseconds in the
release: set timestamp_unit: ms). Meta lines are keyed by columns.item_key (default parent_asin); list fields
(features, description, categories) stay lists and are joined when building text.
Spec: files.reviews, files.meta (optional).
"""
import json
from pathlib import Path

import numpy as np
import pandas as pd

from recgpt.config.data import DatasetSpec
from recgpt.data.common import RawData, frame, numbered_lines, numeric_timestamps, resolve_file
from recgpt.data.errors import DataFormatError


def json_lines(path: Path):
    for number, line in numbered_lines(path):
        try:
            value = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataFormatError(path, f"not valid JSON (column {e.colno}): {e.msg}", number) from None
        if not isinstance(value, dict):
            raise DataFormatError(path, f"expected a JSON object, found {type(value).__name__}", number)
        yield number, value


def read(spec: DatasetSpec, folder: Path) -> RawData:
    reviews_path = resolve_file(folder, spec.files.get("reviews"), "reviews")
    user_key = spec.columns.get("user", "user_id")
    item_key = spec.columns.get("item", "parent_asin")
    time_key = spec.columns.get("timestamp", "timestamp")
    users, items, stamps, numbers = [], [], [], []
    for number, review in json_lines(reviews_path):
        missing = [k for k in (user_key, item_key, time_key) if k not in review]
        if missing:
            raise DataFormatError(reviews_path, f"missing key(s) {missing}", number)
        users.append(review[user_key])
        items.append(review[item_key])
        stamps.append(review[time_key])
        numbers.append(number)
    if not users:
        raise DataFormatError(reviews_path, "no reviews in the file")
    timestamps = numeric_timestamps(pd.Series(stamps, dtype=object), reviews_path, np.asarray(numbers))
    interactions = frame(users, items, timestamps)

    sources, counts = [reviews_path], {}
    items_table = pd.DataFrame({"item_id": pd.Series([], dtype=object)})
    if spec.files.get("meta"):
        meta_path = resolve_file(folder, spec.files["meta"], "meta")
        meta_key = spec.columns.get("item_key", item_key)
        records, seen, without_key = [], set(), 0
        for number, record in json_lines(meta_path):
            key = record.get(meta_key)
            if key is None or str(key) == "":
                without_key += 1
                continue
            if str(key) in seen:
                continue
            seen.add(str(key))
            records.append({**record, "item_id": str(key)})
        counts["meta_without_id"] = without_key
        if records:
            items_table = pd.DataFrame(records)
        sources.append(meta_path)
    return RawData(interactions, items_table, sources, counts)
