"""Bad input: a DataFormatError naming the file and line/row, or a counted skip; nothing dropped uncounted."""
import gzip
import json

import pandas as pd
import pytest

from recgpt.config import DatasetSpec, ImportConfig, TextConfig
from recgpt.data import DataFormatError, load_prepared, prepare_dataset


@pytest.fixture(scope="module")
def ml_lines(data_root):
    return (data_root / "ml-100k" / "ml-100k.inter").read_text().splitlines()[:400]


def recbole(tmp_path, inter_text, item_text=None, **kw):
    folder = tmp_path / "ds"
    folder.mkdir(exist_ok=True)
    (folder / "d.inter").write_text(inter_text)
    files = {"inter": "d.inter"}
    if item_text is not None:
        (folder / "d.item").write_text(item_text)
        files["item"] = "d.item"
    spec = DatasetSpec(name="d", format="recbole", path="ds", files=files, **kw)
    return spec, folder


def run(spec, tmp_path):
    return load_prepared(prepare_dataset(spec, tmp_path, tmp_path / "out"))


def test_missing_folder_and_missing_file(tmp_path, ml_lines):
    spec = DatasetSpec(name="d", format="recbole", path="nowhere", files={"inter": "d.inter"})
    with pytest.raises(DataFormatError, match="nowhere.*not found"):
        run(spec, tmp_path)
    spec, folder = recbole(tmp_path, "\n".join(ml_lines) + "\n")
    spec.files["item"] = "absent.item"
    with pytest.raises(DataFormatError, match=r"absent\.item: missing file \(files\.item\)"):
        run(spec, tmp_path)
    spec = DatasetSpec(name="d", format="steam", path="ds", files={})
    with pytest.raises(DataFormatError, match="no file configured for files.reviews"):
        run(spec, tmp_path)


def test_empty_files(tmp_path, ml_lines):
    spec, _ = recbole(tmp_path, "")
    with pytest.raises(DataFormatError, match=r"d\.inter: empty file"):
        run(spec, tmp_path)
    spec, _ = recbole(tmp_path, ml_lines[0] + "\n")  # header only
    with pytest.raises(DataFormatError, match=r"d\.inter: no interaction rows"):
        run(spec, tmp_path)
    (tmp_path / "ds" / "e.inter.json").write_text("{}")
    spec = DatasetSpec(name="d", format="lcrec", path="ds", files={"inter": "e.inter.json"})
    with pytest.raises(DataFormatError, match="e.inter.json: no users"):
        run(spec, tmp_path)


def test_wrong_or_missing_header(tmp_path, ml_lines):
    body = "\n".join(ml_lines[1:]) + "\n"
    spec, _ = recbole(tmp_path, "user_id\titem_id\trating\ttimestamp\n" + body)
    with pytest.raises(DataFormatError, match=r"d\.inter, line 1: header field 'user_id' is not 'name:type'"):
        run(spec, tmp_path)
    spec, _ = recbole(tmp_path, body)  # no header at all: the first data row is read as a header
    with pytest.raises(DataFormatError, match=r"d\.inter, line 1: header field '196'"):
        run(spec, tmp_path)
    spec, _ = recbole(tmp_path, "uid:token\titem_id:token\trating:float\ttimestamp:float\n" + body)
    with pytest.raises(DataFormatError, match=r"d\.inter, header 1: missing column\(s\) 'user_id' \(user\)"):
        run(spec, tmp_path)
    csv = tmp_path / "ds" / "r.csv"
    csv.write_text("user,movie\n1,2\n")
    spec = DatasetSpec(name="d", format="table", path="ds", files={"inter": "r.csv"},
                       columns={"user": "user", "item": "item"})
    with pytest.raises(DataFormatError, match=r"r\.csv, header 1: missing column\(s\) 'item' \(item\)"):
        run(spec, tmp_path)


