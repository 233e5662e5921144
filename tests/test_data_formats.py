"""Formats not shipped in ../shared/data (MovieLens raw, Amazon 2023 jsonl, CSV/Parquet, original Steam json)
are tested on small files written here from real rows of the shared datasets, and must import to the same
sequences as the shipped format."""
import gzip
import json
import re

import numpy as np
import pandas as pd
import pytest

from recgpt.config import DatasetSpec, ImportConfig, TextConfig
from recgpt.data import load_prepared, prepare_dataset
from recgpt.data.movielens import GENRES_100K

COLS = ["user_id", "item_id", "timestamp", "position"]


@pytest.fixture(scope="module")
def ml_rows(data_root):
    inter = pd.read_csv(data_root / "ml-100k" / "ml-100k.inter", sep="\t", dtype=str, nrows=20000)
    inter.columns = ["user", "item", "rating", "timestamp"]
    items = pd.read_csv(data_root / "ml-100k" / "ml-100k.item", sep="\t", dtype=str, keep_default_na=False,
                        quoting=3)
    items.columns = ["item", "title", "year", "genres"]
    return inter, items


def sequences(frame):
    return frame[COLS].reset_index(drop=True)


def reference_ml(tmp_path, inter, items):
    """The same rows as RecBole atomic files, imported by the RecBole importer (the shipped format)."""
    folder = tmp_path / "ref"
    folder.mkdir()
    with open(folder / "r.inter", "w") as f:
        f.write("user_id:token\titem_id:token\trating:float\ttimestamp:float\n")
        for row in inter.itertuples(index=False):
            f.write("\t".join(row) + "\n")
    spec = DatasetSpec(name="ref", format="recbole", path="ref", files={"inter": "r.inter"})
    return load_prepared(prepare_dataset(spec, tmp_path, tmp_path / "out-ref"))


def test_movielens_100k_layout(tmp_path, ml_rows):
    inter, items = ml_rows
    folder = tmp_path / "ml"
    folder.mkdir()
    (folder / "u.data").write_text("".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in inter.itertuples(index=False)))
    lines = []
    for item, title, year, genres in items.itertuples(index=False):
        flags = ["1" if g in genres.split(" ") else "0" for g in GENRES_100K]
        date = f"01-Jan-{year}" if year else ""
        lines.append("|".join([item, f"{title} ({year})", date, "", "http://us.imdb.com/"] + flags))
    (folder / "u.item").write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    spec = DatasetSpec(name="ml", format="movielens", path="ml", files={"ratings": "u.data", "movies": "u.item"},
                       text=TextConfig(fields=["title", "genres"]))
    got = load_prepared(prepare_dataset(spec, tmp_path, tmp_path / "out"))
    ref = reference_ml(tmp_path, inter, items)
    pd.testing.assert_frame_equal(sequences(got.interactions), sequences(ref.interactions))
    text = got.items.set_index("item_id")["text"]
    assert text["1"] == "Toy Story (1995) | Animation, Children's, Comedy"


def test_movielens_1m_layout(tmp_path, ml_rows):
    inter, items = ml_rows
    folder = tmp_path / "ml1m"
    folder.mkdir()
    (folder / "ratings.dat").write_text("".join(f"{u}::{i}::{r}::{t}\n" for u, i, r, t in inter.itertuples(index=False)))
    (folder / "movies.dat").write_bytes("".join(
        f"{i}::{t} ({y})::{'|'.join(g.split(' '))}\n" for i, t, y, g in items.itertuples(index=False)).encode("latin-1"))
    spec = DatasetSpec(name="ml1m", format="movielens", path="ml1m",
                       files={"ratings": "ratings.dat", "movies": "movies.dat"},
                       text=TextConfig(fields=["title", "year", "genres"]))
    got = load_prepared(prepare_dataset(spec, tmp_path, tmp_path / "out"))
    pd.testing.assert_frame_equal(sequences(got.interactions), sequences(reference_ml(tmp_path, inter, items).interactions))
    assert got.items.set_index("item_id")["text"]["1"] == "Toy Story (1995) | 1995 | Animation, Children's, Comedy"


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_table_csv_and_parquet(tmp_path, ml_rows, kind):
    inter, items = ml_rows
    folder = tmp_path / "tbl"
    folder.mkdir()
    ratings = inter.rename(columns={"user": "userId", "item": "movieId"})
    movies = items.rename(columns={"item": "movieId"})
    if kind == "csv":
        ratings.to_csv(folder / "ratings.csv", index=False)
        movies.to_csv(folder / "movies.csv", index=False)
    else:
        ratings.assign(userId=ratings.userId.astype(int), timestamp=ratings.timestamp.astype(np.int64)).to_parquet(
            folder / "ratings.parquet")
        movies.to_parquet(folder / "movies.parquet")
    spec = DatasetSpec(name="tbl", format="table", path="tbl",
                       files={"inter": f"ratings.{kind}", "item": f"movies.{kind}"},
                       columns={"user": "userId", "item": "movieId", "timestamp": "timestamp"},
                       text=TextConfig(fields=["title", "year"]))
    got = load_prepared(prepare_dataset(spec, tmp_path, tmp_path / "out"))
    pd.testing.assert_frame_equal(sequences(got.interactions), sequences(reference_ml(tmp_path, inter, items).interactions))
    assert got.items.set_index("item_id")["text"]["1"] == "Toy Story | 1995"


