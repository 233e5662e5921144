"""Every real dataset imports with the counts of ../shared/data/README.md, in the documented order."""
import json

import numpy as np
import pandas as pd
import pytest

from recgpt.config import load_dataset_spec
from recgpt.data import load_prepared
from recgpt.data.prepare import read_raw

# users, items, interactions as listed in ../shared/data/README.md (duplicates kept, items without text kept)
README_COUNTS = {
    "ml-100k": (943, 1682, 100000),
    "amazon_games": (50546, 16859, 440264),
    "yelp": (19845, 14535, 202898),
    "lastfm": (976, 4606, 50800),
    "amazon_scientific": (8317, 4344, 58492),
    "steam": (25467, 3682, 59161),
}


@pytest.mark.parametrize("name", sorted(README_COUNTS))
def test_real_dataset_counts_match_readme(name, prepared_dir, data_root):
    data = load_prepared(prepared_dir(name))
    users, items, interactions = README_COUNTS[name]
    inter = data.interactions
    assert (inter["user_id"].nunique(), len(data.items), len(inter)) == (users, items, interactions)
    counts = data.manifest["counts"]
    assert (counts["users"], counts["items"], counts["interactions"]) == (users, items, interactions)
    assert counts["raw_rows"] == interactions  # nothing dropped by default
    # layout: string ids, int64 nullable timestamps, positions 0..n-1 per user, users contiguous
    assert inter["user_id"].map(type).eq(str).all() and inter["item_id"].map(type).eq(str).all()
    assert str(inter["timestamp"].dtype) in ("Int64", "int64") or inter["timestamp"].isna().all()
    expected = inter.groupby("user_id", sort=False).cumcount().to_numpy()
    assert np.array_equal(inter["position"].to_numpy(), expected)
    # each user's rows are one block, users in the order they first appear in the raw file
    changes = int((inter["user_id"].to_numpy()[1:] != inter["user_id"].to_numpy()[:-1]).sum())
    assert changes + 1 == users
    raw = read_raw(load_dataset_spec(name), data_root).interactions
    raw = raw[(raw["user_id"] != "") & (raw["item_id"] != "")]
    assert list(pd.unique(inter["user_id"])) == list(pd.unique(raw["user_id"]))
    # within a user: timestamps never decrease, undated rows after the dated ones
    ts = inter["timestamp"].astype("float64")
    same_user = (inter["user_id"].to_numpy()[1:] == inter["user_id"].to_numpy()[:-1])
    prev, cur = ts.to_numpy()[:-1], ts.to_numpy()[1:]
    assert not (same_user & (cur < prev)).any()
    undated_before_dated = same_user & np.isnan(prev) & ~np.isnan(cur)
    dated_before_undated = same_user & ~np.isnan(prev) & np.isnan(cur)
    last = load_dataset_spec(name).imports.null_timestamps == "last"
    assert not (undated_before_dated if last else dated_before_undated).any()
    assert set(inter["item_id"]) == set(data.items["item_id"])
    assert data.items["item_id"].is_unique
    assert [s["sha256"] for s in data.manifest["sources"]] and all(len(s["sha256"]) == 64
                                                                 for s in data.manifest["sources"])


def test_duplicates_and_missing_text_are_counted(prepared_dir):
    yelp = load_prepared(prepared_dir("yelp")).manifest["counts"]
    steam = load_prepared(prepared_dir("steam")).manifest["counts"]
    assert yelp["duplicate_rows"] == 6725 and yelp["duplicates_dropped"] == 0  # revisits are kept
    assert steam["duplicate_rows"] == 919
    # 9% of steam review rows have no metadata row (README); their items have no text
    assert steam["interactions_without_text"] == steam["interactions_missing_metadata"] == 5303
    assert steam["items_without_text"] == 487
    assert steam["items_without_text_share"] == pytest.approx(487 / 3682, abs=1e-6)
    assert steam["games_without_id"] == 2 and steam["item_rows_repeated"] == 1


