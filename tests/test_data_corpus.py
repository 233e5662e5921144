"""The merged corpus: namespaced global items, windows, dropped short sequences, seeded hold-out, manifest."""
import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recgpt.data import build_corpus, load_corpus, load_prepared
from recgpt.data.splits import is_heldout, windows
from recgpt.io import ArtifactError, sha256_json

REPO = Path(__file__).resolve().parents[1]


def expected_sequences(corpus, prepared_dir, names):
    """Reference: each user's prepared sequence mapped to global indices through items.parquet."""
    index = dict(zip(corpus.items["item_id"], corpus.items["item_index"]))
    out = {}
    for name in names:
        inter = load_prepared(prepared_dir(name)).interactions
        for user, items in inter.groupby("user_id", sort=False)["item_id"]:
            out[f"{name}:{user}"] = [index[f"{name}:{i}"] for i in items]
    return out


def test_tiny_corpus_layout_and_counts(tiny_corpus, tiny_data_config, prepared_dir):
    corpus = load_corpus(tiny_corpus)
    names = tiny_data_config.datasets
    items = corpus.items
    assert items["item_index"].tolist() == list(range(len(items)))
    assert items["item_id"].is_unique and len(items) == 1682 + 4606
    assert items["item_id"].str.split(":").str[0].tolist() == items["dataset"].tolist()
    assert set(items["dataset"]) == set(names)
    assert set(corpus.sequences) == {"train", "heldout"}
    # memory-mapped from the corpus folder, not copied into RAM
    for split in corpus.sequences.values():
        assert split.cache_files and all(str(tiny_corpus) in f["filename"] for f in split.cache_files)
    assert corpus.sequences["train"].features["items"].feature.dtype == "int32"

    want = expected_sequences(corpus, prepared_dir, names)
    got, split_of = {}, {}
    for split, ds in corpus.sequences.items():
        frame = ds.to_pandas()
        assert (frame["items"].map(len) <= tiny_data_config.max_items).all()
        assert (frame["items"].map(len) >= tiny_data_config.min_items).all()
        for user, window, seq in zip(frame["user_id"], frame["window"], frame["items"]):
            got.setdefault(user, {})[window] = list(seq)
            assert split_of.setdefault(user, split) == split  # all windows of a user in one split
    manifest = corpus.manifest
    dropped = 0
    for user, seq in want.items():
        spans = [seq[a:b] for a, b in windows(len(seq), tiny_data_config.max_items)]
        kept = {w: s for w, s in enumerate(spans) if len(s) >= tiny_data_config.min_items}
        dropped += len(spans) - len(kept)
        assert got.get(user, {}) == kept, user  # windows, not truncation; short ones dropped
    assert manifest["counts"]["short_sequences_dropped"] == dropped
    heldout = {u for u, s in split_of.items() if s == "heldout"}
    assert heldout == {u for u in want if is_heldout(u, tiny_data_config.heldout_users, tiny_data_config.seed)}
    assert 0.05 < len(heldout) / len(want) < 0.15
    # manifest: counts per dataset and split, input hashes
    splits = manifest["counts"]["splits"]
    for split, ds in corpus.sequences.items():
        assert splits[split]["sequences"] == ds.num_rows
        assert splits[split]["interactions"] == sum(map(len, ds["items"]))
    for entry in manifest["datasets"]:
        assert entry["manifest_sha256"] == sha256_json(load_prepared(prepared_dir(entry["name"])).manifest)
        assert manifest["counts"]["per_dataset"][entry["name"]]["users"] == len(
            [u for u in want if u.startswith(entry["name"] + ":")])
    assert corpus.hash == sha256_json(manifest)


def test_short_sequences_dropped_and_rebuild_is_deterministic(tmp_path, tiny_data_config, data_root):
    cfg = dataclasses.replace(tiny_data_config, datasets=["lastfm"], prepared_root=str(tmp_path / "prep"),
                              corpus_dir=str(tmp_path / "c1"), max_items=300, min_items=120, heldout_users=0.3)
    first = load_corpus(build_corpus(cfg))  # prepares lastfm on demand
    assert (tmp_path / "prep" / "lastfm" / "manifest.json").is_file()
    inter = load_prepared(tmp_path / "prep" / "lastfm").interactions
    lengths = inter.groupby("user_id", sort=False).size().to_numpy()
    spans = np.concatenate([[b - a for a, b in windows(n, 300)] for n in lengths])
    counts = first.manifest["counts"]
    assert counts["short_sequences_dropped"] == int((spans < 120).sum()) > 0
    assert counts["per_dataset"]["lastfm"]["short_sequence_items_dropped"] == int(spans[spans < 120].sum())
    assert counts["per_dataset"]["lastfm"]["users_windowed"] == int((lengths > 300).sum()) > 0
    second = load_corpus(build_corpus(cfg))
    assert second.hash == first.hash
    for split in ("train", "heldout"):
        assert second.sequences[split]["items"] == first.sequences[split]["items"]
    other = load_corpus(build_corpus(dataclasses.replace(cfg, seed=1, corpus_dir=str(tmp_path / "c2"))))
    assert other.sequences["heldout"]["user_id"] != first.sequences["heldout"]["user_id"]
    none = load_corpus(build_corpus(dataclasses.replace(cfg, heldout_users=0.0, corpus_dir=str(tmp_path / "c3"))))
    assert none.sequences["heldout"].num_rows == 0 and none.sequences["train"].num_rows > 0


