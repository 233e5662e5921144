"""Small shared I/O helpers: manifests, content hashes, checked safetensors and JSON reads.

Every stage writes a `manifest.json` (inputs and their hashes, counts, config) so the next stage can check
it was given what it expects. Artifacts are safetensors / parquet / json only: nothing here unpickles.
"""
import hashlib
import json
import os
import re
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
    with writing(tmp):
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o666)  # not via a link
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")
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


# ---------------------------------------------------------------- guarded outputs
# Every command that writes goes through here: `guarded_output` (refusals before anything is written, one writer
# per folder, stale temporaries of dead processes cleaned) and `staged_folder` (build beside, swap in).
LOCK_SUFFIX = ".lock"
TEMPORARY = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|old)-(?P<pid>\d+)$")


class OutputLocked(ArtifactError):
    """Another process holds the lock of an output folder (one writer per folder)."""


def manifest_kind(folder: PathLike, name: str = "manifest.json") -> Optional[str]:
    """The `kind` (or `stage`) a recgpt manifest gives its folder; None for anything else."""
    path = Path(folder) / name
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return (manifest.get("kind") or manifest.get("stage")) if isinstance(manifest, dict) else None


def is_kind(*kinds: str) -> Callable[[Path], bool]:
    return lambda folder: manifest_kind(folder) in kinds


def output_target(out: PathLike, key: str = "output") -> Path:
    """The folder to write: `out` itself, or for a symlinked output folder the folder it points to (rebuilt in
    place there, so the link stays a link and the data stays on its filesystem)."""
    out = Path(out)
    if not out.is_symlink():
        return out
    target = Path(os.path.realpath(out))
    if not target.is_dir():
        raise ArtifactError(f"{out} ({key}) is a symlink to {target}, which is not a folder: refusing to write there")
    return target


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_not_input(out: PathLike, inputs, key: str, inside: bool = True) -> None:
    """Refuse an output folder that is, holds, or (with `inside`) lies inside one of the command's inputs (files
    or folders), as written or through symlinks."""
    for given in inputs:
        for resolve in (os.path.abspath, os.path.realpath):
            target, source = Path(resolve(out)), Path(resolve(given))
            if (inside and _inside(target, source)) or _inside(source, target):
                how = "is" if target == source else "holds" if _inside(source, target) else "lies inside"
                raise ArtifactError(f"{out} ({key}) {how} {given}, an input of this command: refusing to write into "
                                    f"its own inputs; choose another {key}")


def check_replaceable(folder: PathLike, what: str, key: str, ours: Callable[[Path], bool], inputs=()) -> None:
    """Refuse to write over a path recgpt did not write: a file, or a folder that is neither empty nor
    recognisably a recgpt `what` (`ours(folder)`), or one of the command's `inputs`. Names the path and the config
    key to change. Reads only: a refused folder is left byte-identical."""
    folder = Path(folder)
    check_not_input(folder, inputs, key, inside=False)
    if folder.exists() or folder.is_symlink():
        real = output_target(folder, key)
        if not real.is_dir():
            raise ArtifactError(f"{folder} ({key}) is a file, not a {what} folder: refusing to overwrite it")
        if any(real.iterdir()) and not ours(real):
            raise ArtifactError(f"{folder} ({key}) already holds files and is not a recgpt {what} (its manifest.json "
                                f"does not say so): refusing to overwrite it; choose another {key} or empty it")
    check_not_input(folder, inputs, key)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


_HELD: dict = {}  # (lock file, pid) -> depth: a process may re-enter the lock it holds (not a fork)


def _make_parents(folder: Path) -> list[Path]:
    """mkdir -p, returning the folders it created (deepest last) so that a refusal can remove them again."""
    created, parent = [], folder
    while not parent.exists():
        created.append(parent)
        parent = parent.parent
    folder.mkdir(parents=True, exist_ok=True)
    return created[::-1]


