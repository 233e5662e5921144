"""Small shared I/O helpers: manifests, content hashes, checked safetensors and JSON reads.

Every stage writes a `manifest.json` (inputs and their hashes, counts, config) so the next stage can check
it was given what it expects. Artifacts are safetensors / parquet / json only: nothing here unpickles.
"""
import hashlib
import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Union

PathLike = Union[str, Path]


class ArtifactError(RuntimeError):
    """An artifact (file or folder written by a recgpt stage or given by the user) is missing or unreadable."""


def sha256_file(path: PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_json(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def write_json(path: PathLike, obj: Any) -> None:
    """Write atomically (temp file + rename) so a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")
    os.replace(tmp, path)


def read_json(path: PathLike) -> Any:
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"missing file: {path}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ArtifactError(f"{path}: not valid JSON (line {e.lineno}, column {e.colno}): {e.msg}") from None


def write_manifest(folder: PathLike, manifest: dict) -> str:
    """Write `<folder>/manifest.json`; returns its content hash (what later stages record and check)."""
    write_json(Path(folder) / "manifest.json", manifest)
    return sha256_json(manifest)


def read_manifest(folder: PathLike) -> dict:
    return read_json(Path(folder) / "manifest.json")


def manifest_hash(folder: PathLike) -> str:
    return sha256_json(read_manifest(folder))


def require_files(folder: PathLike, names: list[str], what: str) -> Path:
    """Check a folder artifact is whole before reading it; names every missing piece."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ArtifactError(f"{what} not found: {folder} is not a folder")
    missing = [n for n in names if not (folder / n).exists()]
    if missing:
        raise ArtifactError(f"{what} at {folder} is incomplete: missing {', '.join(missing)}")
    return folder


def load_safetensors(path: PathLike) -> tuple[dict, dict]:
    """(tensors, metadata) from a safetensors file, with a clear error for a missing/corrupt/truncated file."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"missing file: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise ArtifactError(f"{path}: not a readable safetensors file (corrupt or truncated?): {e}") from None


_NUMPY_DTYPES = {"F16": "float16", "F32": "float32", "BF16": None, "F64": "float64", "I64": "int64", "I32": "int32"}


def mmap_safetensors(path: PathLike, name: str):
    """(one tensor of a safetensors file as a read-only numpy memmap: nothing is read until rows are indexed,
    the file's metadata); a clear error for a missing, corrupt or truncated file."""
    import numpy as np

    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"missing file: {path}")
    try:
        with open(path, "rb") as f:
            size = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(size)) if 0 < size < (1 << 27) else None
        entry = header.get(name) if isinstance(header, dict) else None
        dtype = _NUMPY_DTYPES.get(entry["dtype"]) if isinstance(entry, dict) else None
        begin, end = entry["data_offsets"]
        shape = tuple(int(d) for d in entry["shape"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ArtifactError(f"{path}: not a readable safetensors file (corrupt or truncated?): {e}") from None
    if dtype is None:
        raise ArtifactError(f"{path}: no tensor {name!r} of a numpy dtype")
    itemsize = np.dtype(dtype).itemsize
    if end - begin != itemsize * int(np.prod(shape)) or 8 + size + end > path.stat().st_size:
        raise ArtifactError(f"{path}: tensor {name!r} {shape} does not fit the file (corrupt or truncated?)")
    meta = dict(header.get("__metadata__") or {})
    if not shape or 0 in shape:
        return np.zeros(shape, dtype), meta
    return np.memmap(path, dtype=dtype, mode="r", offset=8 + size + begin, shape=shape), meta


def release_pages(array) -> None:
    """Drop the pages a numpy memmap has read from this process's resident set: they stay in the page cache
    (a later read is cheap) but no longer count as the process's memory. No-op for anything else."""
    import mmap

    handle = getattr(array, "_mmap", None)
    if isinstance(handle, mmap.mmap) and hasattr(mmap, "MADV_DONTNEED"):
        handle.madvise(mmap.MADV_DONTNEED)


# ---------------------------------------------------------------- safe outputs
def manifest_kind(folder: PathLike) -> Optional[str]:
    """The `kind` (or `stage`) a recgpt manifest gives its folder; None for anything else."""
    path = Path(folder) / "manifest.json"
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return (manifest.get("kind") or manifest.get("stage")) if isinstance(manifest, dict) else None


def check_replaceable(folder: PathLike, what: str, key: str, ours: Callable[[Path], bool]) -> None:
    """Refuse to write over a path recgpt did not write: a file, or a folder that is neither empty nor
    recognisably a recgpt `what` (`ours(folder)`). Names the path and the config key to change."""
    folder = Path(folder)
    if not folder.exists() and not folder.is_symlink():
        return
    if not folder.is_dir():
        raise ArtifactError(f"{folder} ({key}) is a file, not a {what} folder: refusing to overwrite it")
    if any(folder.iterdir()) and not ours(folder):
        raise ArtifactError(f"{folder} ({key}) already holds files and is not a recgpt {what} (its manifest.json "
                            f"does not say so): refusing to overwrite it; choose another {key} or empty it")


def is_kind(*kinds: str) -> Callable[[Path], bool]:
    return lambda folder: manifest_kind(folder) in kinds


def swap_in(tmp: Path, out: Path, carry_over: bool = True) -> Path:
    """Move the finished folder `tmp` to `out`. With `carry_over`, what `out` held that the new build did not
    write (another stage's output, e.g. `<corpus>/embeddings`) is kept; the rest of the old folder is removed
    only after the new one is in place."""
    tmp, out = Path(tmp), Path(out)
    if out.is_dir():
        for entry in out.iterdir() if carry_over else ():
            if not (tmp / entry.name).exists() and not entry.name.endswith(".tmp"):
                os.replace(entry, tmp / entry.name)
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, out)
    return out


@contextmanager
def staged_folder(out: PathLike, what: str, key: str, ours: Callable[[Path], bool],
                  carry_over: bool = True) -> Iterator[Path]:
    """Build an output folder in a temporary sibling and swap it in at the end (see swap_in); a failure or a
    refusal leaves `out` as it was. `carry_over=False` for a folder no other stage writes into."""
    out = Path(out)
    check_replaceable(out, what, key, ours)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        swap_in(tmp, out, carry_over)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # after a failure; a success has moved it already
