"""Rank-aware printing: only the main process speaks, unless asked."""
import os
import sys


def is_main_process() -> bool:
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0"))) == 0


def print0(*args, **kwargs) -> None:
    if is_main_process():
        kwargs.setdefault("flush", True)
        print(*args, **kwargs)


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)
