"""The README is a guide a new user can follow: under 15 KB, and every command, script, config and page it names
exists (`recgpt <subcommand>`, `launch/*.py`, `configs/*.yaml`, `bench/*.py`, accelerate YAMLs, docs pages),
every `recgpt <subcommand>` it names answers `--help`, and the dotted overrides it shows load."""
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from recgpt.baselines import NAMES
from recgpt.cli import COMMANDS

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
TEXT = README.read_text()
TOKENIZE = ("embed", "fit", "assign")
PLACEHOLDER = re.compile(r"[<>]|\bpath/to\b|\bshop\b|/shared/")


def code_spans() -> list[str]:
    """Inline `code` and the lines of fenced blocks."""
    blocks = re.findall(r"^```[a-z]*\n(.*?)^```", TEXT, re.M | re.S)
    prose = re.sub(r"^```[a-z]*\n.*?^```", "", TEXT, flags=re.M | re.S)
    return [line for block in blocks for line in block.splitlines()] + re.findall(r"`([^`\n]+)`", prose)


def recgpt_commands() -> list[list[str]]:
    """Each `recgpt <subcommand> [<sub-subcommand or name>]` the README shows, as argv after `recgpt`."""
    out = []
    for span in code_spans():
        for m in re.finditer(r"(?:^|[\s;(])recgpt ([a-z_]+)(?: ([a-z_0-9]+))?", span):
            out.append([m.group(1)] + ([m.group(2)] if m.group(2) else []))
    return out


def named_paths() -> set[str]:
    return set(re.findall(r"(?<![\w/.])((?:launch|configs|bench|docs|data|recgpt)/[\w./-]*\w)", TEXT))


def test_readme_is_a_guide_under_15_kb():
    assert len(README.read_bytes()) < 15_000
    for section in ("Install", "The two commands", "The pipeline", "Python API", "Bringing your own dataset",
                    "Several GPUs and several nodes", "Baselines", "Where results live"):
        assert re.search(rf"^## {section}", TEXT, re.M), section
    assert TEXT.count("\n|") < 60  # tables of measured figures live in docs/benchmarks.md


def test_every_recgpt_subcommand_named_exists():
    commands = recgpt_commands()
    assert len(commands) >= 10
    for argv in commands:
        assert argv[0] in COMMANDS, f"README names `recgpt {argv[0]}`, which does not exist"
        if argv[0] == "tokenize":
            assert argv[1:2] and argv[1] in TOKENIZE, f"README: `recgpt tokenize {' '.join(argv[1:])}`"
        if argv[0] == "baseline" and len(argv) > 1:
            assert argv[1] in NAMES, f"README names baseline {argv[1]!r}; known: {', '.join(NAMES)}"


def test_every_file_the_readme_names_exists():
    paths = named_paths()
    assert {"launch/pretrain.py", "configs/text_dense.yaml", "bench/scaling.py", "docs/benchmarks.md"} <= paths
    for path in sorted(paths):
        if PLACEHOLDER.search(path) or path.startswith("recgpt/config/recipes.py"):
            continue  # a placeholder, or the recipe registry (checked below once it exists)
        assert (REPO / path).exists(), f"README names {path}, which does not exist"
    for name in set(re.findall(r"`((?:multinode_)?[\w]+\.yaml)`", TEXT)) - {Path(p).name for p in paths}:
        assert (REPO / "launch" / "accelerate" / name).is_file(), f"README names {name}, not in launch/accelerate/"


def test_every_recgpt_subcommand_named_answers_help(capsys, monkeypatch):
    from recgpt.cli import main

    for argv in sorted({" ".join(a[:2] if a[0] == "tokenize" else a[:1]) for a in recgpt_commands()}):
        monkeypatch.setattr(sys, "argv", ["recgpt"])
        with pytest.raises(SystemExit) as done:  # argparse's --help
            main([*argv.split(), "--help"])
        out = capsys.readouterr().out
        assert done.value.code == 0 and out.startswith(f"usage: recgpt {argv} "), (argv, out[:300])


def test_the_console_script_module_answers_help():
    proc = subprocess.run([sys.executable, "-m", "recgpt.cli", "--help"], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and all(name in proc.stdout for name in COMMANDS), proc.stderr[-2000:]


def overrides_shown() -> list[list[str]]:
    """Groups of dotted overrides the README shows together (one command line or one inline span)."""
    groups = []
    for span in code_spans():
        words = shlex.split(span, comments=True) if span.count('"') % 2 == 0 else span.split()
        found = [w for w in words if re.match(r"^[a-z_]+(\.[a-z_]+)+=\S+$", w) and not PLACEHOLDER.search(w)]
        if found:
            groups.append(found)
    return groups


@pytest.mark.skipif(not (REPO / "recgpt" / "config" / "recipes.py").is_file(),
                    reason="the README describes the recipe registry (recgpt/config/recipes.py), not there yet")
def test_the_overrides_the_readme_shows_load():
    from recgpt.config import load_config

    groups = overrides_shown()
    assert any("model.recipe=code" in g for g in groups) and any("model.dense.pool=3" in g for g in groups)
    for group in groups:
        load_config(None, group)  # raises ConfigError naming the key
