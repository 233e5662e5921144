"""Item text from a per-dataset template: the configured fields joined, lists joined, truncated."""
from typing import Any

import numpy as np
import pandas as pd

from recgpt.config.data import TextConfig


def field_text(value: Any) -> str:
    """One field as text: lists (and arrays) joined with ", ", missing values as ""."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple, np.ndarray)):
        return ", ".join(t for t in (field_text(v) for v in value) if t)
    if isinstance(value, dict):
        return ", ".join(f"{k}: {t}" for k, t in ((k, field_text(v)) for k, v in value.items()) if t)
    if isinstance(value, float) and np.isnan(value):
        return ""
    if value is pd.NA:
        return ""
    return " ".join(str(value).split())  # collapse whitespace and newlines


def item_text(record: dict, cfg: TextConfig) -> str:
    parts = [field_text(record.get(name)) for name in cfg.fields]
    return cfg.separator.join(p for p in parts if p)[: cfg.max_chars]


def build_texts(items: pd.DataFrame, cfg: TextConfig) -> pd.Series:
    """Text of every row of `items` (same index); "" where no configured field has a value."""
    columns = [f for f in cfg.fields if f in items.columns]
    records = items[columns].to_dict("records") if columns else [{}] * len(items)
    return pd.Series([item_text(r, cfg) for r in records], index=items.index, dtype=object)
