"""One line per failed command: `recgpt <stage>: <what is wrong, naming the file/line/key>`, exit non-zero:
2 for bad input (config, files, data) and for faults of the machine (disk full, read-only, permissions,
cross-device moves), naming the path; 1 only for a bug.

`--debug` on any command line, or RECGPT_DEBUG=1, shows the traceback instead.
"""
import errno
import os
import sys
from typing import Callable, Optional

DEBUG_FLAG = "--debug"
MAX_CHARS = 600  # a library error can run to pages (e.g. every mismatching tensor): the first part says enough


def debug_requested(argv) -> bool:
    return DEBUG_FLAG in argv or os.environ.get("RECGPT_DEBUG", "").lower() not in ("", "0", "false", "no")


def one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= MAX_CHARS else text[:MAX_CHARS] + " ..."


def user_errors() -> tuple:
    """Errors about the user's input (config, files, data): exit 2. Anything else is a bug: exit 1."""
    from recgpt.config.errors import ConfigError
    from recgpt.data.errors import DataFormatError
    from recgpt.io import ArtifactError

    return ConfigError, ArtifactError, DataFormatError


# What the machine did, not the code: exit 2 with the path. The hints say what to do about it.
ENVIRONMENT_HINTS = {
    errno.ENOSPC: "free space on that device or write elsewhere",
    errno.EDQUOT: "free space within your quota or write elsewhere",
    errno.EROFS: "the file system is read-only: write elsewhere",
    errno.EACCES: "check the permissions or write elsewhere",
    errno.EPERM: "check the permissions or write elsewhere",
    errno.EXDEV: "the two paths are on different file systems (a symlinked folder?): keep them on one",
    errno.ELOOP: "a symlink loop: fix the link",
}


def oserror_line(error: OSError) -> Optional[str]:
    """'<path>: <what> [ERRNO]; <hint>' for an OSError naming a path or a known environment fault; None for
    anything else (a bug)."""
    paths = [str(p) for p in (error.filename, error.filename2) if p not in (None, "")]
    if not paths and error.errno not in ENVIRONMENT_HINTS:
        return None
    name = errno.errorcode.get(error.errno, str(error.errno))
    where = " -> ".join(paths) if paths else "(no path given by the system)"
    hint = ENVIRONMENT_HINTS.get(error.errno)
    return f"{where}: {error.strerror or type(error).__name__} [{name}]" + (f"; {hint}" if hint else "")


def run_command(name: str, func: Callable, argv) -> int:
    """Call `func(argv)` (a stage's main) and turn any exception into one line on stderr."""
    argv = list(argv)
    debug = debug_requested(argv)
    argv = [a for a in argv if a != DEBUG_FLAG]
    try:
        return func(argv) or 0
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"recgpt {name}: interrupted", file=sys.stderr, flush=True)
        return 130
    except Exception as e:  # noqa: BLE001 - the last line of defence: no traceback unless asked
        if debug:
            raise
        if isinstance(e, user_errors()):
            print(f"recgpt {name}: {one_line(e)}", file=sys.stderr, flush=True)
            return 2
        if isinstance(e, OSError) and oserror_line(e):  # read-only, disk full, cross-device, no permission
            print(f"recgpt {name}: {oserror_line(e)}", file=sys.stderr, flush=True)
            return 2
        print(f"recgpt {name}: unexpected {type(e).__name__}: {one_line(e)} (rerun with {DEBUG_FLAG} or "
              "RECGPT_DEBUG=1 for the traceback)", file=sys.stderr, flush=True)
        return 1
