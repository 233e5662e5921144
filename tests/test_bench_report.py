"""bench/report.py: a bench table lands in docs/benchmarks/<name>.md with the exact command and the commit, the
index lists it, nothing written elsewhere is overwritten, and every bench script that prints a table calls it."""
import re
import subprocess
from pathlib import Path

import pytest

from bench import report

REPO = Path(__file__).resolve().parents[1]
TABLE = "| a | b |\n|---|---|\n| 1 | 2 |"


def test_a_table_is_written_with_its_command_and_commit(tmp_path, monkeypatch):
    monkeypatch.setenv("RECGPT_BENCH_DOCS", str(tmp_path))
    argv = [str(REPO / "bench" / "zero_shot.py"), "--domain", "steam", "--name", "my variant"]
    path = report.write_table("zero_shot/steam-recipe", TABLE, argv=argv)
    assert path == tmp_path / "zero_shot" / "steam-recipe.md"
    text = path.read_text()
    assert "command: `python bench/zero_shot.py --domain steam --name 'my variant'`" in text  # runnable as shown
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    assert re.search(rf"^commit: {head}", text, re.M)
    assert text.rstrip().endswith(TABLE)
    index = (tmp_path / "index.md").read_text()
    assert "[zero_shot/steam-recipe](zero_shot/steam-recipe.md)" in index and head[:12] in index
    report.write_table("zero_shot/steam-recipe", TABLE.replace("2", "3"), argv=argv)  # a rerun replaces its own file
    assert path.read_text().rstrip().endswith("| 1 | 3 |") and index.count("steam-recipe") == 2


def test_the_header_of_report_files_a_script_writes_itself():
    """bench/scaling.py, bench/balance.py and bench/text_alignment.py write the file --report names, under the same
    command and commit lines as write_table."""
    text = report.header(["bench/balance.py", "--domains", "a b"])
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    assert text.startswith("command: `python bench/balance.py --domains 'a b'`") and f"commit: {head}" in text
    assert re.search(r"^written: \d{4}-\d\d-\d\d \d\d:\d\d UTC$", text, re.M)
    for script in ("scaling.py", "scaling_report.py", "balance.py", "text_alignment.py"):
        assert "header(" in (REPO / "bench" / script).read_text(), script


def test_a_file_not_written_by_report_is_never_overwritten(tmp_path, monkeypatch):
    monkeypatch.setenv("RECGPT_BENCH_DOCS", str(tmp_path))
    mine = tmp_path / "notes.md"
    mine.write_text("my own notes\n")
    with pytest.raises(FileExistsError, match="notes.md"):
        report.write_table("notes", TABLE, argv=["bench/x.py"])
    assert mine.read_text() == "my own notes\n"
    report.write_table("other", TABLE, argv=["bench/x.py"])
    assert "notes" not in (tmp_path / "index.md").read_text()  # listed only if written here


def test_off_writes_nothing_and_bad_names_are_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("RECGPT_BENCH_DOCS", "off")
    assert report.write_table("zero_shot/x", TABLE) is None
    for bad in ("../escape", "/abs", "a//b", "index", "x.md", ""):
        with pytest.raises(ValueError, match="bad table name"):
            report.write_table(bad, TABLE)


def test_the_shipped_index_is_the_one_report_writes():
    shipped = REPO / "docs" / "benchmarks"
    assert (shipped / "index.md").read_text() == report.index_text(shipped)


@pytest.mark.parametrize("script", ["zero_shot", "in_domain", "behavior", "strategy_intervals",
                                    "in_domain_intervals", "tokenizers", "gpu_check"])
def test_every_bench_that_prints_a_table_writes_it(script):
    assert "write_table(" in (REPO / "bench" / f"{script}.py").read_text()
