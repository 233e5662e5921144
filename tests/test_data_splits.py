"""Split helpers: leave-one-out, last-N, seeded user hold-out, seeded cold windows, windows."""
import pytest

from recgpt.data import splits


def test_leave_one_out_and_last_n():
    loo = splits.leave_one_out([1, 2, 3, 4])
    assert loo == ([1, 2], 3, [1, 2, 3], 4)
    with pytest.raises(ValueError, match="at least 3"):
        splits.leave_one_out([1, 2])
    ln = splits.last_n(list(range(15)))
    assert ln.history == list(range(5)) and ln.targets == list(range(5, 15))
    assert splits.last_n([1, 2, 3], n=2) == ([1], [2, 3])
    with pytest.raises(ValueError, match="more than 10"):
        splits.last_n(list(range(10)))


def test_user_holdout_is_seeded_and_order_independent():
    users = [f"u{i}" for i in range(20000)]
    mask = splits.user_holdout(users, 0.1, seed=3)
    assert 0.09 < mask.mean() < 0.11
    again = splits.user_holdout(users[::-1], 0.1, seed=3)[::-1]
    assert (mask == again).all()
    other = splits.user_holdout(users, 0.1, seed=4)
    assert (mask != other).any()
    assert not splits.user_holdout(users, 0.0, seed=3).any()


def test_cold_window_protocol():
    items = list(range(100, 130))
    lengths, starts = set(), set()
    for u in range(300):
        w = splits.cold_window(items, f"user{u}", seed=0)
        length = len(w.history) + 1
        assert 2 <= length <= 4
        assert items[w.start:w.start + length] == w.history + [w.target]
        assert w == splits.cold_window(items, f"user{u}", seed=0)  # deterministic
        lengths.add(length)
        starts.add(w.start)
    assert lengths == {2, 3, 4} and len(starts) > 10
    short = splits.cold_window([7, 8], "x", seed=1)
    assert short == ([7], 8, 0)
    with pytest.raises(ValueError):
        splits.cold_window([7], "x", seed=1)


def test_windows_cover_the_sequence():
    assert splits.windows(5, 2) == [(0, 1), (1, 3), (3, 5)]  # the newest items fill whole windows
    assert splits.windows(4, 4) == [(0, 4)]
    for n in range(1, 40):
        spans = splits.windows(n, 7)
        assert spans[0][0] == 0 and spans[-1][1] == n
        assert all(b - a == 7 for a, b in spans[1:])
        assert all(b - a <= 7 for a, b in spans) and all(spans[i][1] == spans[i + 1][0] for i in range(len(spans) - 1))


def test_user_sequences_order_users_by_first_row_and_items_by_position():
    import pandas as pd

    frame = pd.DataFrame({"user_id": ["b", "a", "b", "b", 7], "item_id": [1, "x", 3, 4, 5],
                          "position": [2, 0, 1, 1, 0]})
    seqs = splits.user_sequences(frame)
    assert seqs.index.tolist() == ["b", "a", "7"]  # first appearance; ids as text
    assert seqs.tolist() == [["3", "4", "1"], ["x"], ["5"]]  # equal positions keep their row order
    assert splits.user_sequences(frame.iloc[:0]).empty
    with pytest.raises(ValueError, match=r"lack column\(s\) \['position'\]"):
        splits.user_sequences(frame.drop(columns="position"))
