"""Test cases from real prepared datasets (steam: the downstream set; ml-100k) for every protocol."""
import numpy as np
import pytest

from recgpt.data import load_prepared
from recgpt.predict.catalog import Catalog
from recgpt.predict.protocols import build_test_cases, user_sequences

SIZES = [8, 8, 8]


def seeded_catalog(item_ids, seed=0):
    """Protocols only map ids to rows: codes are seeded random (collisions allowed)."""
    rng = np.random.default_rng(seed)
    return Catalog.from_codes(item_ids, rng.integers(0, 8, size=(len(item_ids), 3)), SIZES)


@pytest.fixture(scope="module")
def steam(prepared_dir):
    prepared = load_prepared(prepared_dir("steam"))
    return prepared, seeded_catalog(prepared.items["item_id"].astype(str).tolist())


def test_leave_one_out_on_steam(steam):
    prepared, catalog = steam
    seqs = user_sequences(prepared.interactions)
    cases = build_test_cases(prepared.interactions, catalog, "loo")
    lengths = seqs.map(len)
    assert cases.counts["too_short"] == int((lengths < 2).sum()) > 0  # steam: most users have one review
    assert len(cases) + cases.counts["too_short"] + cases.counts["target_not_in_catalog"] == len(seqs)
    # steam users review a game again: those targets are out of reach of a list that skips history items
    repeats = sum(seqs[u][-1] in seqs[u][:-1] for u in cases.user_ids)
    assert cases.counts["targets_in_history"] == repeats > 0
    for user, history, targets in list(zip(cases.user_ids, cases.histories, cases.targets))[:300]:
        items = seqs[user]
        assert [catalog.item_ids[r] for r in history] == items[:-1]
        assert [catalog.item_ids[r] for r in targets] == items[-1:]


def test_cold_windows_are_seeded_contiguous_and_short(steam):
    prepared, catalog = steam
    seqs = user_sequences(prepared.interactions)
    a = build_test_cases(prepared.interactions, catalog, "cold", seed=3, max_users=4000)
    b = build_test_cases(prepared.interactions, catalog, "cold", seed=3, max_users=4000)
    c = build_test_cases(prepared.interactions, catalog, "cold", seed=4, max_users=4000)
    assert (a.user_ids, a.histories, a.targets) == (b.user_ids, b.histories, b.targets)
    assert len(a) > 500
    other = dict(zip(c.user_ids, c.histories))
    common = [(h, other[u]) for u, h in zip(a.user_ids, a.histories) if u in other]
    assert len(common) > 50 and any(x != y for x, y in common)  # another seed, other windows
    long_windows = 0
    for user, history, targets in zip(a.user_ids, a.histories, a.targets):
        window = [catalog.item_ids[r] for r in history + targets]
        items = seqs[user]
        assert 2 <= len(window) <= min(4, len(items))
        assert any(items[s:s + len(window)] == window for s in range(len(items) - len(window) + 1))
        long_windows += len(window) == 4
    assert long_windows > 0


def test_horizon_holds_out_the_last_n(prepared_dir):
    prepared = load_prepared(prepared_dir("ml-100k"))
    catalog = seeded_catalog(prepared.items["item_id"].astype(str).tolist())
    seqs = user_sequences(prepared.interactions)
    cases = build_test_cases(prepared.interactions, catalog, "horizon", horizon=10, max_users=50, seed=0)
    assert len(cases) == 50 and cases.counts["users_considered"] == 50
    for user, history, targets in zip(cases.user_ids, cases.histories, cases.targets):
        items = seqs[user]
        assert [catalog.item_ids[r] for r in targets] == items[-10:]
        assert [catalog.item_ids[r] for r in history] == items[:-10]
    again = build_test_cases(prepared.interactions, catalog, "horizon", horizon=10, max_users=50, seed=0)
    assert again.user_ids == cases.user_ids  # the seeded subset is stable
    with pytest.raises(ValueError, match="horizon must be >= 1"):
        build_test_cases(prepared.interactions, catalog, "horizon", horizon=0)


def test_items_missing_from_the_catalog_are_counted(prepared_dir):
    prepared = load_prepared(prepared_dir("ml-100k"))
    ids = prepared.items["item_id"].astype(str).tolist()
    catalog = seeded_catalog(ids[::2])  # half the items are unknown
    cases = build_test_cases(prepared.interactions, catalog, "loo")
    counts = cases.counts
    assert counts["target_not_in_catalog"] > 0 and counts["history_items_not_in_catalog"] > 0
    assert counts["evaluated"] + counts["target_not_in_catalog"] + counts["empty_history"] + counts["too_short"] \
        == counts["users"]
    assert all(r < catalog.n_items for h in cases.histories for r in h)
    with pytest.raises(ValueError, match="unknown protocol"):
        build_test_cases(prepared.interactions, catalog, "random")
