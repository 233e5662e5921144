"""History items placed as often as the catalog's log repeats them (recgpt.predict.repeats, allow_history=auto): the
mechanism on planted lists, then the shares read from real logs (steam repeats a game, ml-100k never a movie)."""
import math

import numpy as np
import pytest

from recgpt.predict.repeats import merge, shares, target_ranks


def test_target_ranks_count_distinct_earlier_items_most_recent_first():
    rows = [[1, 2, 3, 2], [1, 2, 3, 1], [5, 5, 6, 5], [1, 2, 3, 4], [7, 7]]
    assert target_ranks(rows) == [[1], [2], [1], [-1], [0]]
    # a horizon of two: each distinct item of the last two, ranked among the items before them
    rows = [[1, 2, 3, 2, 1], [1, 2, 2, 2], [1, 2, 8, 9], [4, 1, 2, 4]]
    assert target_ranks(rows, 2) == [[1, 2], [0], [-1, -1], [-1, 1]]


def test_shares_are_a_non_increasing_fit_of_the_counts():
    got = shares([0, 0, 2, 2, 2, -1, 7], n=10, k=4)
    assert np.all(np.diff(got) <= 1e-12) and got.sum() == pytest.approx(0.5)  # rank 7 is beyond k
    assert got[0] == pytest.approx(0.2) and got[1] == got[2] == pytest.approx(0.15)  # ranks 1 and 2 pooled
    assert not shares([-1, -1], n=2, k=3).any()


def test_merge_places_history_items_where_their_share_beats_the_next_new_item():
    recs, scores = [[10, 11, 12, 13]], [[4.0, 3.0, 2.0, 1.0]]
    history = [[1, 2, 1, 3]]  # distinct, most recent first: 3, 1, 2
    q = np.array([0.3, 0.1, 0.05, 0.0])
    p = np.array([0.2, 0.1, 0.0, 0.0])
    out, values = merge(recs, scores, history, p, q, k=5)
    # 0.3 (new) > 0.2 (own) > 0.1 = 0.1 (tie: the new item) > 0.1 (own) > 0.05 (new)
    assert out == [[10, 3, 11, 1, 12]]
    assert values[0][0] == 4.0 and math.isnan(values[0][1]) and values[0][2] == 3.0
    # a log that never repeats: the history-excluded list unchanged
    assert merge(recs, scores, history, np.zeros(4), q, k=4) == (recs, scores)
    # a new-item list shorter than k (a small catalog) is filled with own items only while their share is > 0
    assert merge([[10]], [[1.0]], history, p, q, k=4)[0] == [[10, 3, 1]]


@pytest.mark.parametrize("name, repeats", [("steam", True), ("ml-100k", False)])
@pytest.mark.parametrize("horizon", [1, 3])
def test_shares_from_real_logs(prepared_dir, name, repeats, horizon):
    """steam's users review a game again, ml-100k's never rate a movie twice: the repeat shares say so, counted
    as a plain scan of the same sequences says, for the next item and for a set of the next three."""
    from recgpt.data import load_prepared
    from recgpt.predict.protocols import sequences_before_targets
    from recgpt.predict.self_weights import log_rows
    from recgpt.predict.transfer import ItemRows

    prepared = load_prepared(prepared_dir(name))
    rows = log_rows(sequences_before_targets(prepared.interactions, "loo", 1, 0),
                    ItemRows(prepared.items["item_id"].astype(str).tolist()), min_items=horizon + 1)
    assert rows and all(len(r) > horizon for r in rows)
    ranks = [r for per_row in target_ranks(rows, horizon) for r in per_row]
    again = sum(len({t for t in r[-horizon:] if t in r[:-horizon]}) for r in rows)
    assert sum(r >= 0 for r in ranks) == again and (again > 0) == repeats
    p = shares(ranks, len(rows), 20)  # the fit keeps the total share of the first 20 ranks
    assert np.all(np.diff(p) <= 1e-12) and p.sum() == pytest.approx(sum(0 <= r < 20 for r in ranks) / len(rows))
    assert (p[0] > 0) == repeats
