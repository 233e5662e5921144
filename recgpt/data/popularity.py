"""Item popularity: the one place interactions are counted per item.

A catalog's popularity is the count of each of its items in its own interaction log (in evaluation: the part of
the log before the targets, never the targets). The training objective, the dense head's popularity term, the
`pop` score component and the popularity baselines all read these counts.
"""
from typing import Iterable, Optional, Sequence

import numpy as np


def item_counts(sequences, n_items: int) -> np.ndarray:
    """Int64[n_items]: occurrences of each item row in `sequences` (an iterable of row lists, a flat integer
    array, or a pyarrow list column); rows outside [0, n_items) are refused."""
    flat = _flatten(sequences)
    if flat.size and (flat.min() < 0 or flat.max() >= n_items):
        raise ValueError(f"item rows must be in [0, {n_items}), got [{int(flat.min())}, {int(flat.max())}]")
    return np.bincount(flat, minlength=n_items).astype(np.int64)


def _flatten(sequences) -> np.ndarray:
    try:
        import pyarrow as pa
        import pyarrow.compute as pc

        if isinstance(sequences, (pa.ListArray, pa.LargeListArray, pa.ChunkedArray)):
            return pc.list_flatten(sequences).to_numpy(zero_copy_only=False).astype(np.int64)
    except ImportError:  # pragma: no cover - pyarrow is a dependency
        pass
    if isinstance(sequences, np.ndarray) and sequences.dtype != object:
        return sequences.astype(np.int64).reshape(-1)
    parts = [np.asarray(list(s), dtype=np.int64) for s in sequences]
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def log_popularity(counts) -> "torch.Tensor":
    """Float[N]: log(1 + count), the popularity term's scale."""
    import torch

    return torch.log1p(torch.as_tensor(np.asarray(counts), dtype=torch.float32))


def ranking(counts) -> list[int]:
    """Item rows, most popular first (ties: smaller row first); items never seen are left out."""
    counts = np.asarray(counts)
    order = np.argsort(-counts, kind="stable")
    return order[counts[order] > 0].tolist()


def counts_of_ids(item_ids: Sequence[str], log_item_ids: Iterable[str]) -> np.ndarray:
    """Int64[len(item_ids)]: how often each catalog id occurs in an interaction log's item ids (ids of the log
    that are not in the catalog are ignored)."""
    import pandas as pd

    counts = pd.Series(list(log_item_ids), dtype=object).astype(str).value_counts()
    return counts.reindex([str(i) for i in item_ids]).fillna(0).to_numpy(dtype=np.int64)


def check_counts(counts, n_items: int, where: str = "popularity") -> Optional[np.ndarray]:
    """Validated Int64[n_items] counts (None stays None: a catalog without an interaction log)."""
    if counts is None:
        return None
    counts = np.asarray(counts)
    if counts.shape != (n_items,):
        raise ValueError(f"{where}: one count per catalog item expected ({n_items}), got shape {counts.shape}")
    if not np.all(np.isfinite(counts)) or (counts < 0).any():
        raise ValueError(f"{where}: counts must be finite and >= 0")
    return counts.astype(np.int64)
