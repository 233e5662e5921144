"""The item factor table of MFGAN: one discrete value per (factor, catalog row), built from the prepared items.

A factor reads one column of items.parquet (the dataset spec keeps it: `text.fields` or `item_fields`):
  category    the value at `pick` of the field split on `separator` (e.g. the first genre); the `max_values`
              most frequent values keep their own bin, the rest share "other"
  band        a number (Steam's "Free to Play" prices count as 0) in quantile bands over the catalog
  popularity  the item's count in the training split, in quantile bands (test targets never counted)
Every factor has an explicit "(unknown)" bin (value 0): no metadata row, an empty field, a value that is not a
number, or an item never seen in training. The item id itself is always the first factor ("item").
"""
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from recgpt.config import ConfigError
from recgpt.data.popularity import item_counts

UNKNOWN, OTHER = "(unknown)", "(other)"  # parenthesised: ml-100k has a genre called "unknown"


@dataclass
class FactorTable:
    names: list[str]
    values: torch.Tensor  # Long[K, N]: the bin of each catalog row under each factor
    bins: list[list[str]]  # bin labels per factor; bins[k][0] == "unknown" (except the item factor)

    def sizes(self) -> list[int]:
        return [len(b) for b in self.bins]

    def manifest(self) -> dict:
        """Bins and how many catalog items fall in each: the baseline.json record of the table."""
        out = {}
        for k, name in enumerate(self.names):
            counts = torch.bincount(self.values[k], minlength=len(self.bins[k])).tolist()
            if name == "item":
                out[name] = {"bins": len(self.bins[k])}
            else:
                out[name] = {"bins": dict(zip(self.bins[k], counts)), "unknown_items": counts[0]}
                assert len(out[name]["bins"]) == len(self.bins[k]), f"factor {name}: repeated bin labels"
        return out

    @classmethod
    def from_manifest(cls, names, values: torch.Tensor, meta: dict) -> "FactorTable":
        bins = [[str(i) for i in range(meta[n]["bins"])] if n == "item" else list(meta[n]["bins"]) for n in names]
        return cls(list(names), values, bins)


def _text(values) -> list[str]:
    return ["" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v).strip() for v in values]


def category_bins(texts, separator: str, pick: int, max_values: int):
    picked = []
    for t in texts:
        parts = [p.strip() for p in t.split(separator)] if t else []
        parts = [p for p in parts if p]
        picked.append(parts[pick] if -len(parts) <= pick < len(parts) else "")
    kept = [v for v, _ in Counter(v for v in picked if v).most_common(max_values)]
    labels = [UNKNOWN] + kept + ([OTHER] if len(set(picked) - set(kept) - {""}) else [])
    index = {v: i for i, v in enumerate(labels)}
    return [0 if not v else index.get(v, index.get(OTHER, 0)) for v in picked], labels


def number(text: str) -> float:
    if text.lower().startswith("free"):
        return 0.0
    try:
        value = float(text.replace("$", "").replace(",", ""))
    except ValueError:
        return float("nan")
    return value if np.isfinite(value) else float("nan")


def band_bins(numbers: np.ndarray, bands: int):
    """Quantile bands of the known numbers (equal edges merged); NaN -> unknown."""
    known = numbers[~np.isnan(numbers)]
    if not len(known):
        return [0] * len(numbers), [UNKNOWN]
    edges = np.unique(np.quantile(known, np.linspace(0, 1, bands + 1)[1:-1]))
    labels = [UNKNOWN] + [f"<{edges[0]:g}" if len(edges) else "all"]
    labels += [f"[{a:g},{b:g})" for a, b in zip(edges[:-1], edges[1:])] + ([f">={edges[-1]:g}"] if len(edges) else [])
    rows = np.searchsorted(edges, numbers, side="right") + 1
    return [0 if np.isnan(x) else int(r) for x, r in zip(numbers, rows)], labels


def build_factor_table(factors, items: pd.DataFrame, item_ids, train, where: str = "items.parquet") -> FactorTable:
    """FactorTable over the catalog rows (`item_ids`, the split's order) from the prepared `items` frame."""
    n = len(item_ids)
    frame = items.drop_duplicates("item_id").set_index("item_id") if items is not None else pd.DataFrame()
    names, columns, bins = ["item"], [list(range(n))], [[str(i) for i in range(n)]]
    for f in factors:
        if f.kind == "popularity":
            counts = item_counts(train, n)
            rows, labels = band_bins(np.where(counts > 0, np.log1p(counts), np.nan), f.bands)
            labels = [UNKNOWN] + [f"log-count {label}" for label in labels[1:]]
        else:
            if f.field not in frame.columns:
                raise ConfigError(f"baseline.factors: {where} has no column {f.field!r} (factor {f.name}); "
                                  f"columns {list(frame.columns)} (keep it with the dataset spec's item_fields)")
            texts = _text(frame[f.field].reindex(list(item_ids)).tolist())
            if f.kind == "category":
                rows, labels = category_bins(texts, f.separator, f.pick, f.max_values)
            else:
                rows, labels = band_bins(np.array([number(t) if t else np.nan for t in texts]), f.bands)
        names.append(f.name)
        columns.append(rows)
        bins.append(labels)
    return FactorTable(names, torch.as_tensor(columns, dtype=torch.long), bins)


def preset(dataset: str):
    """The factors of a shared dataset (by its prepared name); others need baseline.mfgan.factors."""
    from recgpt.config.baselines import FactorConfig as F

    presets = {
        "steam": [F("genre", "genres", separator=","), F("developer", "developer", separator=","),
                  F("price", "price", kind="band"), F("sentiment", "sentiment", max_values=20),
                  F("popularity", kind="popularity")],
        "amazon": [F("category", "categories", separator=",", pick=1), F("brand", "brand", max_values=200,
                                                                          separator="\x00"),
                   F("popularity", kind="popularity")],
        "movielens": [F("genre", "class", separator=" "), F("year", "release_year", kind="band"),
                      F("popularity", kind="popularity")],
    }
    family = "steam" if "steam" in dataset else "amazon" if "amazon" in dataset else \
        "movielens" if dataset.startswith(("ml-", "movielens")) else None
    if family is None:
        raise ConfigError(f"baseline.mfgan.factors: no preset for dataset {dataset!r}; list the factors "
                          "(name, field, kind) in the config")
    return presets[family]
