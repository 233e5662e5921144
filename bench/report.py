"""Benchmark tables for the docs: `write_table(name, markdown)` writes docs/benchmarks/<name>.md with the exact
command line and the commit it ran at, and rewrites docs/benchmarks/index.md, so that a published table is never
edited by hand (docs/benchmarks.md). `RECGPT_BENCH_DOCS=<folder>` writes elsewhere, `RECGPT_BENCH_DOCS=off` not
at all.

    from report import write_table          # bench scripts run as `python bench/<script>.py`
    write_table("zero_shot/steam-recipe", table)
"""
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

REPO = Path(__file__).resolve().parents[1]
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*(/[A-Za-z0-9][A-Za-z0-9_.+-]*)*$")
MARK = "<!-- written by bench/report.py: do not edit by hand; rerun the command to change it -->"
INDEX = "index.md"


def docs_dir() -> Optional[Path]:
    """Where tables go: $RECGPT_BENCH_DOCS, else docs/benchmarks/ of this checkout; None when it is `off`."""
    value = os.environ.get("RECGPT_BENCH_DOCS", "")
    if value.lower() == "off":
        return None
    return Path(value) if value else REPO / "docs" / "benchmarks"


def command_line(argv: Optional[Sequence[str]] = None) -> str:
    """`python bench/<script>.py ARGS` as it was run (the script's path relative to the checkout)."""
    argv = list(sys.argv if argv is None else argv)
    script = Path(argv[0]).resolve() if argv else Path("?")
    try:
        script = script.relative_to(REPO)
    except ValueError:
        pass
    return "python " + shlex.join([str(script), *map(str, argv[1:])])


def _git(*args: str) -> Optional[str]:
    try:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def commit() -> str:
    """`git rev-parse HEAD`, marked when tracked files outside docs/benchmarks/ have uncommitted changes."""
    head = _git("rev-parse", "HEAD")
    if head is None:
        return "unknown (not a git checkout)"
    dirty = _git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)docs/benchmarks")
    return head + (" (with uncommitted changes)" if dirty else "")


def header(argv: Optional[Sequence[str]] = None) -> str:
    """The lines a bench table starts with, here or in a report file a script writes itself: the command as run,
    the commit (marked when uncommitted), the time."""
    return (f"command: `{command_line(argv)}`  \ncommit: {commit()}  \n"
            f"written: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")


def write_table(name: str, markdown: str, argv: Optional[Sequence[str]] = None) -> Optional[Path]:
    """Write `markdown` to <docs>/<name>.md under the command and the commit; returns the path (None when off)."""
    if not NAME.match(name) or name.endswith(".md") or Path(name).name == Path(INDEX).stem:
        raise ValueError(f"write_table: bad table name {name!r} (letters, digits, _.+- and '/' between parts)")
    root = docs_dir()
    if root is None:
        return None
    path = root / f"{name}.md"
    text = f"{MARK}\n# {name}\n\n{header(argv)}\n{markdown.strip()}\n"
    _replace(path, text)
    write_index(root)
    print(f"table written: {path}", flush=True)
    return path


def write_index(root: Path) -> Path:
    """<root>/index.md: one line per table file (its name, command and commit), rebuilt from the files."""
    index = root / INDEX
    _replace(index, index_text(root))
    return index


def index_text(root: Path) -> str:
    lines = [MARK, "# Benchmark tables", "", "Written by the bench scripts through `bench/report.py`; "
             "older measurements, moved from the README, are in [../benchmarks.md](../benchmarks.md).", ""]
    for path in sorted(p for p in root.rglob("*.md") if p.name != INDEX):
        text = path.read_text()
        if not text.startswith(MARK):
            continue  # not written here: listed by whoever wrote it
        command = re.search(r"^command: `(.*)`", text, re.M)
        sha = re.search(r"^commit: (\S+)", text, re.M)
        rel = path.relative_to(root).as_posix()
        lines.append(f"- [{rel[:-3]}]({rel}): `{command.group(1) if command else '?'}` "
                     f"at {sha.group(1)[:12] if sha else '?'}")
    return "\n".join(lines) + "\n"


def _replace(path: Path, text: str) -> None:
    """Atomic write; a file that exists and was not written here is refused, never overwritten."""
    if path.exists() and not (path.is_file() and path.read_text().startswith(MARK)):
        raise FileExistsError(f"write_table: {path} exists and was not written by bench/report.py; move it away")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    tmp.replace(path)
