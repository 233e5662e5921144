"""The item co-occurrence of a catalog's interaction log, read at prediction as its popularity is (never a target).

Pairs of items at most `window` apart in a user's sequence, counted in both directions (an item never with itself),
normalized C[a, b] / sqrt(occ a occ b) with occ an item's pair count + 1; a history scores every item by the sum of
its rows for the history's last `last` items weighted decay^age (age 0: the most recent).
"""
from typing import Sequence

import numpy as np
import torch

WINDOW, LAST, DECAY = 3, 5, 0.7


def cooccurrence_matrix(rows: Sequence[Sequence[int]], n_items: int, window: int = WINDOW) -> tuple:
    """(scipy CSR [n_items, n_items]: C[a, b] / sqrt(occ a occ b); Float32[n_items] occ) of catalog-row sequences."""
    import scipy.sparse as sp

    r, c = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for seq in rows:
        seq = np.asarray(seq, dtype=np.int64)
        for gap in range(1, window + 1):
            a, b = seq[:-gap], seq[gap:]
            keep = a != b
            r += [a[keep], b[keep]]
            c += [b[keep], a[keep]]
    r, c = np.concatenate(r), np.concatenate(c)
    counts = sp.csr_matrix((np.ones(len(r), np.float32), (r, c)), shape=(n_items, n_items))
    counts.sum_duplicates()
    occ = np.asarray(counts.sum(1)).ravel().astype(np.float32) + 1.0
    scale = sp.diags(1.0 / np.sqrt(occ))
    return (scale @ counts @ scale).tocsr(), occ


def history_cooccurrence(histories: Sequence[Sequence[int]], matrix, occ: np.ndarray, last: int = LAST,
                         decay: float = DECAY) -> tuple:
    """(Float[B, N] each item's co-occurrence with the history's last items, Float[B, N] its z-score over the
    catalog, Float[B] the history's support: log1p of its last items' occ, decay^age weighted)."""
    import scipy.sparse as sp

    r, c, v, support = [], [], [], torch.zeros(len(histories))
    for b, history in enumerate(histories):
        for age, item in enumerate(list(history)[-last:][::-1]):
            r.append(b), c.append(int(item)), v.append(decay ** age)
            support[b] += decay ** age * float(occ[int(item)])
    weights = sp.csr_matrix((np.asarray(v, np.float32), (r, c)), shape=(len(histories), matrix.shape[0]))
    cf = torch.from_numpy(np.asarray((weights @ matrix).todense(), dtype=np.float32))
    zcf = (cf - cf.mean(1, keepdim=True)) / cf.std(1, keepdim=True).clamp_min(1e-6)
    return cf, zcf, torch.log1p(support)