def _take_lock(name: str) -> Optional[int]:
    """flock the lock file `name` (created if needed), or None when another process holds it. The holder removes
    the file when it lets go, so a lock taken on a file that is no longer at `name` is retried on the new one."""
    import fcntl

    while True:
        fd = os.open(name, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        held = os.fstat(fd)
        try:
            now = os.stat(name, follow_symlinks=False)
        except FileNotFoundError:
            now = None
        if now is not None and (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino):
            return fd
        os.close(fd)  # the previous holder removed this file after we opened it


@contextmanager
def output_lock(folder: PathLike, key: str) -> Iterator[Path]:
    """One writer per output folder: a lock file beside it (`.<name>.lock`, holding the writer's pid), removed
    when the writer lets go (with the parent folders it had to create), so a refused command leaves nothing
    behind. A second process is refused at once with OutputLocked naming the holder's pid; the same process may
    re-enter. (filelock leaves its file on POSIX, hence flock here.)"""
    folder = Path(folder)
    created = _make_parents(folder.parent)
    path = folder.parent / f".{folder.name}{LOCK_SUFFIX}"
    name = os.path.realpath(path)
    if (name, os.getpid()) in _HELD:
        _HELD[name, os.getpid()] += 1
        try:
            yield path
        finally:
            _HELD[name, os.getpid()] -= 1
        return
    fd = _take_lock(name)
    if fd is None:
        try:
            holder = path.read_text().strip()
        except OSError:
            holder = ""
        who = f"pid {holder}" if holder.isdigit() else "pid unknown"
        raise OutputLocked(f"{folder} ({key}) is being written by another recgpt process ({who}, lock {path}): "
                           f"wait for it to finish or choose another {key}") from None
    _HELD[name, os.getpid()] = 1
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield path
    finally:
        del _HELD[name, os.getpid()]
        try:
            os.unlink(name)  # while still held: a waiter that opened it retries on a fresh file
        except FileNotFoundError:
            pass
        os.close(fd)
        for parent in reversed(created):  # folders made only to hold the lock, e.g. for a refused first run
            try:
                parent.rmdir()
            except OSError:
                break


def clean_stale_temporaries(out: PathLike) -> list[Path]:
    """Remove `.<name>.tmp-<pid>` / `.<name>.old-<pid>` siblings of `out` left by a process that died (its pid is
    gone); an `.old-` one is put back as `out` when a swap was killed between its two renames. Call with the lock."""
    out = Path(out)
    if not out.parent.is_dir():
        return []
    removed = []
    for entry in sorted(out.parent.iterdir()):
        match = TEMPORARY.match(entry.name)
        if not match or match["name"] != out.name or int(match["pid"]) == os.getpid() or pid_alive(int(match["pid"])):
            continue
        if match["kind"] == "old" and not out.exists() and not out.is_symlink() and entry.is_dir():
            os.replace(entry, out)
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


@contextmanager
def guarded_output(out: PathLike, what: str, key: str, ours: Callable[[Path], bool], inputs=()) -> Iterator[Path]:
    """Hold the output folder `out` for a command: refuse (before anything is written) a folder recgpt did not
    write or one of the command's inputs, take its lock (a second writer stops naming the holder's pid), check
    again under the lock, clean this folder's stale temporaries. Yields the folder to write (see output_target)."""
    check_replaceable(out, what, key, ours, inputs)
    real = output_target(out, key)
    with output_lock(real, key):
        check_replaceable(out, what, key, ours, inputs)
        clean_stale_temporaries(real)
        yield real


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
                  carry_over: bool = True, inputs=()) -> Iterator[Path]:
    """Build an output folder in a temporary sibling and swap it in at the end (see swap_in), holding the folder
    (guarded_output); a failure or a refusal leaves `out` as it was. `carry_over=False` for a folder no other
    stage writes into. A symlinked `out` is rebuilt where it points; the link is kept."""
    with guarded_output(out, what, key, ours, inputs) as real:
        tmp = real.with_name(f".{real.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            with writing(real):  # a full disk names the folder being written
                yield tmp
                swap_in(tmp, real, carry_over)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)  # after a failure; a success has moved it already


MARKER = ".recgpt-output.json"


@contextmanager
def claim_folder(out: PathLike, what: str, key: str, inputs=()) -> Iterator[Path]:
    """For a folder written in place (a bench's results): a context holding it (guarded_output) that accepts an
    empty or new folder, or one this command claimed before (`.recgpt-output.json`, `kind` = what), and marks it."""
    with guarded_output(out, what, key, lambda folder: manifest_kind(folder, MARKER) == what, inputs) as real:
        real.mkdir(parents=True, exist_ok=True)
        if not (real / MARKER).is_file():
            write_json(real / MARKER, {"kind": what})
        yield real


def claim_until_exit(out: PathLike, what: str = "bench output", key: str = "--out") -> Path:
    """claim_folder for the rest of a script's process (the bench scripts' --out folders)."""
    import atexit

    held = claim_folder(out, what, key)
    real = held.__enter__()
    atexit.register(held.__exit__, None, None, None)
    return real


@contextmanager
def writing(path):
    """An OSError raised while writing under `path` that names no file (a full disk fails in write(), which
    knows no name) is given `path`, so that the one line says where."""
    try:
        yield
    except OSError as e:
        if not e.filename:
            e.filename = str(path)
        raise
