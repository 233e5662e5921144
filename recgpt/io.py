"""Small shared I/O helpers: manifests, content hashes, checked safetensors and JSON reads.

Every stage writes a `manifest.json` (inputs and their hashes, counts, config) so the next stage can check
it was given what it expects. Artifacts are safetensors / parquet / json only: nothing here unpickles.
"""
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Union

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
