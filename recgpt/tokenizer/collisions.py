"""Collision resolution: items whose code tuples are equal get a distinguishing last code.

TIGER/GRID style: the k-th item (in row order) sharing a tuple gets code k in an extra slot of size
`dedup_size`, fixed when the tokenizer is fitted. More than `dedup_size` items on one tuple is an error that
names the tuple and its items (raise tokenizer.dedup_size, or use a finer tokenizer); no item is ever dropped
or silently merged.
"""
from collections import defaultdict
from typing import Optional, Sequence

import numpy as np


class CollisionError(ValueError):
    pass


def rank_within_tuple(codes: np.ndarray) -> np.ndarray:
    """For each row, how many earlier rows have the same tuple (vectorised: stable sort by tuple id)."""
    codes = np.asarray(codes)
    if len(codes) == 0:
        return np.zeros(0, np.int64)
    _, inverse = np.unique(codes, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    order = np.argsort(inverse, kind="stable")
    sorted_ids = inverse[order]
    positions = np.arange(len(codes))
    starts = np.maximum.accumulate(np.where(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]], positions, 0))
    rank = np.empty(len(codes), np.int64)
    rank[order] = positions - starts
    return rank


def rank_within_tuple_reference(codes: np.ndarray) -> np.ndarray:
    seen: dict[tuple, int] = defaultdict(int)
    out = []
    for row in np.asarray(codes).tolist():
        out.append(seen[tuple(row)])
        seen[tuple(row)] += 1
    return np.array(out, np.int64)


def resolve_collisions(codes: np.ndarray, dedup_size: int, item_ids: Optional[Sequence] = None) -> np.ndarray:
    """[N, n] codes -> [N, n + 1] unique rows; raises CollisionError beyond `dedup_size` items per tuple."""
    codes = np.asarray(codes, dtype=np.int64)
    rank = rank_within_tuple(codes)
    if len(rank) and rank.max() >= dedup_size:
        worst = int(rank.argmax())
        rows = np.flatnonzero((codes == codes[worst]).all(1))
        names = [item_ids[r] for r in rows[:5]] if item_ids is not None else rows[:5].tolist()
        raise CollisionError(
            f"{len(rows)} items share the code tuple {codes[worst].tolist()} but the disambiguation slot holds "
            f"only tokenizer.dedup_size={dedup_size} (items {names}{'...' if len(rows) > 5 else ''}); "
            f"refit with a larger tokenizer.dedup_size or more codes per item")
    return np.concatenate([codes, rank[:, None]], axis=1)


def capped_disambiguation(codes: np.ndarray, dedup_size: int) -> tuple[np.ndarray, int]:
    """Like resolve_collisions, but never raises: items beyond `dedup_size` on one tuple share the slot's last
    code. Returns the rows and how many items overflowed (for reports and catalogs that must keep every item)."""
    codes = np.asarray(codes, dtype=np.int64)
    rank = rank_within_tuple(codes)
    overflow = int((rank >= dedup_size).sum())
    return np.concatenate([codes, np.minimum(rank, dedup_size - 1)[:, None]], axis=1), overflow


def code_to_items(codes: np.ndarray) -> dict[tuple, list[int]]:
    """The one-to-many map tuple -> row indices (every row appears exactly once)."""
    groups: dict[tuple, list[int]] = defaultdict(list)
    for row, tup in enumerate(np.asarray(codes).tolist()):
        groups[tuple(tup)].append(row)
    return dict(groups)


def collision_stats(codes: np.ndarray) -> dict:
    """collision_rate = share of items whose tuple an earlier item already holds (those needing code > 0)."""
    codes = np.asarray(codes)
    n = len(codes)
    if n == 0:
        return {"n_items": 0, "n_unique": 0, "collision_rate": 0.0, "max_items_per_tuple": 0}
    _, counts = np.unique(codes, axis=0, return_counts=True)
    return {"n_items": n, "n_unique": int(len(counts)), "collision_rate": float(1 - len(counts) / n),
            "max_items_per_tuple": int(counts.max())}
