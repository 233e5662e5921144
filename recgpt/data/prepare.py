"""Raw files -> the canonical prepared dataset (docs/artifacts.md): order, de-duplicate, build text, count.

Every row removed here is counted in manifest["counts"]; nothing is dropped silently.
"""
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from recgpt.config import config_to_dict
from recgpt.config.data import DatasetSpec
from recgpt.data.behavior import attach_targets, behavior_counts
from recgpt.data.common import RawData, symlink_loop
from recgpt.data.errors import DataFormatError
from recgpt.data.text import build_texts
from recgpt.io import (ArtifactError, guarded_output, is_kind, read_manifest, require_files, sha256_file,
                       staged_folder, write_manifest)

PathLike = Union[str, Path]
FILES = ["interactions.parquet", "items.parquet", "manifest.json"]
INTERACTIONS_SCHEMA = pa.schema([("user_id", pa.string()), ("item_id", pa.string()), ("timestamp", pa.int64()),
                                 ("position", pa.int32())])
BEHAVIOR_FIELD = pa.field("behavior", pa.string())  # multi-behaviour datasets only (docs/artifacts.md)


@dataclass
class PreparedDataset:
    name: str
    interactions: pd.DataFrame
    items: pd.DataFrame
    manifest: dict
    path: Path
    targets: Optional[pd.DataFrame] = None  # targets.parquet: a held-out target set shipped with the data


def read_raw(spec: DatasetSpec, raw_root: PathLike) -> RawData:
    """Run the importer of `spec.format` on `<raw_root>/<spec.path>` (an absolute spec.path wins)."""
    folder = Path(raw_root) / spec.path
    if not folder.is_dir():
        why = "is a symlink loop" if symlink_loop(folder) else "not found"
        raise DataFormatError(folder, f"raw folder of dataset {spec.name!r} {why} (raw_root={raw_root})")
    return importlib.import_module(f"recgpt.data.{spec.format}").read(spec, folder)


def order_interactions(inter: pd.DataFrame, null_timestamps: str = "last") -> pd.DataFrame:
    """Group rows by user (first appearance order) and order each user's rows.

    Within a user: stable sort on the numeric timestamp, ties keep file order; rows without a timestamp go
    after ("last") or before ("first") the dated ones, in file order among themselves. Without any timestamp
    the file order is the order.
    """
    users = pd.factorize(inter["user_id"], sort=False)[0]
    ts = inter["timestamp"]
    null = ts.isna().to_numpy()
    null_key = null if null_timestamps == "last" else ~null
    values = ts.fillna(0).to_numpy(dtype=np.int64)
    file_order = np.arange(len(inter))
    order = np.lexsort((file_order, values, null_key, users))  # last key is the primary one
    out = inter.iloc[order].reset_index(drop=True)
    out["position"] = out.groupby("user_id", sort=False).cumcount().astype(np.int32)
    return out


def prepare_frames(raw: RawData, spec: DatasetSpec) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """(interactions, items, counts) in the prepared layout; pure, so it is tested on small frames."""
    counts = {"raw_rows": len(raw.interactions), **raw.counts}
    inter = raw.interactions
    no_id = ((inter["user_id"].str.strip() == "") | (inter["item_id"].str.strip() == "")).to_numpy()
    counts["rows_without_id_dropped"] = int(no_id.sum())  # an empty user or item id is no id at all
    inter = order_interactions(inter[~no_id].reset_index(drop=True), spec.imports.null_timestamps)
    counts["null_timestamps"] = int(inter["timestamp"].isna().sum())
    if spec.timestamp_unit == "ms":  # ordered on the raw milliseconds above, stored as seconds
        inter["timestamp"] = inter["timestamp"] // 1000

    key = ["user_id", "item_id"] + (["behavior"] if "behavior" in inter.columns else [])  # a view then a buy
    duplicate = inter.duplicated(key, keep="first").to_numpy()
    counts["duplicate_rows"] = int(duplicate.sum())
    counts["duplicates_dropped"] = 0
    if spec.imports.duplicates == "drop":
        inter = inter[~duplicate]
        counts["duplicates_dropped"] = int(duplicate.sum())

    # Items: one row per item used by an interaction; metadata from the item file where it has a row.
    meta = raw.items
    if len(meta):
        absent = [f for f in spec.text.fields if f not in meta.columns]
        if absent:
            source = raw.sources[-1]
            raise DataFormatError(source, f"text field(s) {absent} not in the item file; found {list(meta.columns)}")
    used = pd.DataFrame({"item_id": pd.unique(inter["item_id"])})
    items = used.merge(meta, on="item_id", how="left", indicator=True, validate="one_to_one")
    missing_meta = (items.pop("_merge") == "left_only").to_numpy()
    counts["items_unused_in_item_file"] = int(len(meta) - (~missing_meta).sum())
    counts["items_missing_metadata"] = int(missing_meta.sum())
    counts["interactions_missing_metadata"] = int(inter["item_id"].isin(items["item_id"][missing_meta]).sum())
    items["text"] = build_texts(items, spec.text)

    no_text = set(items.loc[items["text"] == "", "item_id"])
    counts["items_without_text"] = len(no_text)
    counts["items_without_text_share"] = round(len(no_text) / max(len(items), 1), 6)
    rows_no_text = inter["item_id"].isin(no_text).to_numpy()
    counts["interactions_without_text"] = int(rows_no_text.sum())
    counts["items_without_text_dropped"] = 0
    counts["interactions_without_text_dropped"] = 0
    if spec.imports.items_without_text == "drop":
        inter = inter[~rows_no_text]
        counts["items_without_text_dropped"] = len(no_text)
        counts["interactions_without_text_dropped"] = int(rows_no_text.sum())

    sizes = inter.groupby("user_id", sort=False)["item_id"].transform("size").to_numpy()
    short = sizes < spec.imports.min_items
    counts["short_users_dropped"] = int(inter.loc[short, "user_id"].nunique())
    counts["short_user_interactions_dropped"] = int(short.sum())
    inter = inter[~short].reset_index(drop=True)
    inter["position"] = inter.groupby("user_id", sort=False).cumcount().astype(np.int32)

    keep = items["item_id"].isin(pd.unique(inter["item_id"]))
    counts["items_no_longer_used"] = int((~keep).sum())  # all of whose interactions were dropped above
    items = items[keep].reset_index(drop=True)
    counts.update(users=int(inter["user_id"].nunique()), items=len(items), interactions=len(inter))
    if "behavior" in inter.columns:
        counts["behaviors"] = behavior_counts(inter)
    return inter, items, counts


