"""LC-Rec / LETTER json: `X.inter.json` = {user: [item, ...] in time order}, `X.item.json` = {item: {field: value}}.

Spec: files.inter, files.item (optional). There are no timestamps: list order is the order.
"""
import json
from pathlib import Path

import pandas as pd

from recgpt.config.data import DatasetSpec
from recgpt.data.common import RawData, frame, resolve_file, undecodable
from recgpt.data.errors import DataFormatError


def load_json_object(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise DataFormatError(path, f"not valid JSON (column {e.colno}): {e.msg}", e.lineno) from None
    except UnicodeDecodeError as e:
        raise undecodable(path, "utf-8", e) from None
    if not isinstance(data, dict):
        raise DataFormatError(path, f"expected a JSON object at the top level, found {type(data).__name__}", 1)
    return data


def read(spec: DatasetSpec, folder: Path) -> RawData:
    inter_path = resolve_file(folder, spec.files.get("inter"), "inter")
    sequences = load_json_object(inter_path)
    if not sequences:
        raise DataFormatError(inter_path, "no users in the file")
    users, items, empty_users = [], [], 0
    for user, seq in sequences.items():
        if not isinstance(seq, list):
            raise DataFormatError(inter_path, f"expected a list of item ids, found {type(seq).__name__}", user, "user")
        empty_users += not seq
        for item in seq:
            if not isinstance(item, (int, str)) or isinstance(item, bool):
                raise DataFormatError(inter_path, f"item id {item!r} is not an int or string", user, "user")
        users.extend([user] * len(seq))
        items.extend(seq)
    interactions = frame(users, items)

    sources, rows = [inter_path], []
    if spec.files.get("item"):
        item_path = resolve_file(folder, spec.files["item"], "item")
        for item, fields in load_json_object(item_path).items():
            if not isinstance(fields, dict):
                raise DataFormatError(item_path, f"expected an object of fields, found {type(fields).__name__}",
                                      item, "item")
            rows.append({**fields, "item_id": str(item)})
        sources.append(item_path)
    items_table = pd.DataFrame(rows) if rows else pd.DataFrame({"item_id": pd.Series([], dtype=object)})
    return RawData(interactions, items_table, sources, {"empty_users_skipped": empty_users})
