"""Baselines reported beside every model run: a model that does not beat them has learned nothing.

Both see only what the model sees (the histories), never a target.
"""
from collections import Counter
from typing import Optional, Sequence


def recency(histories: Sequence[Sequence[int]], k: int) -> list[list[int]]:
    """The user's most recent distinct items, most recent first."""
    out = []
    for history in histories:
        seen, recs = set(), []
        for item in reversed(list(history)):
            if item not in seen:
                seen.add(item)
                recs.append(int(item))
                if len(recs) == k:
                    break
        out.append(recs)
    return out


def item_popularity(histories: Sequence[Sequence[int]]) -> list[int]:
    """Items by interaction count over the histories, most popular first (ties: smaller row first)."""
    counts = Counter(int(i) for history in histories for i in history)
    return [item for item, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]


def popularity(histories: Sequence[Sequence[int]], k: int, allow_history: bool = True,
               ranking: Optional[list[int]] = None) -> list[list[int]]:
    """The k most popular items (over the histories), skipping the user's own items unless allowed."""
    ranking = item_popularity(histories) if ranking is None else ranking
    if allow_history:
        return [ranking[:k] for _ in histories]
    out = []
    for history in histories:
        own, recs = set(int(i) for i in history), []
        for item in ranking:
            if item not in own:
                recs.append(item)
                if len(recs) == k:
                    break
        out.append(recs)
    return out
