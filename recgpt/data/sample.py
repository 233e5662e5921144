"""The bundled real sample under data/sample/, drawn from the shared datasets (seeded, reproducible).

Users are drawn at random; each drawn user keeps all rows, and only the items they touch are kept in the item
files. Files keep their original raw formats (RecBole atomic, LC-Rec json, UCSD Steam), byte for byte per kept
line, so the sample imports with the same importers as the full datasets.
"""
import gzip
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

USERS = {"ml-100k": 300, "amazon_scientific": 1200, "steam": 1500}
STEAM_MIN_REVIEWS = 3  # steam is the zero-shot downstream domain: users need a history and a target


def draw(users: list, n: int, rng: np.random.Generator) -> set:
    return set(rng.choice(np.asarray(users, dtype=object), size=min(n, len(users)), replace=False).tolist())


def recbole_subset(src: Path, dst: Path, name: str, n: int, rng) -> None:
    lines = (src / f"{name}.inter").read_text().splitlines(keepends=True)
    users = list(dict.fromkeys(line.split("\t", 1)[0] for line in lines[1:]))
    keep = draw(users, n, rng)
    rows = [line for line in lines[1:] if line.split("\t", 1)[0] in keep]
    items = {line.split("\t")[1] for line in rows}
    dst.mkdir(parents=True, exist_ok=True)
    (dst / f"{name}.inter").write_text(lines[0] + "".join(rows))
    item_lines = (src / f"{name}.item").read_text().splitlines(keepends=True)
    (dst / f"{name}.item").write_text(item_lines[0] + "".join(l for l in item_lines[1:] if l.split("\t", 1)[0] in items))


def lcrec_subset(src: Path, dst: Path, prefix: str, n: int, rng) -> None:
    seqs = json.loads((src / f"{prefix}.inter.json").read_text())
    keep = draw(list(seqs), n, rng)
    seqs = {u: s for u, s in seqs.items() if u in keep}
    items = {str(i) for s in seqs.values() for i in s}
    meta = json.loads((src / f"{prefix}.item.json").read_text())
    dst.mkdir(parents=True, exist_ok=True)
    (dst / f"{prefix}.inter.json").write_text(json.dumps(seqs))
    (dst / f"{prefix}.item.json").write_text(json.dumps({k: v for k, v in meta.items() if k in items}, indent=2))


def steam_subset(src: Path, dst: Path, n: int, rng) -> None:
    reviews = pd.read_parquet(src / "user_reviews.parquet")
    sizes = reviews.groupby("user_id", sort=False).size()
    keep = draw(sizes.index[sizes >= STEAM_MIN_REVIEWS].tolist(), n, rng)
    reviews = reviews[reviews["user_id"].isin(keep)][["user_id", "item_id", "posted", "recommend"]]
    items = {str(i) for i in reviews["item_id"]}
    dst.mkdir(parents=True, exist_ok=True)
    reviews.to_parquet(dst / "user_reviews.parquet", index=False)
    game_id = re.compile(r"u?'id': u?'([^']*)'")
    with gzip.open(src / "steam_games.json.gz", "rt") as f, \
            gzip.GzipFile(dst / "steam_games.json.gz", "wb", mtime=0) as out:  # mtime=0: same bytes every run
        for line in f:
            match = game_id.search(line)
            if match and match.group(1) in items:
                out.write(line.encode())


def write_sample(raw_root, out, seed: int) -> int:
    """Writes the sample to `out` (built beside it and swapped in; only a folder this function wrote, with its
    manifest.json, is replaced, and never one holding or inside the raw datasets it reads); returns its size in
    bytes. Other files in `out` (its README) are kept."""
    from recgpt.io import is_kind, staged_folder, write_manifest

    src, out = Path(raw_root), Path(out)
    inputs = [src / name for name in USERS]
    with staged_folder(out, "data sample", "--out", is_kind("sample"), inputs=inputs) as tmp:
        rng = np.random.default_rng(seed)
        recbole_subset(src / "ml-100k", tmp / "ml-100k", "ml-100k", USERS["ml-100k"], rng)
        lcrec_subset(src / "amazon_scientific", tmp / "amazon_scientific", "Scientific", USERS["amazon_scientific"], rng)
        steam_subset(src / "steam", tmp / "steam", USERS["steam"], rng)
        write_manifest(tmp, {"kind": "sample", "seed": seed, "users": USERS, "sources": sorted(USERS)})
    return sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
