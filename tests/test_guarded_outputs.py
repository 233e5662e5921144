"""The one guarded-output path (recgpt.io.guarded_output / staged_folder / claim_folder) through the real commands.

Each row of CASES builds, from real data, a folder a command must not write (a raw dataset, a user's files, a
tokenizer given as input, a folder another writer holds) and returns the command line; the command must exit 2
with one line matching the pattern, and the guarded folder must come out byte-identical (sha256 of every file).
"""
import importlib.util
import multiprocessing
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fixtures_train import RUN_STEPS, TINY
from recgpt.cli import main
from recgpt.errors import run_command
from recgpt.io import OutputLocked, claim_folder, clean_stale_temporaries, output_lock, staged_folder
from test_bad_inputs import Context, snapshot

REPO = Path(__file__).resolve().parents[1]
FORK = multiprocessing.get_context("fork")


def make_sample_main(argv) -> int:
    spec = importlib.util.spec_from_file_location("make_sample", REPO / "data_processing" / "make_sample.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return run_command("make_sample", module.main, argv)


def raw_copy(ctx) -> Path:
    """A copy of the three real datasets make_sample reads."""
    raw = ctx.tmp / "raw"
    for name in ("ml-100k", "amazon_scientific", "steam"):
        shutil.copytree(ctx.fixture("data_root") / name, raw / name)
    return raw


def hold_lock(folder: Path, ready, done) -> None:
    with output_lock(folder, "test"):
        ready.set()
        done.wait(60)


class Holder:
    """Another process holding `folder`'s lock for the duration of a case."""

    def __init__(self, folder: Path):
        self.ready, self.done = FORK.Event(), FORK.Event()
        self.process = FORK.Process(target=hold_lock, args=(folder, self.ready, self.done))
        self.process.start()
        assert self.ready.wait(30)
        self.pid = self.process.pid

    def stop(self):
        self.done.set()
        self.process.join(30)


# ---- rows: setup(ctx) -> (run, argv); `run` is recgpt.cli.main or another entry point
def make_sample_over_raw_root(ctx):
    raw = raw_copy(ctx)
    ctx.guarded = raw
    return make_sample_main, ["--out", str(raw), f"data.raw_root={raw}"]


def make_sample_into_dataset_folder(ctx):
    raw = raw_copy(ctx)
    ctx.guarded = raw
    return make_sample_main, ["--out", str(raw / "ml-100k"), f"data.raw_root={raw}"]


def make_sample_over_user_folder(ctx):
    raw = raw_copy(ctx)
    return make_sample_main, ["--out", str(ctx.user_folder()), f"data.raw_root={raw}"]


def prepare_into_raw_folder(ctx):
    args = ctx.raw_ml100k()
    ctx.guarded = ctx.tmp / "raw"
    return main, ["prepare", *args, f"data.prepared_root={ctx.tmp / 'raw'}"]


def baseline_args(ctx, out: Path) -> list:
    return ["baseline", "popularity", "--dataset", str(ctx.fixture("prepared_dir")("ml-100k")),
            f"baseline.output_dir={out}"]


def baseline_over_user_metrics(ctx):
    out = ctx.user_folder()
    (out / "metrics.json").write_text('{"mine": true}\n')
    return main, baseline_args(ctx, out)


def baseline_resume_with_user_notes(ctx):
    out = ctx.tmp / "base"
    (out / "resume").mkdir(parents=True)
    (out / "resume" / "my-notes.txt").write_text("do not delete\n")
    ctx.guarded = out
    return main, baseline_args(ctx, out)


def assign_into_tokenizer(ctx):
    tokenizer = ctx.tmp / "tokenizer"
    shutil.copytree(ctx.fixture("tiny_tokenizer"), tokenizer)
    ctx.guarded = tokenizer
    return main, ["tokenize", "assign", "--embeddings", str(tokenizer), f"tokenizer.output_dir={tokenizer}"]


def assign_into_user_folder(ctx):
    return main, ["tokenize", "assign", "--embeddings", str(ctx.user_folder()),
                  f"tokenizer.output_dir={ctx.fixture('tiny_tokenizer')}"]


def corpus_second_writer(ctx):
    args = ctx.raw_ml100k()
    assert main(["corpus", *args]) == 0
    ctx.guarded = ctx.tmp / "corpus"
    ctx.holder = Holder(ctx.tmp / "corpus")
    return main, ["corpus", *args, "data.heldout_users=0.5"]


def pretrain_second_writer(ctx):
    argv = ctx.run()
    ctx.holder = Holder(ctx.tmp / "ckpt" / "tiny")
    return main, [*argv, f"train.max_steps={RUN_STEPS + 2}"]


def pretrain_into_user_folder(ctx):
    ctx.user_folder("ckpt/tiny")
    return main, ["pretrain", "--config", str(TINY), *ctx.fixture("tiny_train_cfg").overrides(ctx.tmp / "ckpt")]


def pretrain_step_folder_with_user_file(ctx):
    argv = ctx.run()
    (ctx.step(RUN_STEPS) / "notes.txt").write_text("mine\n")
    return main, [*argv, f"train.max_steps={RUN_STEPS + 2}"]


CASES = [
    ("make_sample_over_raw_root", make_sample_over_raw_root, r"raw \(--out\) holds .*ml-100k, an input of this command"),
    ("make_sample_into_dataset_folder", make_sample_into_dataset_folder, r"ml-100k \(--out\) is .*ml-100k, an input"),
    ("make_sample_over_user_folder", make_sample_over_user_folder, r"mine \(--out\) already holds files and is not a recgpt data sample"),
    ("prepare_into_raw_folder", prepare_into_raw_folder, r"bad \(data\.prepared_root\) is .*raw/bad, an input of this command"),
    ("baseline_over_user_metrics", baseline_over_user_metrics, r"mine \(baseline\.output_dir\) already holds files and is not a recgpt baseline report"),
    ("baseline_resume_with_user_notes", baseline_resume_with_user_notes, r"base \(baseline\.output_dir\) already holds files and is not a recgpt baseline report"),
    ("assign_into_tokenizer", assign_into_tokenizer, r"tokenizer \(--embeddings\) is .*tokenizer, an input of this command"),
    ("assign_into_user_folder", assign_into_user_folder, r"mine \(--embeddings\) already holds files and is not a recgpt item embeddings"),
    ("corpus_second_writer", corpus_second_writer, r"corpus \(data\.corpus_dir\) is being written by another recgpt process \(pid PID"),
    ("pretrain_second_writer", pretrain_second_writer, r"tiny \(run\.name\) is being written by another recgpt process \(pid PID"),
    ("pretrain_into_user_folder", pretrain_into_user_folder, r"tiny \(run\.name\) already holds files and is not a recgpt run folder"),
    ("pretrain_step_folder_with_user_file", pretrain_step_folder_with_user_file, r"step-00000024 holds files no checkpoint writes \(notes\.txt\)"),
]


@pytest.mark.parametrize("case, setup, expected", CASES, ids=[c[0] for c in CASES])
def test_guarded_output_refuses(case, setup, expected, request, tmp_path, monkeypatch, capsys):
    ctx = Context(request, tmp_path, monkeypatch)
    ctx.holder = None
    run, argv = setup(ctx)
    before = snapshot(ctx.guarded)
    capsys.readouterr()
    try:
        rc = run(argv)
    finally:
        if ctx.holder:
            ctx.holder.stop()
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("warning:")]
    assert rc == 2 and len(lines) == 1 and "Traceback" not in err, err
    pattern = expected.replace("PID", str(ctx.holder.pid) if ctx.holder else "")
    assert re.search(pattern, lines[0]), lines[0]
    assert snapshot(ctx.guarded) == before, "the command changed a folder it should have left alone"
    assert not list(tmp_path.rglob(".*.tmp-*")), "a temporary was left behind"


