"""Rule baselines of multi-behaviour recommendation (GAMER, "SeqRec"), as plain functions over item rows.

- `repeat_recent`: the user's most recent distinct items of some behaviours (default: carted or favourited),
  most recent first; GAMER's rule with all behaviours is `behaviors=None`.
- `popular_purchases`: the items bought most often over all users' histories, most bought first.
- `repeat_then_popular`: the first list, filled up to k with the second (no item twice).

Each sees only histories, never a target. Histories are lists of item rows (ints) in time order with an
aligned list of behaviour names per user.
"""
from typing import Optional, Sequence

from recgpt.predict.baselines import item_popularity, popularity, recency

REPEAT_BEHAVIORS = ("cart", "fav")


def repeat_recent(items: Sequence[Sequence[int]], behaviors: Sequence[Sequence[str]], k: int,
                  source: Optional[Sequence[str]] = REPEAT_BEHAVIORS) -> list[list[int]]:
    """Most recent distinct items whose event behaviour is in `source` (all events when None)."""
    wanted = None if source is None else set(source)
    chosen = [[i for i, b in zip(user_items, user_behaviors) if wanted is None or b in wanted]
              for user_items, user_behaviors in zip(items, behaviors)]
    return recency(chosen, k)


def purchase_ranking(items: Sequence[Sequence[int]], behaviors: Sequence[Sequence[str]],
                     behavior: str = "buy") -> list[int]:
    """Items by number of `behavior` events over the histories (ties: smaller row first)."""
    bought = [[i for i, b in zip(user_items, user_behaviors) if b == behavior]
              for user_items, user_behaviors in zip(items, behaviors)]
    return item_popularity(bought)


def popular_purchases(items: Sequence[Sequence[int]], behaviors: Sequence[Sequence[str]], k: int,
                      behavior: str = "buy", allow_history: bool = True,
                      ranking: Optional[list[int]] = None) -> list[list[int]]:
    """The k most bought items for every user (skipping the user's own items unless allowed)."""
    ranking = purchase_ranking(items, behaviors, behavior) if ranking is None else ranking
    return popularity(items, k, allow_history=allow_history, ranking=ranking)


def repeat_then_popular(items: Sequence[Sequence[int]], behaviors: Sequence[Sequence[str]], k: int,
                        source: Optional[Sequence[str]] = REPEAT_BEHAVIORS, behavior: str = "buy",
                        ranking: Optional[list[int]] = None) -> list[list[int]]:
    ranking = purchase_ranking(items, behaviors, behavior) if ranking is None else ranking
    out = []
    for recs in repeat_recent(items, behaviors, k, source):
        seen = set(recs)
        for item in ranking:
            if len(recs) == k:
                break
            if item not in seen:
                recs.append(item)
                seen.add(item)
        out.append(recs)
    return out