def test_amazon_2023_jsonl_from_real_scientific_items(tmp_path, data_root, prepared_dir):
    seqs = json.loads((data_root / "amazon_scientific" / "Scientific.inter.json").read_text())
    meta = json.loads((data_root / "amazon_scientific" / "Scientific.item.json").read_text())
    users = list(seqs)[:1500]
    base = 1_500_000_000_000
    reviews = []
    for k, user in enumerate(users):
        for j, item in enumerate(seqs[user]):
            reviews.append({"rating": 5.0, "title": "", "text": "", "asin": f"A{item}", "parent_asin": f"P{item}",
                            "user_id": f"U{user}", "timestamp": base + k * 10 ** 6 + j * 86_400_000,
                            "verified_purchase": True})
    # two events of one user in the same second: their order comes from the milliseconds, not file order
    first = seqs[users[0]]
    reviews[0]["timestamp"], reviews[1]["timestamp"] = base + 700, base + 200
    order = np.random.default_rng(0).permutation(len(reviews))  # Amazon files are not in time order
    folder = tmp_path / "amz"
    folder.mkdir()
    with gzip.open(folder / "Industrial.jsonl.gz", "wt") as f:
        f.writelines(json.dumps(reviews[i]) + "\n" for i in order)
    used = {str(i) for u in users for i in seqs[u]}
    with open(folder / "meta_Industrial.jsonl", "w") as f:
        for item, m in meta.items():
            if item in used:
                f.write(json.dumps({"main_category": "Industrial & Scientific", "title": m["title"],
                                    "features": [], "description": [m["description"]] if m["description"] else [],
                                    "store": m["brand"], "categories": m["categories"].split(","),
                                    "details": {}, "parent_asin": f"P{item}"}) + "\n")
    spec = DatasetSpec(name="amz", format="amazon", path="amz", timestamp_unit="ms",
                       files={"reviews": "Industrial.jsonl.gz", "meta": "meta_Industrial.jsonl"},
                       text=TextConfig(fields=["title", "store", "categories"]))
    got = load_prepared(prepare_dataset(spec, tmp_path, tmp_path / "out"))
    seq = got.interactions.groupby("user_id", sort=False)["item_id"].apply(list).to_dict()
    want = {f"U{u}": [f"P{i}" for i in seqs[u]] for u in users}
    want[f"U{users[0]}"][:2] = [f"P{first[1]}", f"P{first[0]}"]
    assert seq == want
    assert got.interactions["timestamp"].min() == base // 1000  # stored in seconds
    text = got.items.set_index("item_id")["text"]
    m = meta[str(first[0])]
    assert text[f"P{first[0]}"] == " | ".join([m["title"], m["brand"], ", ".join(m["categories"].split(","))])[:512]


def test_steam_original_json_reviews(tmp_path, data_root, prepared_dir):
    raw = pd.read_parquet(data_root / "steam" / "user_reviews.parquet").iloc[:3000]
    folder = tmp_path / "steam"
    folder.mkdir()
    with gzip.open(folder / "australian_user_reviews.json.gz", "wt") as f:
        for user, rows in raw.groupby("user_id", sort=False):
            reviews = []
            for item, posted in zip(rows["item_id"], rows["posted"]):
                day = None if pd.isna(posted) else pd.Timestamp(posted)
                text = f"Posted {day.strftime('%B')} {day.day}, {day.year}." if day is not None else "Posted May 3."
                reviews.append({"funny": "", "posted": text, "item_id": str(item), "recommend": True})
            f.write(repr({"user_id": user, "user_url": "", "reviews": reviews}) + "\n")
    needed = {str(i) for i in raw["item_id"]}
    with gzip.open(data_root / "steam" / "steam_games.json.gz", "rt") as src, \
            gzip.open(folder / "games.json.gz", "wt") as dst:
        for line in src:
            game = re.search(r"'id': u?'(\d+)'", line)
            if game and game.group(1) in needed:
                dst.write(line)
    spec = DatasetSpec(name="st", format="steam", path="steam",
                       files={"reviews": "australian_user_reviews.json.gz", "games": "games.json.gz"},
                       text=TextConfig(fields=["app_name", "genres", "tags", "developer"]))
    got = load_prepared(prepare_dataset(spec, tmp_path, tmp_path / "out"))
    ref_spec = DatasetSpec(name="ref", format="steam", path="ref", files={"reviews": "r.parquet"})
    (tmp_path / "ref").mkdir()
    raw.to_parquet(tmp_path / "ref" / "r.parquet")
    ref = load_prepared(prepare_dataset(ref_spec, tmp_path, tmp_path / "out-ref"))
    pd.testing.assert_frame_equal(sequences(got.interactions), sequences(ref.interactions))
    full = load_prepared(prepared_dir("steam")).items.set_index("item_id")["text"]
    text = got.items.set_index("item_id")["text"]
    assert (text == full[text.index]).all()


def test_recbole_without_timestamp_with_float_and_token_seq(tmp_path, data_root):
    lines = (data_root / "lastfm" / "lastfm.inter").read_text().splitlines()[:300]
    folder = tmp_path / "lf"
    folder.mkdir()
    (folder / "lf.inter").write_text("user_id:token\titem_id:token\tweight:float\n" +
                                     "".join(f"{line}\t1.5\n" for line in lines[1:]))
    (folder / "lf.item").write_text((data_root / "lastfm" / "lastfm.item").read_text())
    spec = DatasetSpec(name="lf", format="recbole", path="lf", files={"inter": "lf.inter", "item": "lf.item"},
                       text=TextConfig(fields=["artist"]), imports=ImportConfig(min_items=1))
    got = load_prepared(prepare_dataset(spec, tmp_path, tmp_path / "out"))
    assert got.interactions["timestamp"].isna().all()
    assert got.interactions["item_id"].tolist() == [line.split("\t")[1] for line in lines[1:]]