def stringify(items: pd.DataFrame, fields: list[str]) -> pd.DataFrame:
    """items.parquet columns: item_id, text, then the template fields as plain text (lists joined)."""
    from recgpt.data.text import field_text

    out = pd.DataFrame({"item_id": items["item_id"].astype(str), "text": items["text"].astype(str)})
    for name in fields:
        if name in items.columns and name not in out.columns:
            out[name] = [field_text(v) for v in items[name].tolist()]
    return out


def prepare_dataset(spec: DatasetSpec, raw_root: PathLike, out_dir: PathLike) -> Path:
    """Import `spec` from `<raw_root>/<spec.path>` into `out_dir`; returns out_dir. Raises DataFormatError."""
    out, source = Path(out_dir), [Path(raw_root) / spec.path]  # never written into: its raw files are the input
    with guarded_output(out, "prepared dataset", "data.prepared_root", is_kind("prepared"), source):  # before any work
        raw = read_raw(spec, raw_root)
        inter, items, counts = prepare_frames(raw, spec)
        targets = None
        if raw.targets is not None:
            targets, items = attach_targets(raw.targets, inter, items, counts)
        with staged_folder(out, "prepared dataset", "data.prepared_root", is_kind("prepared"), inputs=source) as tmp:
            write_prepared(tmp, raw, spec, inter, items, counts, targets)
    return out


def write_prepared(out: Path, raw: RawData, spec: DatasetSpec, inter: pd.DataFrame, items: pd.DataFrame,
                   counts: dict, targets: Optional[pd.DataFrame] = None) -> None:
    columns, schema = ["user_id", "item_id", "timestamp", "position"], INTERACTIONS_SCHEMA
    if "behavior" in inter.columns:
        columns, schema = columns + ["behavior"], schema.append(BEHAVIOR_FIELD)
    table = pa.Table.from_pandas(inter[columns], schema=schema, preserve_index=False)
    pq.write_table(table, out / "interactions.parquet", row_group_size=1 << 17)
    pq.write_table(pa.Table.from_pandas(stringify(items, spec.text.fields + spec.item_fields), preserve_index=False),
                   out / "items.parquet")
    if targets is not None:
        pq.write_table(pa.Table.from_pandas(targets[["user_id", "item_id", "behavior"]].astype(str),
                                            preserve_index=False), out / "targets.parquet")
    manifest = {
        "kind": "prepared",
        "name": spec.name,
        "format": spec.format,
        "sources": [{"path": str(p), "sha256": sha256_file(p), "bytes": p.stat().st_size} for p in raw.sources],
        "counts": counts,
        "targets": "targets.parquet" if targets is not None else None,
        "order": ("stable sort on numeric timestamp, ties in file order, rows without timestamp "
                  f"{spec.imports.null_timestamps} in file order; file order where there is no timestamp"),
        "spec": config_to_dict(spec),
    }
    write_manifest(out, manifest)


def load_prepared(path: PathLike) -> PreparedDataset:
    """Read a prepared dataset folder (checked whole first)."""
    folder = require_files(path, FILES, "prepared dataset")
    manifest = read_manifest(folder)
    targets = pd.read_parquet(folder / manifest["targets"]) if manifest.get("targets") else None
    return PreparedDataset(name=manifest.get("name", folder.name), manifest=manifest, path=folder,
                           interactions=pd.read_parquet(folder / "interactions.parquet"),
                           items=pd.read_parquet(folder / "items.parquet"), targets=targets)


def is_current(folder: Path, spec: DatasetSpec, raw_root: PathLike) -> bool:
    """True when `folder` was prepared from this spec and the same source bytes (by sha256)."""
    try:
        manifest = read_manifest(folder)
        require_files(folder, FILES, "prepared dataset")
    except ArtifactError:  # missing or unreadable: prepare again
        return False
    if not isinstance(manifest, dict):
        return False
    if manifest.get("spec") != config_to_dict(spec):
        return False
    for source in manifest.get("sources", []):
        path = Path(source["path"])
        if not path.is_file() or path.stat().st_size != source["bytes"] or sha256_file(path) != source["sha256"]:
            return False
    base = (Path(raw_root) / spec.path).resolve()
    return all(Path(s["path"]).resolve().parent == base for s in manifest.get("sources", []))
