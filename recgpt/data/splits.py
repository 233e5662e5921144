"""Evaluation and hold-out splits over item sequences; every random choice is deterministic for a seed.

Randomness is keyed by (seed, user id) through a hash, not drawn from a shared generator, so a user's split
does not depend on which other users are present or in what order they are processed.
"""
import hashlib
from typing import NamedTuple, Sequence, TypeVar

import numpy as np
import pandas as pd

T = TypeVar("T")
DEFAULT_HORIZON = 10  # AIRI long-horizon protocol (arXiv 2409.17730): the next 10 items are the targets


class LeaveOneOut(NamedTuple):
    valid_history: list  # items[:-2]
    valid_target: object  # items[-2]
    test_history: list  # items[:-1]
    test_target: object  # items[-1]


class LastN(NamedTuple):
    history: list  # items[:-n]
    targets: list  # items[-n:], in order


class ColdWindow(NamedTuple):
    history: list  # the window without its last item (1 to 3 items)
    target: object  # the window's last item
    start: int  # window position in the original sequence: items[start : start + len(history) + 1]


def _key_int(seed: int, key: str) -> int:
    """A 64-bit integer determined by (seed, key) only, whatever the processing order."""
    return int.from_bytes(hashlib.blake2b(f"{seed}\x00{key}".encode(), digest_size=8).digest(), "little")


def unit_hash(seed: int, key: str) -> float:
    """A uniform number in [0, 1) determined by (seed, key) only."""
    return _key_int(seed, key) / 2.0 ** 64


def key_rng(seed: int, key: str) -> np.random.Generator:
    return np.random.default_rng(_key_int(seed, key))


def leave_one_out(items: Sequence[T]) -> LeaveOneOut:
    """Valid target = second-to-last item, test target = last item; needs at least 3 items."""
    if len(items) < 3:
        raise ValueError(f"leave-one-out needs at least 3 items, got {len(items)}")
    items = list(items)
    return LeaveOneOut(items[:-2], items[-2], items[:-1], items[-1])


def last_n(items: Sequence[T], n: int = DEFAULT_HORIZON) -> LastN:
    """Hold out the last `n` items as the target set of a long-horizon prediction; needs more than n items."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if len(items) <= n:
        raise ValueError(f"last-{n} hold-out needs more than {n} items, got {len(items)}")
    items = list(items)
    return LastN(items[:-n], items[-n:])


def is_heldout(user_id: str, fraction: float, seed: int) -> bool:
    """Seeded user-level hold-out: True for about `fraction` of users, always the same ones for a seed."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    return unit_hash(seed, user_id) < fraction


def user_roles(user_ids: Sequence[str], heldout: float, train_users: float, seed: int) -> tuple:
    """(held out, left out) masks over `user_ids`: held out as is_heldout decides; of the other users only those
    whose draw falls in the first `train_users` share of the rest are trained on (a smaller share is a subset of
    a larger one, the held-out users do not change), the others are left out."""
    draw = np.fromiter((unit_hash(seed, str(u)) for u in user_ids), dtype=float, count=len(user_ids))
    return draw < heldout, draw >= heldout + (1.0 - heldout) * train_users


def user_holdout(user_ids: Sequence[str], fraction: float, seed: int) -> np.ndarray:
    """Boolean mask over `user_ids`: True = held out (see is_heldout)."""
    return np.fromiter((is_heldout(str(u), fraction, seed) for u in user_ids), dtype=bool, count=len(user_ids))


def cold_window(items: Sequence[T], user_id: str, seed: int, min_len: int = 2, max_len: int = 4) -> ColdWindow:
    """RecGPT cold-start protocol: one random contiguous window of `min_len`..`max_len` items (capped by the
    sequence length), target = the window's last item. Deterministic for (seed, user_id)."""
    if not 2 <= min_len <= max_len:
        raise ValueError(f"need 2 <= min_len <= max_len, got {min_len}, {max_len}")
    if len(items) < min_len:
        raise ValueError(f"a cold window needs at least {min_len} items, got {len(items)}")
    rng = key_rng(seed, str(user_id))
    length = int(rng.integers(min_len, min(max_len, len(items)) + 1))
    start = int(rng.integers(0, len(items) - length + 1))
    window = list(items[start:start + length])
    return ColdWindow(window[:-1], window[-1], start)


def windows(n: int, max_items: int) -> list[tuple[int, int]]:
    """[start, end) of consecutive windows of at most `max_items` covering a sequence of length n.

    Anchored at the end: the most recent items always fill a whole window; only the first may be short.
    """
    if max_items < 1:
        raise ValueError(f"max_items must be >= 1, got {max_items}")
    ends = list(range(n, 0, -max_items))[::-1]
    return [(max(0, end - max_items), end) for end in ends]


TRAIN_SPLITS = ("all", "loo", "horizon")


def train_lengths(lengths: np.ndarray, split: str, horizon: int = DEFAULT_HORIZON) -> np.ndarray:
    """How many leading items of each sequence in-domain training may see, so that no evaluated target is seen:
    loo keeps items[:-2] of users with >= 3 items (valid and test targets out), horizon keeps items[:-horizon]
    of users with more than `horizon` items; shorter users (never evaluated) and split "all" keep everything."""
    lengths = np.asarray(lengths)
    if split == "all":
        return lengths
    if split == "loo":
        return np.where(lengths >= 3, lengths - 2, lengths)
    if split == "horizon":
        return np.where(lengths > horizon, lengths - horizon, lengths)
    raise ValueError(f"unknown training split {split!r}; one of {TRAIN_SPLITS}")


def user_sequences(interactions: pd.DataFrame) -> pd.Series:
    """user_id -> item ids in order (by position), users in order of first appearance."""
    missing = [c for c in ("user_id", "item_id", "position") if c not in interactions.columns]
    if missing:
        raise ValueError(f"interactions lack column(s) {missing}; got {list(interactions.columns)}")
    codes, users = pd.factorize(interactions["user_id"].astype(str).to_numpy(dtype=object))
    rows = np.lexsort((interactions["position"].to_numpy(), codes))  # stable: equal positions keep row order
    items = interactions["item_id"].astype(str).to_numpy(dtype=object)[rows]
    chunks = np.split(items, np.cumsum(np.bincount(codes, minlength=len(users)))[:-1]) if len(users) else []
    return pd.Series([chunk.tolist() for chunk in chunks], index=pd.Index(users, name="user_id"), name="item_id")