def try_writer(folder: str, barrier, results) -> None:
    barrier.wait()
    try:
        with output_lock(Path(folder), "data.corpus_dir"):
            results.put(("proceeded", os.getpid()))
            time.sleep(1.0)  # still writing while the other one tries
    except OutputLocked as e:
        results.put(("refused", str(e)))


def test_two_writers_at_a_barrier_exactly_one_proceeds(tmp_path):
    barrier, results = FORK.Barrier(2), FORK.Queue()
    writers = [FORK.Process(target=try_writer, args=(str(tmp_path / "corpus"), barrier, results)) for _ in range(2)]
    for w in writers:
        w.start()
    outcomes = sorted(results.get(timeout=60) for _ in writers)
    for w in writers:
        w.join(30)
    assert [o[0] for o in outcomes] == ["proceeded", "refused"], outcomes
    assert f"(pid {outcomes[0][1]}," in outcomes[1][1] and "data.corpus_dir" in outcomes[1][1]


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_stale_temporaries_of_dead_processes_are_cleaned(tmp_path):
    out = tmp_path / "corpus"
    out.mkdir()
    (out / "manifest.json").write_text('{"kind": "corpus"}')
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        stale = [tmp_path / f".corpus.tmp-{dead_pid()}", tmp_path / f".corpus.old-{dead_pid()}"]
        running, other = tmp_path / f".corpus.tmp-{live.pid}", tmp_path / f".other.tmp-{dead_pid()}"
        for folder in (*stale, running, other):
            (folder / "sequences").mkdir(parents=True)
        with staged_folder(out, "corpus", "data.corpus_dir", lambda f: True) as tmp:
            (tmp / "manifest.json").write_text('{"kind": "corpus"}')
        assert not any(p.exists() for p in stale)
        assert running.is_dir() and other.is_dir()  # a live writer's and another output's are not ours to clean
    finally:
        live.kill()
        live.wait()
    # a swap killed between its two renames: the previous output comes back instead of being deleted
    shutil.rmtree(out)
    old = tmp_path / f".corpus.old-{dead_pid()}"
    old.mkdir()
    (old / "manifest.json").write_text('{"kind": "corpus"}')
    clean_stale_temporaries(out)
    assert (out / "manifest.json").is_file() and not old.exists()