def test_ml100k_order_is_numeric_timestamp_with_file_order_ties(prepared_dir, data_root):
    data = load_prepared(prepared_dir("ml-100k")).interactions
    raw = pd.read_csv(data_root / "ml-100k" / "ml-100k.inter", sep="\t", dtype=str)
    raw.columns = ["user_id", "item_id", "rating", "timestamp"]
    raw["line"] = np.arange(len(raw))
    raw["ts"] = raw["timestamp"].astype(float).astype(np.int64)
    # reference: per user, Python's stable sorted() on the integer timestamp over rows in file order
    rows = {}
    for user, item, ts in zip(raw["user_id"], raw["item_id"], raw["ts"]):
        rows.setdefault(user, []).append((ts, item))
    want = {u: [item for _, item in sorted(r, key=lambda x: x[0])] for u, r in rows.items()}
    got = data.groupby("user_id", sort=False)["item_id"].apply(list)
    assert got.to_dict() == want
    # ties exist and keep file order: among equal timestamps of a user, raw lines increase
    merged = data.merge(raw[["user_id", "item_id", "line"]], on=["user_id", "item_id"])
    same = merged.groupby(["user_id", "timestamp"])["line"].apply(lambda s: s.is_monotonic_increasing)
    assert same.all() and merged.duplicated(["user_id", "timestamp"]).mean() > 0.5
    # numeric, not string, order: timestamps never decrease within a user
    assert (data.groupby("user_id", sort=False)["timestamp"].diff().dropna() >= 0).all()


def test_file_order_datasets_keep_file_order(prepared_dir, data_root):
    data = load_prepared(prepared_dir("yelp")).interactions
    raw = pd.read_csv(data_root / "yelp" / "yelp.inter", sep="\t", dtype=str)
    raw.columns = ["user_id", "item_id"]
    want = raw.groupby("user_id", sort=False)["item_id"].apply(list).to_dict()
    assert data.groupby("user_id", sort=False)["item_id"].apply(list).to_dict() == want
    sci = load_prepared(prepared_dir("amazon_scientific")).interactions
    seqs = json.loads((data_root / "amazon_scientific" / "Scientific.inter.json").read_text())
    got = sci.groupby("user_id", sort=False)["item_id"].apply(list).to_dict()
    assert got == {u: [str(i) for i in items] for u, items in seqs.items()}


def test_steam_posted_days_and_undated_reviews_sort_last(prepared_dir, data_root):
    data = load_prepared(prepared_dir("steam")).interactions
    raw = pd.read_parquet(data_root / "steam" / "user_reviews.parquet")
    assert data["timestamp"].isna().sum() == raw["posted"].isna().sum() == 10091
    day = pd.Timestamp("2011-11-05", tz="UTC").value // 10 ** 9
    first = data[(data["user_id"] == "76561197970982479") & (data["item_id"] == "1250")]
    assert int(first["timestamp"].iloc[0]) == day
    by_user = data.groupby("user_id", sort=False)
    assert (by_user["timestamp"].diff().dropna() >= 0).all()  # dated rows in numeric order
    undated = data["timestamp"].isna()
    # undated rows come after every dated row of their user: once undated, undated to the user's end
    assert (undated.groupby(data["user_id"], sort=False).cummax() == undated).all()
    assert (undated & (data["position"] > 0)).any() and (undated & (data["position"] == 0)).any()
    # evcentric: first file row undated -> moves last; the two dated 2014-10-15 rows keep file order
    ev = data[data["user_id"] == "evcentric"]["item_id"].tolist()
    assert ev == ["263360", "107200", "224500", "237930", "370360", "248820"]


def test_text_template_fields_lists_and_truncation(prepared_dir):
    ml = load_prepared(prepared_dir("ml-100k")).items.set_index("item_id")
    assert ml.loc["1", "text"] == "Toy Story | 1995 | Animation Children's Comedy"
    steam = load_prepared(prepared_dir("steam")).items.set_index("item_id")
    zeno = steam.loc["22200", "text"]
    assert zeno.startswith("Zeno Clash | Action, Indie | Action, Indie, Surreal") and zeno.endswith("| ACE Team")
    sci = load_prepared(prepared_dir("amazon_scientific")).items
    assert sci["text"].str.len().max() == 512  # long descriptions are cut at text.max_chars
    assert (sci["text"] != "").all()


@pytest.mark.parametrize("nulls", ["last", "first"])
def test_order_is_numeric_stable_and_places_nulls(nulls):
    from recgpt.data.prepare import order_interactions

    # user a: 100 > 20 > 3 numerically but "100" < "20" < "3" as strings; two ties at 20; two nulls
    frame = pd.DataFrame({"user_id": ["a", "b", "a", "a", "a", "a", "b", "a"],
                          "item_id": ["n1", "b1", "t100", "t20x", "t3", "n2", "b0", "t20y"],
                          "timestamp": pd.array([None, 5, 100, 20, 3, None, 1, 20], dtype="Int64")})
    got = order_interactions(frame, nulls)
    dated = ["t3", "t20x", "t20y", "t100"]
    want_a = dated + ["n1", "n2"] if nulls == "last" else ["n1", "n2"] + dated
    assert got["user_id"].tolist() == ["a"] * 6 + ["b"] * 2  # users by first appearance
    assert got["item_id"].tolist() == want_a + ["b0", "b1"]
    assert got["position"].tolist() == [0, 1, 2, 3, 4, 5, 0, 1]
