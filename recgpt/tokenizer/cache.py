"""Embedding cache keyed by (model, sha256 of text): safetensors shards plus a JSON index, never pickles.

Layout of one model's cache folder: `index.json` = {"model": ..., "shards": [file, ...],
"rows": {text_sha: [shard_number, row]}} and `shard-NNNNN.safetensors` (tensor `embeddings` fp16 [n, D]).
A shard is written before the index that points to it, each atomically, so an interrupted run leaves a
consistent cache and the next run embeds only what is missing. Writers hold `index.lock` (filelock) and re-read
the index under it, so several processes can fill one cache at once without losing or overwriting shards.
"""
import hashlib
import os
import re
from pathlib import Path

import numpy as np
import torch
from filelock import FileLock
from safetensors.torch import save_file

from recgpt.io import ArtifactError, load_safetensors, read_json, write_json


def text_sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def model_cache_key(model_id: str, dtype: str) -> str:
    """Folder name of one (model, forward dtype) cache: readable prefix + hash of the full identity."""
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(model_id).name or model_id)[:60]
    return f"{readable}-{dtype}-{hashlib.sha256(f'{model_id}|{dtype}'.encode()).hexdigest()[:12]}"


class EmbeddingCache:
    def __init__(self, folder, model_id: str):
        self.folder = Path(folder)
        self.model_id = model_id
        self.index_path = self.folder / "index.json"
        self.index = self._read_index()
        self._shards: dict[int, torch.Tensor] = {}

    def _read_index(self) -> dict:
        if not self.index_path.exists():
            return {"model": self.model_id, "shards": [], "rows": {}}
        index = read_json(self.index_path)
        if index.get("model") != self.model_id:
            raise ArtifactError(f"{self.index_path}: cache of model {index.get('model')!r}, "
                                f"not {self.model_id!r}")
        return index

    def __contains__(self, sha: str) -> bool:
        return sha in self.index["rows"]

    def __len__(self) -> int:
        return len(self.index["rows"])

    def _shard(self, number: int) -> torch.Tensor:
        if number not in self._shards:
            path = self.folder / self.index["shards"][number]
            tensors, _ = load_safetensors(path)
            if "embeddings" not in tensors:
                raise ArtifactError(f"{path}: no tensor 'embeddings' (cache shard is corrupt)")
            self._shards[number] = tensors["embeddings"]
        return self._shards[number]

    def get(self, shas: list[str]) -> np.ndarray:
        """Rows for `shas` (all must be cached), in order, as float16 [len(shas), D]: one gather per shard."""
        if not shas:
            return np.zeros((0, 0), np.float16)
        where = np.array([self.index["rows"][s] for s in shas], dtype=np.int64).reshape(-1, 2)
        out = None
        for number in np.unique(where[:, 0]):
            shard = self._shard(int(number)).numpy()
            if out is None:
                out = np.empty((len(shas), shard.shape[1]), np.float16)
            at = np.flatnonzero(where[:, 0] == number)
            out[at] = shard[where[at, 1]]
        return out

    def add(self, shas: list[str], vectors: np.ndarray) -> None:
        """Write one new shard for these (sha, vector) pairs, then the index, under the cache's lock."""
        assert len(shas) == len(vectors)
        self.folder.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.folder / "index.lock")):
            # Shards are append-only, so the index on disk extends ours: numbers we hold stay valid.
            self.index = self._read_index()
            self._write_shard(shas, vectors)

    def _write_shard(self, shas: list[str], vectors: np.ndarray) -> None:
        number = len(self.index["shards"])
        name = f"shard-{number:05d}.safetensors"
        tensor = torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float16))
        tmp = self.folder / (name + ".tmp")
        save_file({"embeddings": tensor}, str(tmp), metadata={"model": self.model_id})
        os.replace(tmp, self.folder / name)
        self.index["shards"].append(name)
        self._shards[number] = tensor
        for row, sha in enumerate(shas):
            self.index["rows"][sha] = [number, row]
        write_json(self.index_path, self.index)
