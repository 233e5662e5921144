"""Multi-behaviour importers (Taobao UserBehavior, RetailRocket events), the behaviour column, the shipped
target set and sessions, on the real files in ../shared/data."""
import numpy as np
import pandas as pd
import pytest

from recgpt.config.data import DatasetSpec, TextConfig
from recgpt.data import DataFormatError, load_prepared, prepare_dataset
from recgpt.data.sessions import last_session_split, session_ids, session_ids_reference, session_table


@pytest.fixture(scope="module")
def taobao(prepared_dir):
    return load_prepared(prepared_dir("taobao_userbehavior"))


@pytest.fixture(scope="module")
def retail(prepared_dir):
    return load_prepared(prepared_dir("retailrocket_mb"))


def test_taobao_counts_match_the_readme(taobao):
    counts = taobao.manifest["counts"]
    assert counts["behaviors"] == {"view": 75_872, "fav": 2_356, "cart": 4_497, "buy": 1_750}
    assert counts["truncated_last_line"] == 1 and counts["raw_rows"] == 84_475 == counts["interactions"]
    assert counts["rows_before_window"] == 35 and counts["rows_after_window"] == 0
    assert counts["users"] == 815 and counts["items"] == 55_368
    assert counts["items_with_several_categories"] == 1
    assert set(taobao.interactions["behavior"]) == {"view", "fav", "cart", "buy"} and taobao.targets is None
    # items have no text but their category: the category is the text, for every item
    assert (taobao.items["text"] == taobao.items["category"]).all() and (taobao.items["text"] != "").all()


def test_taobao_order_is_file_order_within_timestamp_ties(taobao, data_root):
    """Each user's rows are in time order in the file, with 251 rows tied on (user, second): the prepared
    order must be exactly the file order, ties included."""
    raw = pd.read_csv(data_root / "taobao_userbehavior" / "UserBehavior.csv", header=None, dtype=str,
                      names=["user_id", "item_id", "category", "behavior", "timestamp"]).dropna()
    tied = raw.duplicated(["user_id", "timestamp"]).sum()
    assert tied == 251
    raw["behavior"] = raw["behavior"].replace({"pv": "view"})
    mine = taobao.interactions
    order = mine.groupby("user_id", sort=False).cumcount().to_numpy()
    assert (order == mine["position"].to_numpy()).all()
    # file rows are grouped by user: same rows in the same order, user by user
    want = raw.sort_values("user_id", kind="stable")[["user_id", "item_id", "behavior"]].reset_index(drop=True)
    got = mine.sort_values("user_id", kind="stable")[["user_id", "item_id", "behavior"]].reset_index(drop=True)
    pd.testing.assert_frame_equal(want, got)


def test_retailrocket_counts_targets_and_tie_order(retail):
    counts = retail.manifest["counts"]
    assert counts["behaviors"] == {"view": 75_374, "cart": 12_456, "buy": 9_551}
    assert counts["users"] == 2_174 and counts["interactions"] == 97_381
    assert counts["targets"] == 2_174 and counts["targets_without_user"] == 0 and counts["targets_in_history"] == 0
    assert counts["items_only_in_targets"] == 208 and len(retail.items) == 30_113 == counts["items"]
    assert counts["items_without_text"] == 29_905 and (retail.items["text"] == "").all()
    assert set(retail.targets["behavior"]) == {"buy"} and retail.targets["user_id"].is_unique
    inter = retail.interactions
    assert inter["timestamp"].max() == 1_442_544_701  # ms stored as seconds
    # inside a (user, timestamp) tie the behaviour never goes back (view < cart < buy)
    rank = inter["behavior"].map({"view": 0, "cart": 1, "buy": 2}).to_numpy()
    same = ((inter["user_id"].to_numpy()[1:] == inter["user_id"].to_numpy()[:-1])
            & (inter["timestamp"].to_numpy()[1:] == inter["timestamp"].to_numpy()[:-1]))
    assert same.sum() > 1000 and (rank[1:][same] >= rank[:-1][same]).all()


def test_truncated_last_line_is_a_counted_skip_and_bad_rows_name_their_line(tmp_path):
    spec = DatasetSpec(name="t", format="taobao", path="t", files={"inter": "u.csv"}, text=TextConfig(fields=["category"]))
    folder = tmp_path / "t"
    folder.mkdir()
    good = "1,10,7,pv,1511544070\n1,11,7,cart,1511544070\n2,10,7,buy,1511544999\n"
    (folder / "u.csv").write_text(good + "2,12,8,pv,15115")  # cut inside the timestamp: 5 fields
    counts = load_prepared(prepare_dataset(spec, tmp_path, tmp_path / "out")).manifest["counts"]
    assert counts["truncated_last_line"] == 1 and counts["interactions"] == 3
    (folder / "u.csv").write_text(good + "2,12,8,pv,1511545000")  # complete, just no final newline
    assert load_prepared(prepare_dataset(spec, tmp_path, tmp_path / "o2")).manifest["counts"]["interactions"] == 4
    (folder / "u.csv").write_text("1,10,7,pv\n" + good)
    with pytest.raises(DataFormatError, match=r"u\.csv, line 1: expected 5"):
        prepare_dataset(spec, tmp_path, tmp_path / "o3")
    (folder / "u.csv").write_text(good + "3,10,7,,1511544070\n")
    with pytest.raises(DataFormatError, match=r"line 4: empty behaviour"):
        prepare_dataset(spec, tmp_path, tmp_path / "o4")


