"""Prepared datasets -> one pretraining corpus (docs/artifacts.md): namespaced global item index, sequences as
an HF DatasetDict (train / heldout) saved to disk and memory-mapped on load.

The build streams: one dataset at a time, interactions read in parquet record batches, sequences written in
Arrow batches; so memory follows the largest dataset's item table, not the corpus size.
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

from recgpt.config import ConfigError, config_to_dict, load_dataset_spec
from recgpt.config.data import DataConfig
from recgpt.data.errors import DataFormatError
from recgpt.data.prepare import is_current, prepare_dataset
from recgpt.data.splits import is_heldout, windows
from recgpt.io import read_manifest, require_files, sha256_json, write_manifest
from recgpt.logging import print0

PathLike = Union[str, Path]
SPLITS = ("train", "heldout")
ITEMS_SCHEMA = pa.schema([("item_index", pa.int32()), ("item_id", pa.string()), ("dataset", pa.string()),
                          ("text", pa.string())])
WRITE_BATCH = 8192  # sequences per Arrow write


@dataclass
class Corpus:
    items: pd.DataFrame  # item_index, item_id ("<dataset>:<id>"), dataset, text
    sequences: "datasets.DatasetDict"  # noqa: F821  train / heldout: user_id, dataset, window, items
    manifest: dict
    hash: str
    path: Path


def sequence_features():
    from datasets import Features, List, Value

    return Features({"user_id": Value("string"), "dataset": Value("string"), "window": Value("int32"),
                     "items": List(Value("int32"))})


def prepared_folder(name: str, cfg: DataConfig) -> Path:
    """The prepared folder of `name`, (re)built from its spec when missing or stale.

    A name without a configs/datasets spec may still be used when its prepared folder exists.
    """
    folder = Path(cfg.prepared_root) / name
    try:
        spec = load_dataset_spec(name)
    except ConfigError:
        require_files(folder, ["interactions.parquet", "items.parquet", "manifest.json"],
                      f"prepared dataset {name!r} (no configs/datasets/{name}.yaml either)")
        return folder
    if not is_current(folder, spec, cfg.raw_root):
        print0(f"preparing {name} from {Path(cfg.raw_root) / spec.path}")
        prepare_dataset(spec, cfg.raw_root, folder)
    return folder


def user_runs(path: Path, item_ids: pa.Array) -> Iterator[tuple[str, np.ndarray]]:
    """(user_id, local item indices in order) per user, streaming the parquet file in record batches.

    A user's rows must be contiguous with positions 0, 1, 2, ... (the prepared layout); anything else is an error.
    """
    pending_user, pending, seen = None, [], 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=1 << 16, columns=["user_id", "item_id", "position"]):
        local = pc.index_in(batch.column("item_id"), value_set=item_ids)
        if local.null_count:
            bad = batch.column("item_id").filter(pc.is_null(local))[0].as_py()
            raise DataFormatError(path, f"item {bad!r} is not in items.parquet beside it")
        local = local.to_numpy(zero_copy_only=False).astype(np.int32)
        users = batch.column("user_id").to_numpy(zero_copy_only=False)
        positions = batch.column("position").to_numpy(zero_copy_only=False)
        cuts = np.flatnonzero(users[1:] != users[:-1]) + 1
        for start, end in zip(np.r_[0, cuts], np.r_[cuts, len(users)]):
            if users[start] != pending_user:
                if pending_user is not None:
                    yield pending_user, np.concatenate(pending)
                pending_user, pending, seen = users[start], [], 0
            if not np.array_equal(positions[start:end], np.arange(seen, seen + end - start)):
                raise DataFormatError(path, f"rows of user {pending_user!r} are not contiguous with positions "
                                            f"0, 1, 2, ...", seen, "position")
            pending.append(local[start:end])
            seen += end - start
    if pending_user is not None:
        yield pending_user, np.concatenate(pending)


class SplitWriter:
    """Buffers sequences and writes them to one Arrow file per split."""

    def __init__(self, folder: Path):
        from datasets.arrow_writer import ArrowWriter

        self.paths = {s: folder / f"{s}.arrow" for s in SPLITS}
        self.writers = {s: ArrowWriter(features=sequence_features(), path=str(p)) for s, p in self.paths.items()}
        self.buffers = {s: {"user_id": [], "dataset": [], "window": [], "items": []} for s in SPLITS}

    def add(self, split: str, user_id: str, dataset: str, window: int, items: np.ndarray):
        buf = self.buffers[split]
        buf["user_id"].append(user_id)
        buf["dataset"].append(dataset)
        buf["window"].append(window)
        buf["items"].append(items)
        if len(buf["items"]) >= WRITE_BATCH:
            self.flush(split)

    def flush(self, split: str):
        buf = self.buffers[split]
        if buf["items"]:  # one Arrow table per batch, built from numpy without Python-int round trips
            lengths = np.fromiter((len(x) for x in buf["items"]), dtype=np.int32, count=len(buf["items"]))
            offsets = np.zeros(len(lengths) + 1, dtype=np.int32)
            np.cumsum(lengths, out=offsets[1:])
            table = pa.table({
                "user_id": pa.array(buf["user_id"], pa.string()),
                "dataset": pa.array(buf["dataset"], pa.string()),
                "window": pa.array(buf["window"], pa.int32()),
                "items": pa.ListArray.from_arrays(pa.array(offsets), pa.array(np.concatenate(buf["items"]))),
            })
            self.writers[split].write_table(table)
            for values in buf.values():
                values.clear()

    def close(self):
        for split in SPLITS:
            self.flush(split)
            self.writers[split].finalize()


def add_dataset(name: str, folder: Path, offset: int, cfg: DataConfig, items_writer: pq.ParquetWriter,
                splits: SplitWriter) -> dict:
    """Append one prepared dataset to the corpus; returns its counts."""
    items = pq.read_table(folder / "items.parquet", columns=["item_id", "text"])
    items = items.cast(pa.schema([("item_id", pa.string()), ("text", pa.string())]))
    n_items = items.num_rows
    items_writer.write_table(pa.table({
        "item_index": pa.array(np.arange(offset, offset + n_items, dtype=np.int32)),
        "item_id": pc.binary_join_element_wise(pa.scalar(name), items.column("item_id"), ":"),
        "dataset": pa.array([name] * n_items, pa.string()),
        "text": items.column("text"),
    }, schema=ITEMS_SCHEMA))
    counts = {"items": n_items, "users": 0, "users_windowed": 0, "short_sequences_dropped": 0,
              "short_sequence_items_dropped": 0}
    counts.update({f"{s}_{k}": 0 for s in SPLITS for k in ("users", "sequences", "interactions")})
    item_ids = items.column("item_id").combine_chunks()
    for user, local in user_runs(folder / "interactions.parquet", item_ids):
        user_id = f"{name}:{user}"
        split = "heldout" if is_heldout(user_id, cfg.heldout_users, cfg.seed) else "train"
        counts["users"] += 1
        counts[f"{split}_users"] += 1
        spans = windows(len(local), cfg.max_items)
        counts["users_windowed"] += len(spans) > 1
        global_items = local + np.int32(offset)
        for w, (start, end) in enumerate(spans):
            if end - start < cfg.min_items:
                counts["short_sequences_dropped"] += 1
                counts["short_sequence_items_dropped"] += end - start
                continue
            splits.add(split, user_id, name, w, global_items[start:end])
            counts[f"{split}_sequences"] += 1
            counts[f"{split}_interactions"] += end - start
    return counts


def build_corpus(data_cfg: DataConfig, out_dir: Optional[PathLike] = None) -> Path:
    """Merge `data_cfg.datasets` (prepared on demand from data.raw_root) into `data_cfg.corpus_dir`.

    Written to a temporary folder beside the target and moved into place at the end, so a reader never sees
    half a corpus. Returns the corpus folder.
    """
    from datasets import Dataset, DatasetDict

    out = Path(out_dir or data_cfg.corpus_dir)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "_arrow").mkdir(parents=True)
    start = time.time()
    entries, per_dataset, offset = [], {}, 0
    splits = SplitWriter(tmp / "_arrow")
    with pq.ParquetWriter(tmp / "items.parquet", ITEMS_SCHEMA) as items_writer:
        for name in data_cfg.datasets:
            folder = prepared_folder(name, data_cfg)
            counts = add_dataset(name, folder, offset, data_cfg, items_writer, splits)
            entries.append({"name": name, "prepared_dir": str(folder), "manifest_sha256": sha256_json(read_manifest(folder)),
                            "item_offset": offset, "items": counts["items"]})
            per_dataset[name] = counts
            offset += counts["items"]
            print0(f"corpus: {name}: {counts['users']} users, {counts['items']} items")
    splits.close()
    if offset >= 2 ** 31:
        raise DataFormatError(out, f"{offset} items do not fit int32 item indices")
    sequences = DatasetDict({s: Dataset.from_file(str(p)) for s, p in splits.paths.items()})
    sequences.save_to_disk(str(tmp / "sequences"), num_shards={s: 1 for s in SPLITS})  # 1 shard: an empty split loads
    del sequences
    shutil.rmtree(tmp / "_arrow")
    totals = {s: {k: sum(c[f"{s}_{k}"] for c in per_dataset.values()) for k in ("users", "sequences", "interactions")}
              for s in SPLITS}
    manifest = {
        "kind": "corpus",
        "datasets": entries,
        "counts": {"items": offset, "splits": totals, "per_dataset": per_dataset,
                   "short_sequences_dropped": sum(c["short_sequences_dropped"] for c in per_dataset.values())},
        "config": config_to_dict(data_cfg),
    }
    write_manifest(tmp, manifest)
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    print0(f"corpus: {offset} items, {totals} in {time.time() - start:.1f}s -> {out}")
    return out


def load_corpus(path: PathLike) -> Corpus:
    """Open a corpus folder; sequences are memory-mapped (load_from_disk), items read into a DataFrame."""
    from datasets import load_from_disk

    folder = require_files(path, ["items.parquet", "sequences", "manifest.json"], "corpus")
    manifest = read_manifest(folder)
    return Corpus(items=pd.read_parquet(folder / "items.parquet"), sequences=load_from_disk(str(folder / "sequences")),
                  manifest=manifest, hash=sha256_json(manifest), path=folder)
