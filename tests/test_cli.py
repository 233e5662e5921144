"""The `recgpt` console script dispatches to stage functions and rejects unknown commands."""
import subprocess
import sys

from recgpt.cli import COMMANDS, main


def test_help_lists_every_stage(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out


def test_unknown_command_is_an_error(capsys):
    assert main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err


def test_every_command_target_imports():
    import importlib

    for name, (target, _) in COMMANDS.items():
        module, func = target.split(":")
        assert callable(getattr(importlib.import_module(module), func)), name


def test_console_script_runs():
    result = subprocess.run([sys.executable, "-m", "recgpt.cli", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "pretrain" in result.stdout