def test_text_field_absent_from_item_file(tmp_path, data_root):
    item = (data_root / "lastfm" / "lastfm.item").read_text()
    inter = "\n".join((data_root / "lastfm" / "lastfm.inter").read_text().splitlines()[:50]) + "\n"
    spec, _ = recbole(tmp_path, inter, item, text=TextConfig(fields=["artist", "genre"]))
    with pytest.raises(DataFormatError, match=r"d\.item: text field\(s\) \['genre'\] not in the item file"):
        run(spec, tmp_path)


def test_malformed_lines_name_file_and_line(tmp_path, ml_lines, data_root):
    bad = list(ml_lines)
    bad[57] = bad[57] + "\textra"  # file line 58
    spec, _ = recbole(tmp_path, "\n".join(bad) + "\n")
    with pytest.raises(DataFormatError, match=r"d\.inter, line 58: expected 4 tab-separated fields"):
        run(spec, tmp_path)
    # LC-Rec json
    text = (data_root / "amazon_scientific" / "Scientific.inter.json").read_text()[:5000]
    text = text[: text.rindex("]") + 1].replace(", ", ",\n") + "\n,}"
    (tmp_path / "ds" / "x.inter.json").write_text(text)
    spec = DatasetSpec(name="d", format="lcrec", path="ds", files={"inter": "x.inter.json"})
    with pytest.raises(DataFormatError, match=rf"x\.inter\.json, line {text.count(chr(10)) + 1}: not valid JSON"):
        run(spec, tmp_path)
    # Amazon jsonl
    lines = [json.dumps({"user_id": "u1", "parent_asin": "p1", "timestamp": 1000}), "{not json", ""]
    (tmp_path / "ds" / "r.jsonl").write_text("\n".join(lines))
    spec = DatasetSpec(name="d", format="amazon", path="ds", files={"reviews": "r.jsonl"})
    with pytest.raises(DataFormatError, match=r"r\.jsonl, line 2: not valid JSON"):
        run(spec, tmp_path)
    # Steam python-literal games file: the real first lines plus one broken line
    with gzip.open(data_root / "steam" / "steam_games.json.gz", "rt") as f:
        games = [next(f) for _ in range(3)]
    games.insert(2, "{u'id': u'1', u'app_name': \n")
    with gzip.open(tmp_path / "ds" / "g.json.gz", "wt") as f:
        f.writelines(games)
    pd.read_parquet(data_root / "steam" / "user_reviews.parquet").iloc[:20].to_parquet(tmp_path / "ds" / "r.parquet")
    spec = DatasetSpec(name="d", format="steam", path="ds", files={"reviews": "r.parquet", "games": "g.json.gz"})
    with pytest.raises(DataFormatError, match=r"g\.json\.gz, line 3: not a Python literal"):
        run(spec, tmp_path)
    # CSV with a ragged row
    (tmp_path / "ds" / "r.csv").write_text("u,i,t\n1,2,3\n1,3\n")
    spec = DatasetSpec(name="d", format="table", path="ds", files={"inter": "r.csv"},
                       columns={"user": "u", "item": "i", "timestamp": "t"})
    with pytest.raises(DataFormatError, match=r"r\.csv, line 3: expected 3 fields"):
        run(spec, tmp_path)
    (tmp_path / "ds" / "r.csv").write_text("u,i,t\n1,2,3\n\n1,3,4,5\n")
    with pytest.raises(DataFormatError, match=r"r\.csv, line 4: expected 3 fields"):
        run(spec, tmp_path)


def test_non_numeric_timestamps(tmp_path, ml_lines, data_root):
    bad = list(ml_lines)
    bad[100] = "\t".join(bad[100].split("\t")[:3] + ["1997-12-04"])  # a date string, not a number
    spec, _ = recbole(tmp_path, "\n".join(bad) + "\n")
    with pytest.raises(DataFormatError, match=r"d\.inter, line 101: timestamp '1997-12-04' is not a number"):
        run(spec, tmp_path)
    reviews = pd.read_parquet(data_root / "steam" / "user_reviews.parquet").iloc[:30]
    reviews.loc[reviews.index[7], "posted"] = "last week"
    reviews.to_parquet(tmp_path / "ds" / "r.parquet")
    spec = DatasetSpec(name="d", format="steam", path="ds", files={"reviews": "r.parquet"})
    with pytest.raises(DataFormatError, match=r"r\.parquet, row 7: posted 'last week' is not a date"):
        run(spec, tmp_path)


