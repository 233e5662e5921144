"""Turn variable-length user sequences into token-budgeted micro-batches, without padding to a fixed maximum.

An epoch's plan is computed from sequence lengths only (cheap, deterministic from seed + epoch), so every
rank knows the whole plan: rank r takes micro-batches r, r + world, ... and the data position is just
(epoch, local micro-batch index). Two modes:
- pack: sequences (cut into windows of at most `row_items` items) are laid into rows of `row_items` items,
  several users per row told apart by segment ids (first-fit over a few open rows, in shuffled order).
- bucket: one user per row; sequences sorted by length inside shuffled chunks and grouped so that
  rows x longest x codes-per-item stays within the budget (length-bucketed dynamic padding).
A micro-batch is as wide as its longest row, never wider.
"""
from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class EpochPlan:
    """Pieces (sequence window) laid into rows, rows grouped into micro-batches (CSR-style offsets)."""
    piece_seq: np.ndarray  # sequence index of each piece, in row order
    piece_start: np.ndarray  # first item of the piece inside its sequence
    piece_len: np.ndarray  # items in the piece
    row_ptr: np.ndarray  # pieces of row i: row_ptr[i]:row_ptr[i+1]
    batch_ptr: np.ndarray  # rows of batch b: batch_ptr[b]:batch_ptr[b+1]

    @property
    def n_batches(self) -> int:
        return len(self.batch_ptr) - 1

    def batch_pieces(self, b: int) -> list[list[tuple[int, int, int]]]:
        rows = []
        for r in range(self.batch_ptr[b], self.batch_ptr[b + 1]):
            lo, hi = self.row_ptr[r], self.row_ptr[r + 1]
            rows.append([(int(s), int(a), int(n)) for s, a, n in
                         zip(self.piece_seq[lo:hi], self.piece_start[lo:hi], self.piece_len[lo:hi])])
        return rows

    def batch_targets(self, n_slots: int) -> np.ndarray:
        """Real target tokens per micro-batch: each piece of n items gives n - 1 next-item targets."""
        per_piece = (self.piece_len.astype(np.int64) - 1) * n_slots
        per_row = np.add.reduceat(per_piece, self.row_ptr[:-1]) if len(per_piece) else np.zeros(0, np.int64)
        if len(per_row) == 0:
            return np.zeros(self.n_batches, np.int64)
        return np.add.reduceat(per_row, self.batch_ptr[:-1])


def _windows(lengths: np.ndarray, order: np.ndarray, max_len: int):
    """Cut sequences longer than max_len into consecutive windows; keeps `order`."""
    lens = lengths[order]
    n_win = np.maximum(1, -(-lens // max_len))
    seq = np.repeat(order, n_win)
    first = np.repeat(np.cumsum(n_win) - n_win, n_win)
    k = np.arange(len(seq)) - first
    start = k * max_len
    plen = np.minimum(max_len, np.repeat(lens, n_win) - start)
    keep = plen >= 2  # a window of one item has no next-item target
    return seq[keep], start[keep], plen[keep]


def plan_epoch(lengths, mode: str, row_items: int, tokens_per_batch: int, n_slots: int,
               seed: int, epoch: int, shuffle: bool = True) -> EpochPlan:
    lengths = np.asarray(lengths, dtype=np.int64)
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths)) if shuffle else np.arange(len(lengths))
    if mode == "pack":
        return _plan_pack(lengths, order, row_items, tokens_per_batch, n_slots)
    if mode == "bucket":
        return _plan_bucket(lengths, order, row_items, tokens_per_batch, n_slots, rng if shuffle else None)
    raise ValueError(f"unknown batching mode {mode!r}")


