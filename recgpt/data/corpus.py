"""Prepared datasets -> one pretraining corpus (docs/artifacts.md): namespaced global item index, sequences as
an HF DatasetDict (train / heldout) saved to disk and memory-mapped on load.

The build streams: one dataset at a time, interactions read in parquet record batches, sequences written in
Arrow batches straight into the saved dataset's files; so memory follows the largest dataset's item table
(fixed-width id bytes, ~20 B per item), not the corpus size.
"""
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Union

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from recgpt.config import config_to_dict, load_dataset_spec
from recgpt.config.errors import UnknownDataset
from recgpt.config.data import DataConfig
from recgpt.data.errors import DataFormatError
from recgpt.data.ids import ItemLookup, fixed_width
from recgpt.data.prepare import is_current, prepare_dataset
from recgpt.data.splits import train_lengths, user_roles
from recgpt.io import (ArtifactError, clean_stale_temporaries, is_kind, output_lock, read_json, read_manifest,
                       require_files, sha256_json, staged_folder, write_manifest)
from recgpt.logging import print0

PathLike = Union[str, Path]
SPLITS = ("train", "heldout")
READ_BATCH = 1 << 14  # interaction rows per parquet record batch: bounds the working set
SHARD = "data-00000-of-00001.arrow"  # a split saved with num_shards=1
ITEMS_SCHEMA = pa.schema([("item_index", pa.int32()), ("item_id", pa.string()), ("dataset", pa.string()),
                          ("text", pa.string())])


@dataclass
class Corpus:
    items: pd.DataFrame  # item_index, item_id ("<dataset>:<id>"), dataset, text
    sequences: "datasets.DatasetDict"  # noqa: F821  train / heldout: user_id, dataset, window, items
    manifest: dict
    hash: str
    path: Path


def sequence_features(behaviors: bool = False):
    """Columns of a sequence split; `behaviors` (data.behaviors) adds each event's behaviour id
    (recgpt.model.behavior ids, int8 lists aligned with `items`; 0 for a dataset without a behaviour column)."""
    from datasets import Features, List, Value

    columns = {"user_id": Value("string"), "dataset": Value("string"), "window": Value("int32"),
               "items": List(Value("int32"))}
    if behaviors:
        columns["behaviors"] = List(Value("int8"))
    return Features(columns)


def prepared_folder(name: str, cfg: DataConfig) -> Path:
    """The prepared folder of `name`, (re)built from its spec when missing or stale.

    A name without a configs/datasets spec may still be used when its prepared folder exists; a spec that
    exists but is wrong is an error, never replaced by a stale prepared folder.
    """
    folder = Path(cfg.prepared_root) / name
    try:
        spec = load_dataset_spec(name)
        folder = Path(cfg.prepared_root) / spec.name  # a spec given by path: its own name, not the path
    except UnknownDataset:
        require_files(folder, ["interactions.parquet", "items.parquet", "manifest.json"],
                      f"prepared dataset {name!r} (no configs/datasets/{name}.yaml either)")
        return folder
    if not is_current(folder, spec, cfg.raw_root):
        print0(f"preparing {name} from {Path(cfg.raw_root) / spec.path}")
        prepare_dataset(spec, cfg.raw_root, folder)
    else:  # re-used as it is: what a killed `prepare` of it left beside it goes
        with output_lock(folder, "data.prepared_root"):
            clean_stale_temporaries(folder)
    return folder