def test_unknown_dataset_and_incomplete_corpus(tmp_path, tiny_data_config):
    cfg = dataclasses.replace(tiny_data_config, datasets=["no_such_set"], prepared_root=str(tmp_path),
                              corpus_dir=str(tmp_path / "c"))
    with pytest.raises(ArtifactError, match="no_such_set"):
        build_corpus(cfg)
    (tmp_path / "c").mkdir()
    with pytest.raises(ArtifactError, match="corpus at .* is incomplete: missing items.parquet, sequences"):
        load_corpus(tmp_path / "c")


def test_prepared_folder_without_spec_is_used(tmp_path, tiny_data_config, prepared_dir):
    # a prepared folder under a name with no configs/datasets YAML (e.g. a remapped copy) joins the corpus
    src = load_prepared(prepared_dir("lastfm"))
    folder = tmp_path / "prep" / "lastfm_copy"
    folder.mkdir(parents=True)
    for name in ("interactions.parquet", "items.parquet", "manifest.json"):
        (folder / name).write_bytes((src.path / name).read_bytes())
    cfg = dataclasses.replace(tiny_data_config, datasets=["lastfm_copy"], prepared_root=str(tmp_path / "prep"),
                              corpus_dir=str(tmp_path / "c"))
    corpus = load_corpus(build_corpus(cfg))
    assert corpus.items["item_id"].str.startswith("lastfm_copy:").all() and len(corpus.items) == 4606
    assert pd.Series(corpus.sequences["train"]["dataset"]).eq("lastfm_copy").all()


def test_cli_prepare_and_corpus_on_the_bundled_sample(tmp_path, capsys):
    from recgpt.cli import main

    args = ["--config", str(REPO / "configs" / "sample.yaml"), f"data.raw_root={REPO / 'data' / 'sample'}",
            f"data.prepared_root={tmp_path / 'prep'}", f"data.corpus_dir={tmp_path / 'corpus'}"]
    assert main(["prepare", *args]) == 0
    assert "sample_ml-100k: 300 users" in capsys.readouterr().out
    assert main(["corpus", *args]) == 0
    corpus = load_corpus(tmp_path / "corpus")
    assert corpus.manifest["config"]["datasets"] == ["sample_ml-100k", "sample_amazon_scientific"]


def test_prepared_rows_must_be_contiguous_per_user(tmp_path, tiny_data_config, prepared_dir):
    src = load_prepared(prepared_dir("lastfm"))
    folder = tmp_path / "prep" / "broken"
    folder.mkdir(parents=True)
    inter = src.interactions
    first = inter["user_id"].iloc[0]
    n = int((inter["user_id"] == first).sum())
    # move the first user's second half after the next user: positions no longer start a run at 0
    moved = pd.concat([inter.iloc[: n // 2], inter.iloc[n:], inter.iloc[n // 2: n]])
    moved.to_parquet(folder / "interactions.parquet", index=False)
    for name in ("items.parquet", "manifest.json"):
        (folder / name).write_bytes((src.path / name).read_bytes())
    cfg = dataclasses.replace(tiny_data_config, datasets=["broken"], prepared_root=str(tmp_path / "prep"),
                              corpus_dir=str(tmp_path / "c"))
    with pytest.raises(Exception, match=rf"interactions.parquet, position {n // 2}: rows of user '{first}' are not contiguous"):
        build_corpus(cfg)
    assert not (tmp_path / "c").exists() and not list(tmp_path.glob(".c.tmp-*"))


def test_item_lookup_matches_a_dictionary_on_real_ids(prepared_dir):
    """The corpus's compact id table (sorted fixed-width bytes) against a plain dict, on real amazon_scientific
    ids plus ids it must miss: longer than any, a prefix, non-ASCII, empty."""
    import pyarrow as pa

    from recgpt.data.ids import ItemLookup, fixed_width

    ids = pd.read_parquet(prepared_dir("amazon_scientific") / "items.parquet")["item_id"].astype(str).tolist()
    parts = [fixed_width(pa.array(ids[i:i + 1000])) for i in range(0, len(ids), 1000)]
    lookup = ItemLookup(parts)
    assert len(lookup) == len(ids) and lookup.duplicate is None
    row_of = {item: row for row, item in enumerate(ids)}
    queries = ids[::-7] + [ids[0] + "x" * 40, ids[5][:-1], "é" + ids[3], ""]
    assert lookup.get_indexer(pa.array(queries)).tolist() == [row_of.get(q, -1) for q in queries]
    assert ItemLookup([fixed_width(pa.array(["a", "bb", "a"]))]).duplicate == "a"
    assert ItemLookup([fixed_width(pa.array(["zé", "a"]))]).get_indexer(pa.array(["zé", "z"])).tolist() == [0, -1]