def test_corpus_cleans_a_killed_prepare_s_temporary(request, tmp_path, monkeypatch):
    ctx = Context(request, tmp_path, monkeypatch)
    args = ctx.raw_ml100k()
    assert main(["prepare", *args]) == 0
    stale = tmp_path / "prep" / f".bad.tmp-{dead_pid()}"
    (stale / "sequences").mkdir(parents=True)
    before = snapshot(tmp_path / "prep" / "bad")
    assert main(["corpus", *args]) == 0  # the prepared folder is current: re-used as it is
    assert not stale.exists() and snapshot(tmp_path / "prep" / "bad") == before


def test_symlinked_output_folder_stays_a_link(request, tmp_path, monkeypatch):
    ctx = Context(request, tmp_path, monkeypatch)
    args = ctx.raw_ml100k()
    elsewhere, link = tmp_path / "disk2" / "corpus", tmp_path / "corpus"
    elsewhere.mkdir(parents=True)
    link.symlink_to(elsewhere)
    assert main(["corpus", *args]) == 0
    assert main(["corpus", *args, "data.heldout_users=0.5"]) == 0  # rebuilt where it points
    assert link.is_symlink() and (elsewhere / "manifest.json").is_file() and (elsewhere / "sequences").is_dir()


def test_baseline_keeps_user_files_and_resume_notes(prepared_dir, tmp_path, capsys):
    """A rerun over a baseline's own folder replaces its report, keeps a file the user added, and the resume
    checkpoints delete only their own earlier steps' files."""
    import torch

    from recgpt.baselines.resume import Checkpoint

    out = tmp_path / "base"
    argv = ["baseline", "popularity", "--dataset", str(prepared_dir("ml-100k")), f"baseline.output_dir={out}",
            "baseline.max_test_users=50"]
    assert main(argv) == 0
    (out / "notes.txt").write_text("mine\n")
    assert main(argv) == 0
    assert (out / "notes.txt").read_text() == "mine\n" and (out / "metrics.json").is_file()
    resume = tmp_path / "resume"
    resume.mkdir()
    (resume / "my-notes.txt").write_text("do not delete\n")
    ckpt = Checkpoint(resume, {"a": 1})
    for step in (1, 2):
        ckpt.save(step, {"m": {"w": torch.ones(2)}}, {}, {}, {}, {"epoch": step})
    assert sorted(p.name for p in resume.iterdir()) == ["my-notes.txt", "optimizers-2.pt", "progress.json",
                                                         "step-2.safetensors"]


def test_bench_output_folder_is_claimed(tmp_path):
    user = tmp_path / "mine"
    user.mkdir()
    (user / "results.json").write_text("{}")
    with pytest.raises(Exception, match=r"mine \(--out\) already holds files and is not a recgpt bench output"):
        with claim_folder(user, "bench output", "--out"):
            pass
    assert [p.name for p in user.iterdir()] == ["results.json"]
    with claim_folder(tmp_path / "bench", "bench output", "--out") as out:
        (out / "rules.json").write_text("{}")
    with claim_folder(tmp_path / "bench", "bench output", "--out"):  # its own folder, claimed before
        pass


def test_a_save_killed_mid_write_leaves_only_checkpoint_files(tmp_path):
    """safetensors writes through a `.tmp` + 6-character temporary: a kill mid-save leaves it in the step folder,
    which stays the run's own (replaced on resume), while any other file still makes it foreign."""
    from safetensors.torch import save_file

    from recgpt.train.checkpoint import check_step_folders, foreign_entries

    step = tmp_path / "run" / "step-00000007"
    step.mkdir(parents=True)
    save_file({"w": __import__("torch").zeros(2)}, str(step / "weights.safetensors"))
    (step / ".tmpeyfJJF").write_bytes(b"\0" * 16)  # the name the safetensors writer gives its temporary
    assert foreign_entries(step) == []
    check_step_folders(tmp_path / "run")
    (step / ".tmpnotes.txt").write_text("mine")
    assert foreign_entries(step) == [".tmpnotes.txt"]