def complete_users(path: Path, item_ids: ItemLookup, behaviors: bool = False) -> Iterator[tuple[np.ndarray, ...]]:
    """(user ids, local item indices, positions, behaviour ids) row arrays holding whole users only, streamed from the parquet
    file in record batches; a user cut by a batch boundary is carried into the next chunk.

    A user's rows must be contiguous with positions 0, 1, 2, ... (the prepared layout); anything else is an error.
    """
    from recgpt.data.behavior import behavior_ids

    carry, parquet = None, pq.ParquetFile(path)
    read_behavior = behaviors and "behavior" in parquet.schema_arrow.names
    columns = ["user_id", "item_id", "position"] + (["behavior"] if read_behavior else [])
    for batch in parquet.iter_batches(batch_size=READ_BATCH, columns=columns):
        local = item_ids.get_indexer(batch.column("item_id"))  # one sorted table per dataset, not one per batch
        if (local < 0).any():
            missing = batch.column("item_id")[int(np.flatnonzero(local < 0)[0])].as_py()
            raise DataFormatError(path, f"item {missing!r} is not in items.parquet")
        rows = (batch.column("user_id").to_numpy(zero_copy_only=False), local.astype(np.int32),
                batch.column("position").to_numpy(zero_copy_only=False).astype(np.int64),
                behavior_ids(batch.column("behavior").to_pylist()).astype(np.int8) if read_behavior
                else np.zeros(batch.num_rows, np.int8))
        if carry is not None:
            rows = tuple(np.concatenate([c, r]) for c, r in zip(carry, rows))
        users = rows[0]
        changes = np.flatnonzero(users[1:] != users[:-1]) + 1
        if len(changes) == 0:
            carry = rows  # one user so far: wait for its end
            continue
        cut = changes[-1]
        carry = tuple(r[cut:] for r in rows)
        yield check_positions(path, tuple(r[:cut] for r in rows))
    if carry is not None:
        yield check_positions(path, carry)


def check_positions(path: Path, rows):
    users, positions = rows[0], rows[2]
    new_user = np.r_[True, users[1:] != users[:-1]]
    expected = np.where(new_user, 0, np.r_[0, positions[:-1] + 1])
    bad = np.flatnonzero(positions != expected)
    if len(bad):
        raise DataFormatError(path, f"rows of user {users[bad[0]]!r} are not contiguous with positions 0, 1, 2, ...",
                              int(positions[bad[0]]), "position")
    return rows


def drop_evaluated_tail(rows, cfg: DataConfig):
    """The rows in-domain training may see (data.train_split): each user's evaluated targets left out."""
    users, positions = rows[0], rows[2]
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    user_len = np.diff(np.r_[starts, len(users)])
    keep = positions < np.repeat(train_lengths(user_len, cfg.train_split, cfg.horizon), user_len)
    return tuple(r[keep] for r in rows)


def add_sequences(name: str, rows, offset: int, cfg: DataConfig, splits: "SplitWriter", counts: dict) -> None:
    """Cut whole users into windows, drop short windows, assign the user's split, write; vectorised per chunk."""
    if cfg.train_split != "all":
        rows = drop_evaluated_tail(rows, cfg)
    users, local, positions, behavior = rows
    new_user = np.r_[True, users[1:] != users[:-1]]
    # Windows are anchored at the user's most recent item: only the oldest window may be short (and dropped).
    user_len = np.diff(np.r_[np.flatnonzero(new_user), len(users)])
    shift = np.repeat((-user_len) % cfg.max_items, user_len)
    window = ((positions + shift) // cfg.max_items).astype(np.int32)
    starts = np.flatnonzero(new_user | np.r_[True, window[1:] != window[:-1]])  # one segment per window
    lengths = np.diff(np.r_[starts, len(users)])
    namespaced = np.array([f"{name}:{u}" for u in users[new_user]], dtype=object)
    held, left_out = user_roles(namespaced, cfg.heldout_users, cfg.train_users, cfg.seed)
    user_of_seg = np.cumsum(new_user[starts]) - 1
    seg_held, seg_left_out = held[user_of_seg], left_out[user_of_seg]
    counts["users"] += len(namespaced)
    counts["heldout_users"] += int(held.sum())
    counts["train_users"] += int((~held & ~left_out).sum())
    counts["train_users_left_out"] += int(left_out.sum())
    counts["users_windowed"] += int((window[starts] == 1).sum())
    short = lengths < cfg.min_items
    counts["short_sequences_dropped"] += int(short.sum())
    counts["short_sequence_items_dropped"] += int(lengths[short].sum())
    row_segment = np.repeat(np.arange(len(starts)), lengths)
    for split, in_split in (("train", ~seg_held & ~seg_left_out), ("heldout", seg_held)):
        keep = in_split & ~short
        if not keep.any():
            continue
        offsets = np.zeros(int(keep.sum()) + 1, dtype=np.int32)
        np.cumsum(lengths[keep], out=offsets[1:])
        values = local[keep[row_segment]] + np.int32(offset)
        table = {
            "user_id": pa.array(namespaced[user_of_seg[keep]], pa.string()),
            "dataset": pa.array([name] * len(offsets[1:]), pa.string()),
            "window": pa.array(window[starts[keep]], pa.int32()),
            "items": pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, pa.int32())),
        }
        if cfg.behaviors:
            table["behaviors"] = pa.ListArray.from_arrays(pa.array(offsets), pa.array(behavior[keep[row_segment]], pa.int8()))
        splits.write(split, pa.table(table))
        counts[f"{split}_sequences"] += int(keep.sum())
        counts[f"{split}_interactions"] += int(offsets[-1])