def test_duplicates_counted_and_kept_or_dropped(tmp_path, data_root):
    lines = (data_root / "yelp" / "yelp.inter").read_text().splitlines()[:3000]
    raw = pd.DataFrame([line.split("\t") for line in lines[1:]], columns=["u", "i"])
    n_dup = int(raw.duplicated().sum())
    assert n_dup > 0  # real revisits in the first rows
    spec, _ = recbole(tmp_path, "\n".join(lines) + "\n")
    kept = run(spec, tmp_path)
    assert kept.manifest["counts"]["duplicate_rows"] == n_dup and len(kept.interactions) == len(raw)
    spec.imports = ImportConfig(duplicates="drop")
    dropped = run(spec, tmp_path)
    c = dropped.manifest["counts"]
    assert c["duplicates_dropped"] == n_dup and c["interactions"] == len(raw) - n_dup
    want = raw.drop_duplicates().groupby("u", sort=False)["i"].apply(list).to_dict()  # first visit kept
    assert dropped.interactions.groupby("user_id", sort=False)["item_id"].apply(list).to_dict() == want


def test_items_without_text_counted_kept_or_dropped(tmp_path, data_root):
    inter = "\n".join((data_root / "lastfm" / "lastfm.inter").read_text().splitlines()[:2000]) + "\n"
    item_lines = (data_root / "lastfm" / "lastfm.item").read_text().splitlines()
    # drop the metadata rows of items 0..9, and blank the name of item 10
    items = [item_lines[0]] + [line for line in item_lines[1:] if int(line.split("\t")[0]) > 9]
    items = [line if not line.startswith("10\t") else "10\t" for line in items]
    spec, _ = recbole(tmp_path, inter, "\n".join(items) + "\n", text=TextConfig(fields=["artist"]))
    kept = run(spec, tmp_path)
    rows = pd.DataFrame([line.split("\t") for line in inter.splitlines()[1:]], columns=["u", "i"])
    no_text = rows["i"].astype(int) <= 10
    c = kept.manifest["counts"]
    assert c["items_missing_metadata"] == 10 and c["items_without_text"] == 11
    assert c["interactions_without_text"] == int(no_text.sum()) > 0
    assert (kept.items.set_index("item_id").loc[[str(i) for i in range(11)], "text"] == "").all()
    spec.imports = ImportConfig(items_without_text="drop")
    dropped = run(spec, tmp_path)
    c = dropped.manifest["counts"]
    assert c["interactions_without_text_dropped"] == int(no_text.sum())
    assert c["interactions"] == len(rows) - int(no_text.sum()) and (dropped.items["text"] != "").all()


def test_short_users_counted_and_every_drop_accounted(tmp_path, ml_lines):
    spec, _ = recbole(tmp_path, "\n".join(ml_lines) + "\n",
                      imports=ImportConfig(min_items=3, duplicates="drop"))
    got = run(spec, tmp_path)
    rows = pd.DataFrame([line.split("\t") for line in ml_lines[1:]], columns=["u", "i", "r", "t"])
    sizes = rows.groupby("u").size()
    c = got.manifest["counts"]
    assert c["short_users_dropped"] == int((sizes < 3).sum()) > 0
    assert c["short_user_interactions_dropped"] == int(sizes[sizes < 3].sum())
    assert got.interactions.groupby("user_id").size().min() >= 3
    assert c["raw_rows"] == (c["interactions"] + c["duplicates_dropped"] + c["interactions_without_text_dropped"]
                             + c["short_user_interactions_dropped"])