def _plan_pack(lengths, order, row_items, tokens_per_batch, n_slots, open_rows: int = 8) -> EpochPlan:
    """First-fit over the last `open_rows` rows still open: near order-preserving, O(pieces x open_rows)."""
    rows_per_batch = max(1, tokens_per_batch // (row_items * n_slots))
    seq, start, plen = _windows(lengths, order, row_items)
    row_of = np.empty(len(plen), np.int64)
    open_ids, open_fill, n_rows = [], [], 0
    for i, n in enumerate(plen.tolist()):
        for k, fill in enumerate(open_fill):
            if fill + n <= row_items:
                row_of[i] = open_ids[k]
                open_fill[k] = fill + n
                break
        else:
            row_of[i] = n_rows
            open_ids.append(n_rows)
            open_fill.append(n)
            n_rows += 1
            if len(open_ids) > open_rows:  # the oldest row is closed for good
                open_ids.pop(0)
                open_fill.pop(0)
    by_row = np.argsort(row_of, kind="stable")
    seq, start, plen, row_of = seq[by_row], start[by_row], plen[by_row], row_of[by_row]
    row_ptr = np.searchsorted(row_of, np.arange(n_rows + 1))
    batch_ptr = np.unique(np.append(np.arange(0, n_rows, rows_per_batch), n_rows))
    return EpochPlan(seq, start, plen, row_ptr, batch_ptr)


def _plan_bucket(lengths, order, row_items, tokens_per_batch, n_slots, rng, chunk_batches: int = 64) -> EpochPlan:
    seq, start, plen = _windows(lengths, order, row_items)
    chunk = max(1, chunk_batches * tokens_per_batch // max(1, int(plen.mean() if len(plen) else 1) * n_slots))
    idx = np.concatenate([c[np.argsort(-plen[c], kind="stable")] for c in
                          np.array_split(np.arange(len(plen)), max(1, -(-len(plen) // chunk)))]) if len(plen) else plen
    seq, start, plen = seq[idx], start[idx], plen[idx]
    bounds, rows, longest = [0], 0, 0
    for i, n in enumerate(plen.tolist()):
        if rows and (rows + 1) * max(longest, n) * n_slots > tokens_per_batch:
            bounds.append(i)
            rows, longest = 0, 0
        rows, longest = rows + 1, max(longest, n)
    if len(plen):
        bounds.append(len(plen))
    batch_ptr = np.asarray(bounds, np.int64)
    if rng is not None and len(batch_ptr) > 2:  # shuffle whole batches so lengths do not trend within a chunk
        sizes = np.diff(batch_ptr)
        perm = rng.permutation(len(sizes))
        rows_idx = np.concatenate([np.arange(batch_ptr[b], batch_ptr[b + 1]) for b in perm])
        seq, start, plen = seq[rows_idx], start[rows_idx], plen[rows_idx]
        batch_ptr = np.concatenate([[0], np.cumsum(sizes[perm])])
    return EpochPlan(seq, start, plen, np.arange(len(plen) + 1), batch_ptr)


def collate(rows: list[list[tuple[int, int, int]]], sequences: dict, codes: torch.Tensor,
            text_emb: torch.Tensor = None, behaviors: dict = None, item_group: torch.Tensor = None,
            item_popularity: torch.Tensor = None) -> dict:
    """Rows of (seq, start, len) pieces -> model inputs. `sequences` maps sequence index -> item indices;
    `behaviors` (multi-behaviour corpora) maps it to the aligned behaviour ids (recgpt.model.behavior);
    `item_group` (Long[N_items], the item's source dataset) gives each position its dataset (-1: padding),
    `item_popularity` (Float[N_items]) its item's log popularity (0: padding)."""
    width = max(sum(n for _, _, n in row) for row in rows)
    n_rows = len(rows)
    items = torch.full((n_rows, width), -1, dtype=torch.long)
    item_pos = torch.zeros((n_rows, width), dtype=torch.long)
    segment = torch.zeros((n_rows, width), dtype=torch.long)
    behavior = torch.zeros((n_rows, width), dtype=torch.long) if behaviors is not None else None
    for r, row in enumerate(rows):
        at = 0
        for k, (s, a, n) in enumerate(row):
            items[r, at:at + n] = torch.as_tensor(np.asarray(sequences[s][a:a + n], dtype=np.int64))
            item_pos[r, at:at + n] = torch.arange(n)
            segment[r, at:at + n] = k + 1
            if behavior is not None:
                behavior[r, at:at + n] = torch.as_tensor(np.asarray(behaviors[s][a:a + n], dtype=np.int64))
            at += n
    real = segment > 0
    batch_codes = torch.zeros((n_rows, width, codes.shape[1]), dtype=torch.long)
    batch_codes[real] = codes[items[real]].long()
    batch = {"codes": batch_codes, "item_pos": item_pos, "segment": segment}
    if text_emb is not None:
        emb = torch.zeros((n_rows, width, text_emb.shape[1]), dtype=torch.float32)
        emb[real] = text_emb[items[real]].float()
        batch["text_emb"] = emb
    if behavior is not None:
        batch["behavior"] = behavior
    if item_group is not None:
        batch["item_group"] = torch.where(real, item_group[items.clamp(min=0)], -1)
    if item_popularity is not None:
        batch["item_popularity"] = torch.where(real, item_popularity[items.clamp(min=0)].float(), 0.0)
    return batch


def padded_reference(seqs: list, codes: torch.Tensor) -> dict:
    """Simple reference: one user per row, right-padded to the longest; what the fast paths must match."""
    rows = [[(i, 0, len(s))] for i, s in enumerate(seqs)]
    return collate(rows, dict(enumerate(seqs)), codes)
