"""Embedding cache keyed by (model, sha256 of text): safetensors shards that carry their own keys, never pickles.

Layout of one model's cache folder (format 2): `index.json` = {"model": ..., "format": 2, "shards": [file, ...]}
and `shard-NNNNN.safetensors` with tensors `embeddings` fp16 [n, D] and `shas` uint8 [n, 32] (the raw sha256
digests of the n texts, row for row). Adding a shard rewrites only the short list of shards.
A shard is written before the index that points to it, each atomically, so an interrupted run leaves a
consistent cache and the next run embeds only what is missing. Writers hold `index.lock` (filelock) and re-read
the index under it, so several processes can fill one cache at once without losing or overwriting shards.

In memory a cache holds no per-text objects: the first 8 bytes of every digest as a sorted uint64 array with
int32 shard and row arrays (16 bytes a text), built from the shards' `shas` tensors alone (the embeddings are
not read). A prefix hit is confirmed against the full digest read back from its shard, so two texts sharing a
prefix are never confused. A text stored twice (two independent runs embedding it at once) counts once.
`missing(shas)` answers for all texts at once (sorted-needle binary search, then one read of `shas` per shard
touched); shards added after the lookup was built are merged into it at the next question, not at each `add`.
`get` reads each shard it needs once per call (nothing is kept: at 15 M texts the shards are gigabytes).

Format 1 (index.json with "rows": {text_sha: [shard, row]}, shards without `shas`) is converted when opened,
under the lock: each shard is rewritten with its keys (rows no key points to get the all-zero digest, which no
lookup returns), then the index; an interrupted conversion leaves a format-1 cache that is converted again.
"""
import hashlib
import os
import re
from pathlib import Path

import numpy as np
import torch
from filelock import FileLock
from safetensors.torch import save_file

from recgpt.io import ArtifactError, read_json, write_json

FORMAT = 2
KEYS, VECTORS = "shas", "embeddings"


def text_sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def model_cache_key(model_id: str, dtype: str) -> str:
    """Folder name of one (model, forward dtype) cache: readable prefix + hash of the full identity."""
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(model_id).name or model_id)[:60]
    return f"{readable}-{dtype}-{hashlib.sha256(f'{model_id}|{dtype}'.encode()).hexdigest()[:12]}"


def digests(shas: list[str], chunk: int = 1 << 16) -> np.ndarray:
    """Hex sha256 strings -> uint8 [n, 32] raw digests (one bytes.fromhex per chunk of them)."""
    out = np.empty((len(shas), 32), np.uint8)
    for start in range(0, len(shas), chunk):
        part = shas[start:start + chunk]
        joined = "".join(part)
        try:
            raw = bytes.fromhex(joined)
        except ValueError:
            raw = b""
        if len(raw) != 32 * len(part) or len(joined) != 64 * len(part):
            bad = next((s for s in part if len(s) != 64 or not all(c in "0123456789abcdefABCDEF" for c in s)),
                       part[0])
            raise ValueError(f"not a hex sha256 digest: {bad!r}")
        out[start:start + len(part)] = np.frombuffer(raw, np.uint8).reshape(len(part), 32)
    return out


def _by_shard(shard: np.ndarray):
    """(shard number, the indices of `shard` holding it) per distinct number: one sort, not a scan per shard."""
    order = np.argsort(shard, kind="stable")
    numbers, starts = np.unique(shard[order], return_index=True)
    return zip(numbers.tolist(), np.split(order, starts[1:]))


