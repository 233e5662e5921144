"""Item id -> row without a Python object per id: ids as numpy fixed-width bytes, sorted, binary-searched.
The corpus looks a dataset's interactions up in it; a catalog of millions maps user histories with it."""
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def fixed_width(strings: pa.Array) -> np.ndarray:
    """A string array as numpy fixed-width bytes ("S<w>", w = the longest value's UTF-8 length), built from
    Arrow's buffers without a Python object per value."""
    strings = pc.cast(strings, pa.large_binary())
    if len(strings) == 0:
        return np.zeros(0, "S1")
    if strings.null_count:
        raise ValueError("item ids must not be null")
    offsets = np.frombuffer(strings.buffers()[1], np.int64)[strings.offset:strings.offset + len(strings) + 1]
    data = np.frombuffer(strings.buffers()[2], np.uint8) if strings.buffers()[2] is not None else np.zeros(0, np.uint8)
    lengths = np.diff(offsets)
    width = max(1, int(lengths.max()))
    out = np.zeros((len(strings), width), np.uint8)
    row = np.repeat(np.arange(len(strings)), lengths)
    col = np.arange(offsets[-1] - offsets[0]) - np.repeat(offsets[:-1] - offsets[0], lengths)
    out[row, col] = data[offsets[0]:offsets[-1]]
    if ((lengths > 0) & (out[np.arange(len(strings)), np.maximum(lengths - 1, 0)] == 0)).any():
        raise ValueError("item ids must not end with a NUL byte")
    return out.view(f"S{width}").reshape(-1)


class ItemLookup:
    """Item id -> row of one dataset's items table: binary search over the ids sorted as fixed-width bytes.
    ~(longest id + 8) bytes per item; a pandas Index of Python strings takes ~100 (it grew with the catalog)."""

    def __init__(self, parts: list):
        width = max([p.dtype.itemsize for p in parts] + [1])
        ids = np.concatenate([p.astype(f"S{width}") for p in parts]) if parts else np.zeros(0, "S1")
        self.order = np.argsort(ids, kind="stable")
        self.sorted = ids[self.order]
        dup = np.flatnonzero(self.sorted[1:] == self.sorted[:-1])
        self.duplicate = self.sorted[dup[0]].decode("utf-8", "replace") if len(dup) else None

    def __len__(self) -> int:
        return len(self.sorted)

    def get_indexer(self, strings: pa.Array) -> np.ndarray:
        """Row of each id, -1 for an id not in the table."""
        keys = fixed_width(strings)
        if len(self.sorted) == 0:
            return np.full(len(keys), -1, np.int64)
        width = self.sorted.dtype.itemsize
        # an id longer than every known id is missing (cut to the width, it could equal a shorter one)
        too_long = np.char.str_len(keys) > width if keys.dtype.itemsize > width else np.zeros(len(keys), bool)
        keys = keys.astype(self.sorted.dtype)
        pos = np.minimum(np.searchsorted(self.sorted, keys), len(self.sorted) - 1)
        found = (self.sorted[pos] == keys) & ~too_long
        return np.where(found, self.order[pos], -1)

    @classmethod
    def of(cls, item_ids: Sequence[str], chunk: int = 1 << 18) -> "ItemLookup":
        """The lookup of a list of ids (row = position in the list), converted `chunk` ids at a time."""
        return cls([fixed_width(pa.array([str(i) for i in item_ids[lo:lo + chunk]], pa.string()))
                    for lo in range(0, len(item_ids), chunk)])

    def rows(self, item_ids: Sequence[str]) -> tuple[list[int], int]:
        """Rows of the known ids (order kept) and how many ids are not in the table."""
        if len(item_ids) == 0:
            return [], 0
        found = self.get_indexer(pa.array([str(i) for i in item_ids], pa.string()))
        rows = found[found >= 0].tolist()
        return rows, len(item_ids) - len(rows)
