"""`recgpt launch [accelerate launch options] launch/<stage>.py [stage arguments]`: `accelerate launch` with the
one-line error rule.

`accelerate launch` turns a stage's refusal (its one line, exit 2) into its own traceback
(CalledProcessError, or torch elastic's ChildFailedError report) and a bad `--config_file` into another;
this runs the same launcher with the same options, but exits with the stage's own code after its line, and
prints accelerate's own errors as one line (exit 2).

    recgpt launch --config_file launch/accelerate/ddp.yaml launch/pretrain.py --config configs/pretrain.yaml
"""
import subprocess
import sys


def failed_exit_code(error: BaseException) -> int:
    """The exit code of the (first) failed stage process behind a launcher exception."""
    if isinstance(error, subprocess.CalledProcessError):
        return error.returncode
    failures = getattr(error, "failures", None)  # torch elastic's ChildFailedError
    if failures:
        first = min(failures.values(), key=lambda f: f.timestamp)
        return first.exitcode if first.exitcode and first.exitcode > 0 else 1
    return 1


def main(argv=None) -> int:
    from accelerate.commands.launch import launch_command, launch_command_parser

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = launch_command_parser()
    parser.prog = "recgpt launch"  # --help and usage errors name this command
    args = parser.parse_args(argv)
    try:
        launch_command(args)
    except subprocess.CalledProcessError as e:  # the stage printed its own line
        return failed_exit_code(e)
    except (FileNotFoundError, ValueError) as e:  # accelerate's own checks: a missing --config_file, bad options
        print(f"recgpt launch: {' '.join(str(e).split())}", file=sys.stderr, flush=True)
        return 2
    except Exception as e:  # noqa: BLE001 - torch elastic's ChildFailedError: every rank printed its line
        if not getattr(e, "failures", None):
            raise
        return failed_exit_code(e)
    return 0


if __name__ == "__main__":
    sys.exit(main())