def _prefix(keys: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(keys[:, :8]).view(np.uint64).ravel()


def _read(path: Path, name: str) -> np.ndarray:
    """One tensor of a shard (the others are not read), as numpy; ArtifactError names the file. The `shas`
    tensor is checked to be uint8 [n, 32] with n the row count of `embeddings` (read from the header)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            names = set(f.keys())
            for need in (name, VECTORS):
                if need not in names:
                    raise ArtifactError(f"{path}: no tensor {need!r} (cache shard is corrupt or not recgpt's)")
            tensor = f.get_tensor(name).numpy()
            rows = f.get_slice(VECTORS).get_shape()[0]
    except ArtifactError:
        raise
    except (SafetensorError, OSError, ValueError, RuntimeError, TypeError) as e:
        raise ArtifactError(f"{path}: not a readable safetensors file (corrupt or truncated?): {e}") from None
    if name == KEYS and (tensor.dtype != np.uint8 or tensor.shape != (rows, 32)):
        raise ArtifactError(f"{path}: tensor {KEYS!r} is {tensor.dtype} {tuple(tensor.shape)}, not uint8 "
                            f"[{rows}, 32] (one digest per row of {VECTORS!r})")
    return tensor


class EmbeddingCache:
    def __init__(self, folder, model_id: str):
        self.folder = Path(folder)
        self.model_id = model_id
        self.index_path = self.folder / "index.json"
        self._lock = FileLock(str(self.folder / "index.lock"))
        self._reset()
        self.index = self._read_index()

    def _reset(self) -> None:
        self._prefix = np.zeros(0, np.uint64)  # sorted; _shard/_row alongside
        self._shard = np.zeros(0, np.int32)
        self._row = np.zeros(0, np.int32)
        self._folded = 0  # shards 0.._folded-1 are in the arrays
        self._fresh: dict[int, np.ndarray] = {}  # keys of shards written here, not folded yet

    def _read_index(self, locked: bool = False) -> dict:
        if not self.index_path.exists():
            return {"model": self.model_id, "format": FORMAT, "shards": []}
        index = read_json(self.index_path)
        if not isinstance(index, dict) or index.get("model") != self.model_id:
            found = index.get("model") if isinstance(index, dict) else None
            raise ArtifactError(f"{self.index_path}: cache of model {found!r}, not {self.model_id!r}")
        if not isinstance(index.get("shards"), list) or not all(isinstance(s, str) for s in index["shards"]):
            raise ArtifactError(f"{self.index_path}: 'shards' is not a list of file names")
        if "rows" in index:  # format 1: convert under the lock (another process may be converting it)
            if not locked:
                with self._lock:
                    return self._read_index(locked=True)
            return self._convert(index)
        if index.get("format") != FORMAT:
            raise ArtifactError(f"{self.index_path}: cache format {index.get('format')!r}, this recgpt reads "
                                f"{FORMAT} (and converts 1)")
        return index

    def _convert(self, index: dict) -> dict:
        """Format 1 -> 2: every shard rewritten with its `shas` (atomically), then the index."""
        rows = index["rows"]
        if not isinstance(rows, dict):
            raise ArtifactError(f"{self.index_path}: 'rows' is not an object of text sha -> [shard, row]")
        try:
            keys = digests(list(rows))
            where = np.array(list(rows.values()), dtype=np.int64).reshape(len(rows), 2)
        except (ValueError, TypeError) as e:
            raise ArtifactError(f"{self.index_path}: 'rows' holds a bad entry ({e})") from None
        for number, name in enumerate(index["shards"]):
            path = self.folder / name
            vectors = _read(path, VECTORS)
            at = np.flatnonzero(where[:, 0] == number)
            if len(at) and (where[at, 1].min() < 0 or where[at, 1].max() >= len(vectors)):
                raise ArtifactError(f"{self.index_path}: a row of {name} beyond its {len(vectors)} vectors")
            shard_keys = np.zeros((len(vectors), 32), np.uint8)
            shard_keys[where[at, 1]] = keys[at]
            self._save(path, vectors, shard_keys)
        if len(where) and (where[:, 0].min() < 0 or where[:, 0].max() >= len(index["shards"])):
            raise ArtifactError(f"{self.index_path}: a row points past the {len(index['shards'])} shards")
        index = {"model": self.model_id, "format": FORMAT, "shards": index["shards"]}
        write_json(self.index_path, index)
        return index

    def _save(self, path: Path, vectors: np.ndarray, keys: np.ndarray) -> None:
        tmp = path.with_name(path.name + ".tmp")
        tensors = {VECTORS: torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float16)),
                   KEYS: torch.from_numpy(np.array(keys, dtype=np.uint8))}  # keys: a writable copy
        save_file(tensors, str(tmp), metadata={"model": self.model_id})
        os.replace(tmp, path)

    # ---- lookup -------------------------------------------------------------------------------------------
    def _fold(self) -> None:
        """Bring the sorted arrays up to every shard the index lists (read their `shas`, merge, drop repeats)."""
        shards = self.index["shards"]
        if self._folded >= len(shards):
            return
        parts = []
        for number in range(self._folded, len(shards)):
            keys = self._fresh.pop(number, None)
            if keys is None:
                keys = _read(self.folder / shards[number], KEYS)
            rows = np.flatnonzero(keys.any(axis=1)).astype(np.int32)  # all-zero: a row no key pointed to
            parts.append((_prefix(keys[rows]), np.full(len(rows), number, np.int32), rows))
        prefix, shard, row = (np.concatenate(p) for p in zip(*parts))
        order = np.argsort(prefix, kind="stable")
        prefix, shard, row = prefix[order], shard[order], row[order]
        at = np.searchsorted(self._prefix, prefix, side="right")  # older entries first among equal prefixes
        self._prefix = np.insert(self._prefix, at, prefix)
        self._shard, self._row = np.insert(self._shard, at, shard), np.insert(self._row, at, row)
        self._folded = len(shards)
        self._drop_repeats()

    def _drop_repeats(self) -> None:
        """The same digest stored twice: keep its first entry. Only runs of equal prefixes are compared."""
        same = np.flatnonzero(self._prefix[1:] == self._prefix[:-1])
        if not len(same):
            return
        members = np.unique(np.concatenate([same, same + 1]))
        full = self._keys_at(members)
        _, first = np.unique(full.view(np.dtype((np.void, 32))).ravel(), return_index=True)
        drop = np.setdiff1d(members, members[first])
        if len(drop):
            keep = np.ones(len(self._prefix), bool)
            keep[drop] = False
            self._prefix, self._shard, self._row = self._prefix[keep], self._shard[keep], self._row[keep]

    def _keys_at(self, positions: np.ndarray, wanted: np.ndarray = None) -> np.ndarray:
        """Full digests of lookup entries, read from their shards (one read of `shas` per shard); with `wanted`
        ([len(positions), 32]): whether each entry's digest is the wanted one (compared shard by shard)."""
        out = np.empty((len(positions), 32), np.uint8) if wanted is None else np.empty(len(positions), bool)
        for number, at in _by_shard(self._shard[positions]):
            keys = _read(self.folder / self.index["shards"][number], KEYS)[self._row[positions[at]]]
            out[at] = keys if wanted is None else (keys == wanted[at]).all(axis=1)
        return out

    def _locate(self, keys: np.ndarray) -> np.ndarray:
        """Lookup position of each digest, -1 where not cached (prefix search, then full-digest compare)."""
        self._fold()
        found = np.full(len(keys), -1, np.int64)
        if not len(keys) or not len(self._prefix):
            return found
        prefix, n = _prefix(keys), len(self._prefix)
        order = np.argsort(prefix)  # sorted needles: a binary search walks memory in order (several x faster)
        lo = np.empty(len(keys), np.int64)
        lo[order] = np.searchsorted(self._prefix, prefix[order], side="left")
        query = np.flatnonzero(self._prefix[np.minimum(lo, n - 1)] == prefix)
        position = lo[query]
        more = query[self._prefix[np.minimum(position + 1, n - 1)] == prefix[query]]
        more = more[lo[more] + 1 < n]
        if len(more):  # rare: several entries share the prefix, one candidate per (text, entry)
            count = np.ones(len(keys), np.int64)
            count[more] = np.searchsorted(self._prefix, prefix[more], side="right") - lo[more]
            count[np.setdiff1d(np.arange(len(keys)), query)] = 0
            query = np.repeat(np.arange(len(keys)), count)
            position = lo[query] + np.arange(len(query)) - (np.cumsum(count) - count)[query]
        match = self._keys_at(position, keys[query])
        found[query[match]] = position[match]
        return found

    def missing(self, shas: list[str]) -> np.ndarray:
        """Indices (int64, ascending) of the `shas` not in the cache: one vectorised lookup for all of them."""
        return np.flatnonzero(self._locate(digests(shas)) < 0)

    def __contains__(self, sha: str) -> bool:
        return not len(self.missing([sha]))

    def __len__(self) -> int:
        self._fold()
        return len(self._prefix)

    def get(self, shas: list[str]) -> np.ndarray:
        """Rows for `shas` (all must be cached), in order, as float16 [len(shas), D]: one gather per shard."""
        if not shas:
            return np.zeros((0, 0), np.float16)
        found = self._locate(digests(shas))
        if (found < 0).any():
            raise KeyError(f"text sha {shas[int(np.flatnonzero(found < 0)[0])]} is not in the cache {self.folder}")
        shard, row = self._shard[found], self._row[found]
        out = None
        for number, at in _by_shard(shard):
            vectors = _read(self.folder / self.index["shards"][number], VECTORS)
            if out is None:
                out = np.empty((len(shas), vectors.shape[1]), np.float16)
            out[at] = vectors[row[at]]
        return out

    # ---- writing ------------------------------------------------------------------------------------------
    def add(self, shas: list[str], vectors: np.ndarray) -> None:
        """Write one new shard for these (sha, vector) pairs, then the index, under the cache's lock."""
        assert len(shas) == len(vectors)
        keys = digests(shas)
        self.folder.mkdir(parents=True, exist_ok=True)
        with self._lock:
            # Shards are append-only, so the index on disk extends ours: the numbers we hold stay valid.
            index = self._read_index(locked=True)
            if index["shards"][:self._folded] != self.index["shards"][:self._folded]:
                self._reset()  # the folder was emptied and refilled under us: build the lookup afresh
            self.index = index
            number = len(index["shards"])
            name = f"shard-{number:05d}.safetensors"
            self._save(self.folder / name, vectors, keys)
            index["shards"].append(name)
            self._fresh[number] = keys
            write_json(self.index_path, index)