def test_generic_table_names_a_behaviour_column(tmp_path):
    raw = tmp_path / "raw"  # the inputs; the output is beside them, never inside
    raw.mkdir()
    (raw / "log.csv").write_text("u,i,t,kind\na,1,5,click\na,2,5,Purchase\nb,1,3,like\na,1,9,pv\n")
    spec = DatasetSpec(name="log", format="table", path=".", files={"inter": "log.csv"},
                       columns={"user": "u", "item": "i", "timestamp": "t", "behavior": "kind"})
    prepared = load_prepared(prepare_dataset(spec, raw, tmp_path / "out"))
    assert prepared.interactions["behavior"].tolist() == ["view", "buy", "view", "like"]
    assert prepared.manifest["counts"]["behaviors"] == {"view": 2, "buy": 1, "like": 1}
    # (user, item, behaviour) repeats only: a view and a later view of item 1 by `a` is one duplicate
    assert prepared.manifest["counts"]["duplicate_rows"] == 1


def test_sessions_split_at_the_gap():
    users = ["a"] * 5 + ["b"] * 2
    ts = pd.array([0, 1800, 3601, None, 3601 + 1800, 10, 10 + 1801], dtype="Int64")
    # 1800 s is not more than a 30-minute gap; 1801 s is; an undated row stays in its session
    assert session_ids(users, ts, 1800).tolist() == [0, 0, 1, 1, 1, 0, 1]
    assert session_ids_reference(users, ts, 1800).tolist() == [0, 0, 1, 1, 1, 0, 1]
    frame = pd.DataFrame({"user_id": users, "item_id": list("pqrstuv"), "timestamp": ts,
                          "behavior": ["view", "cart", "view", "buy", "buy", "view", "buy"]})
    table = session_table(frame, 30)
    assert table["items"].tolist() == [["p", "q"], ["r", "s", "t"], ["u"], ["v"]]
    split = last_session_split(frame, 30)
    assert split["targets"].tolist() == [["s", "t"], ["v"]] and split["history"].tolist() == [[0, 1], [5]]


def test_sessions_on_real_data_match_the_reference(taobao):
    inter = taobao.interactions
    for gap in (60.0, 1800.0, 6 * 3600.0):
        fast = session_ids(inter["user_id"], inter["timestamp"], gap)
        assert (fast == session_ids_reference(inter["user_id"], inter["timestamp"], gap)).all()
    sessions = session_ids(inter["user_id"], inter["timestamp"], 1800.0)
    gaps = np.diff(inter["timestamp"].to_numpy(dtype=np.int64))
    same_user = inter["user_id"].to_numpy()[1:] == inter["user_id"].to_numpy()[:-1]
    new = np.diff(sessions) == 1
    assert (new[same_user] == (gaps[same_user] > 1800)).all()
    per_user = pd.Series(sessions).groupby(inter["user_id"].to_numpy()).max() + 1
    assert per_user.min() >= 1 and per_user.median() > 3  # 9 days of activity: several sessions per user


def test_corpus_takes_multi_behaviour_datasets_without_item_text(prepared_dir, tiny_data_config, tmp_path):
    from dataclasses import replace

    from recgpt.data import build_corpus, load_corpus

    for name in ("retailrocket_mb", "taobao_userbehavior"):
        prepared_dir(name)
    cfg = replace(tiny_data_config, datasets=["retailrocket_mb", "taobao_userbehavior"],
                  corpus_dir=str(tmp_path / "corpus"))
    corpus = load_corpus(build_corpus(cfg))
    per = corpus.manifest["counts"]["per_dataset"]
    assert per["retailrocket_mb"]["items"] == 30_113 and per["taobao_userbehavior"]["items"] == 55_368
    items = corpus.items.set_index("dataset")["text"]
    assert (items.loc["retailrocket_mb"] == "").all() and (items.loc["taobao_userbehavior"] != "").all()


def test_retailrocket_targets_of_unknown_users_are_counted_and_bad_events_name_their_line(tmp_path):
    spec = DatasetSpec(name="rr", format="retailrocket", path=".", timestamp_unit="ms",
                       files={"events": "events.csv", "targets": "test.csv"})
    events = "timestamp,visitorid,event,itemid,transactionid\n5000,1,transaction,7,\n5000,1,view,7,\n9000,2,view,8,\n"
    raw = tmp_path / "raw"  # the inputs; the output is beside them, never inside
    raw.mkdir()
    (raw / "events.csv").write_text(events)
    (raw / "test.csv").write_text("visitorid,itemid\n1,9\n3,8\n")
    prepared = load_prepared(prepare_dataset(spec, raw, tmp_path / "out"))
    assert prepared.interactions["behavior"].tolist()[:2] == ["view", "buy"]  # tie: view before buy
    counts = prepared.manifest["counts"]
    assert counts["targets_without_user"] == 1 and counts["targets"] == 1 and counts["items_only_in_targets"] == 1
    assert prepared.targets.to_dict("records") == [{"user_id": "1", "item_id": "9", "behavior": "buy"}]
    assert "9" in set(prepared.items["item_id"]) and counts["items"] == 3
    (raw / "events.csv").write_text(events + "9500,2,,8,\n")
    with pytest.raises(DataFormatError, match=r"events\.csv, line 5: empty 'event'"):
        prepare_dataset(spec, raw, tmp_path / "out2")