class SplitWriter:
    """One Arrow file per split, written table by table."""

    def __init__(self, folder: Path, behaviors: bool = False):
        from datasets.arrow_writer import ArrowWriter

        self.paths = {s: folder / f"{s}.arrow" for s in SPLITS}
        features = sequence_features(behaviors)
        self.writers = {s: ArrowWriter(features=features, path=str(p)) for s, p in self.paths.items()}

    def write(self, split: str, table: pa.Table):
        self.writers[split].write_table(table)

    def close(self):
        for writer in self.writers.values():
            writer.finalize()


def add_dataset(name: str, folder: Path, offset: int, cfg: DataConfig, items_writer: pq.ParquetWriter,
                splits: SplitWriter) -> dict:
    """Append one prepared dataset to the corpus; returns its counts."""
    ids = []
    for batch in pq.ParquetFile(folder / "items.parquet").iter_batches(batch_size=1 << 15, columns=["item_id", "text"]):
        batch_ids, n = batch.column("item_id").cast(pa.string()), batch.num_rows
        start = offset + sum(len(i) for i in ids)  # rows written so far
        items_writer.write_table(pa.table({
            "item_index": pa.array(np.arange(start, start + n, dtype=np.int32)),
            "item_id": pc.binary_join_element_wise(pa.scalar(name), batch_ids, ":"),
            "dataset": pa.array([name] * n, pa.string()),
            "text": batch.column("text").cast(pa.string()),
        }, schema=ITEMS_SCHEMA))
        ids.append(fixed_width(batch_ids))
    item_ids = ItemLookup(ids)
    del ids
    if item_ids.duplicate is not None:
        raise DataFormatError(folder / "items.parquet", f"item {item_ids.duplicate!r} is listed twice")
    counts = {"items": len(item_ids), "users": 0, "users_windowed": 0, "short_sequences_dropped": 0,
              "short_sequence_items_dropped": 0, "train_users_left_out": 0}
    counts.update({f"{s}_{k}": 0 for s in SPLITS for k in ("users", "sequences", "interactions")})
    for rows in complete_users(folder / "interactions.parquet", item_ids, cfg.behaviors):
        add_sequences(name, rows, offset, cfg, splits, counts)
    return counts


def build_corpus(data_cfg: DataConfig, out_dir: Optional[PathLike] = None) -> Path:
    """Merge `data_cfg.datasets` (prepared on demand from data.raw_root) into `data_cfg.corpus_dir`.

    Written to a temporary folder beside the target and moved into place at the end, so a reader never sees
    half a corpus; only a folder whose manifest says it is a corpus is replaced, and what other stages wrote
    inside it (`embeddings/`) is kept. Returns the corpus folder.
    """
    out = Path(out_dir or data_cfg.corpus_dir)
    with staged_folder(out, "corpus", "data.corpus_dir", is_kind("corpus")) as tmp:
        (tmp / "_arrow").mkdir()
        write_corpus(data_cfg, out, tmp)
    print0(f"corpus -> {out}")
    return out


def write_corpus(data_cfg: DataConfig, out: Path, tmp: Path) -> None:
    start = time.time()
    entries, per_dataset, offset = [], {}, 0
    splits = SplitWriter(tmp / "_arrow", data_cfg.behaviors)
    with pq.ParquetWriter(tmp / "items.parquet", ITEMS_SCHEMA) as items_writer:
        for entry in data_cfg.datasets:
            folder = prepared_folder(entry, data_cfg)
            name = folder.name  # the spec's name, also for a spec given by path (the item id namespace)
            counts = add_dataset(name, folder, offset, data_cfg, items_writer, splits)
            entries.append({"name": name, "prepared_dir": str(folder), "manifest_sha256": sha256_json(read_manifest(folder)),
                            "item_offset": offset, "items": counts["items"]})
            per_dataset[name] = counts
            offset += counts["items"]
            pa.default_memory_pool().release_unused()  # hand the dataset's buffers back before the next one
            print0(f"corpus: {name}: {counts['users']} users, {counts['items']} items")
    splits.close()
    if offset >= 2 ** 31:
        raise DataFormatError(out, f"{offset} items do not fit int32 item indices")
    totals = {s: {k: sum(c[f"{s}_{k}"] for c in per_dataset.values()) for k in ("users", "sequences", "interactions")}
              for s in SPLITS}
    place_splits(splits.paths, tmp / "sequences", sequence_features(data_cfg.behaviors),
                 {s: totals[s]["sequences"] for s in SPLITS})
    shutil.rmtree(tmp / "_arrow")
    manifest = {
        "kind": "corpus",
        "datasets": entries,
        "counts": {"items": offset, "splits": totals, "per_dataset": per_dataset,
                   "short_sequences_dropped": sum(c["short_sequences_dropped"] for c in per_dataset.values())},
        "config": config_to_dict(data_cfg),
    }
    if totals["train"]["sequences"] == 0:
        raise DataFormatError(out, f"no training sequence in {', '.join(data_cfg.datasets)} (counts: {per_dataset}); "
                              "an empty corpus was not written")
    write_manifest(tmp, manifest)
    print0(f"corpus: {offset} items, {totals} in {time.time() - start:.1f}s")


def place_splits(paths: dict, folder: Path, features, rows: dict) -> None:
    """The written Arrow files moved into a `DatasetDict.save_to_disk` folder (one shard per split), its
    metadata files taken from saving the empty splits. save_to_disk would copy them through a memory map, whose
    pages made the build's peak RSS grow with the corpus. `rows`: sequences per split, checked on the files."""
    from datasets import Dataset, DatasetDict

    empty = DatasetDict({s: Dataset.from_dict({k: [] for k in features}, features=features) for s in paths})
    empty.save_to_disk(str(folder), num_shards={s: 1 for s in paths})
    for split, path in paths.items():
        state = read_json(folder / split / "state.json")
        if state.get("_data_files") != [{"filename": SHARD}]:
            raise ArtifactError(f"{folder / split}: datasets saved {state.get('_data_files')}, not one {SHARD}")
        with pa.OSFile(str(path)) as source:  # read, not mapped: the batches' headers only
            reader = pa.ipc.open_stream(source)
            if reader.schema.names != list(features) or sum(b.num_rows for b in reader) != rows[split]:
                raise ArtifactError(f"{path}: not the {rows[split]} sequences written ({reader.schema.names})")
        os.replace(path, folder / split / SHARD)


def load_corpus(path: PathLike) -> Corpus:
    """Open a corpus folder; sequences are memory-mapped (load_from_disk), items read into a DataFrame."""
    from datasets import load_from_disk

    folder = require_files(path, ["items.parquet", "sequences", "manifest.json"], "corpus")
    manifest = read_manifest(folder)
    try:
        sequences = load_from_disk(str(folder / "sequences"))
    except (OSError, ValueError, IndexError, KeyError) as e:  # what datasets raises for a damaged folder
        raise ArtifactError(f"{folder / 'sequences'}: not a readable datasets folder ({type(e).__name__}: {e}); "
                            "rebuild the corpus with `recgpt corpus`") from None
    return Corpus(items=pd.read_parquet(folder / "items.parquet"), sequences=sequences,
                  manifest=manifest, hash=sha256_json(manifest), path=folder)
