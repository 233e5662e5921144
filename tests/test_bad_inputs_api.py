"""Bad inputs through the Python API and the flows around an export (test_bad_inputs.py has the command rows).

The API refuses what the CLI refuses, with the same check (recgpt.predict.args) and the argument's name; an
export whose config.json does not match its weights is refused, naming the keys; `eval` does not export a
checkpoint copied in from another run; `predict` on a pretraining dataset says its targets were training data;
machine faults exit 2 with the path; `recgpt launch` keeps a refusal to its one line.
"""
import errno
import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fixtures_train import RUN_STEPS, TINY
from recgpt.cli import main

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def recommender(exported_model):
    from recgpt.predict import Recommender

    return Recommender.from_pretrained(exported_model)


@pytest.fixture(scope="module")
def histories(recommender, ml100k_histories):
    return [[recommender.catalog.item_ids[r] for r in h] for h in ml100k_histories[:4]]


@pytest.mark.parametrize("kwargs, message", [
    ({"temperature": 0.0, "strategy": "sample"}, r"temperature: must be a finite number > 0, got 0\.0"),
    ({"temperature": -1.0, "strategy": "sample"}, r"temperature: must be a finite number > 0"),
    ({"temperature": math.nan, "strategy": "sample"}, r"temperature: must be a finite number > 0, got nan"),
    ({"temperature": math.inf, "strategy": "rra"}, r"temperature: must be a finite number > 0, got inf"),
    ({"k": 0}, r"k: must be >= 1"),
    ({"k": -3}, r"k: must be >= 1 \(a whole number\), got -3"),
    ({"k": 2.5}, r"k: must be >= 1 \(a whole number\), got 2\.5"),
    ({"k": True}, r"k: must be >= 1 \(a whole number\), got True"),
    ({"horizon": 0, "strategy": "rra"}, r"horizon: must be >= 1"),
    ({"n_samples": 0, "strategy": "rra"}, r"n_samples: must be >= 1"),
    ({"n_samples": "8", "strategy": "rra"}, r"n_samples: must be >= 1 \(a whole number\), got '8'"),
    ({"on_empty": "ignore"}, r"on_empty: one of \('error', 'skip'\), got 'ignore'"),
    ({"strategy": "top"}, r"strategy: one of \('exact', .*got 'top'"),
    ({"allow_history": "no"}, r"allow_history: must be True or False"),
])
def test_recommend_refuses_nonsense(recommender, histories, kwargs, message):
    kwargs = {"k": 5, **kwargs}
    with pytest.raises(ValueError, match=message):
        recommender.recommend(histories, **kwargs)
    if "on_empty" not in kwargs:  # recommend_rows (catalog rows in) has no on_empty; it checks the rest the same way
        with pytest.raises(ValueError, match=message):
            recommender.recommend_rows([recommender.catalog.rows(h)[0] for h in histories], **kwargs)


@pytest.mark.parametrize("kwargs, message", [
    ({"k": -3}, r"k: must be >= 1 \(a whole number\), got -3"),
    ({"k": 0}, r"k: must be >= 1"),
    ({"method": "random"}, r"method: one of \('recency', 'popularity', 'content_knn'\), got 'random'"),
])
def test_baseline_refuses_nonsense(recommender, histories, kwargs, message):
    with pytest.raises(ValueError, match=message):
        recommender.baseline(histories, **{"method": "recency", "k": 5, **kwargs})


@pytest.mark.parametrize("kwargs, message", [({"last": 0}, r"predict.knn.last: must be >= 1"),
                                             ({"decay": 0.0}, r"predict.knn.decay: must be in \(0, 1\], got 0\.0")])
def test_content_knn_settings_refuse_nonsense(kwargs, message):
    from recgpt.config.predict import ContentKnnConfig

    with pytest.raises(ValueError, match=message):
        ContentKnnConfig(**kwargs)


def test_valid_arguments_still_work_and_short_lists_are_noted(recommender, histories):
    import numpy as np

    plain = recommender.recommend(histories, k=np.int64(5), allow_history=True)  # numpy ints are whole numbers too
    assert all(len(r) == 5 for r in plain.item_ids) and plain.notes == []
    assert all(len(r) == 3 for r in recommender.baseline(histories, method="popularity", k=3).item_ids)
    # rra with horizon 2 x 2 samples holds at most 4 distinct items: the API says so, as the CLI's report does
    short = recommender.recommend(histories, k=20, horizon=2, strategy="rra", n_samples=2, allow_history=True)
    assert max(len(r) for r in short.item_ids) <= 4
    assert len(short.notes) == 1 and re.match(r"4 of 4 model lists hold fewer than 20 items \(shortest [1-4]; "
                                              r"strategy rra\)", short.notes[0]), short.notes


@pytest.mark.parametrize("layers, kind", [(2, "missing"), (-1, "unexpected")])
def test_an_export_whose_config_does_not_match_its_weights_is_refused(exported_model, tmp_path, layers, kind,
                                                                      capfd):
    from recgpt.io import ArtifactError
    from recgpt.predict import Recommender

    best = tmp_path / "best"
    shutil.copytree(exported_model, best)
    config = json.loads((best / "config.json").read_text())
    (best / "config.json").write_text(json.dumps({**config, "model": {**config["model"], "n_layers": config["model"]["n_layers"] + layers}}))
    block = config["model"]["n_layers"] if layers > 0 else config["model"]["n_layers"] - 1
    with pytest.raises(ArtifactError, match=rf"does not match .*config\.json: \d+ {kind} keys \(blocks\.{block}\."):
        Recommender.from_pretrained(best)
    assert "LOAD REPORT" not in capfd.readouterr().err  # our one line, not transformers' table


def test_machine_faults_exit_2_with_the_path_and_bugs_exit_1(tmp_path, capsys):
    from recgpt.errors import run_command
    from recgpt.io import writing

    def full_disk(argv):
        with writing(tmp_path / "out"):
            raise OSError(errno.ENOSPC, "No space left on device")  # what write() raises: no file name
    assert run_command("prepare", full_disk, []) == 2
    assert re.fullmatch(rf"recgpt prepare: {re.escape(str(tmp_path / 'out'))}: No space left on device \[ENOSPC\]; "
                        r"free space .*\n", capsys.readouterr().err)

    def no_name(argv):
        raise OSError(errno.EROFS, "Read-only file system")
    assert run_command("eval", no_name, []) == 2
    assert "(no path given by the system): Read-only file system [EROFS]" in capsys.readouterr().err

    def bug(argv):
        raise OSError("a bug: no errno, no path")
    assert run_command("eval", bug, []) == 1
    assert "unexpected OSError" in capsys.readouterr().err


def tree_hashes(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def evaluated_run(tiny_run, tiny_train_cfg, tmp_path_factory):
    """A copy of the session's tiny run (pretrained on ml-100k and lastfm) with a checkpoint of another width
    copied in as its newest step, after `recgpt eval --ckpt <run>`: (run, foreign step, eval's exit code)."""
    from recgpt.io import write_json
    from recgpt.train import checkpoint as ckpt

    root = tmp_path_factory.mktemp("evaluated")
    run = root / "tiny"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("best", "selection.json"))
    foreign = ckpt.step_dir(run, RUN_STEPS + 12)
    shutil.copytree(ckpt.step_dir(run, RUN_STEPS), foreign)
    meta = ckpt.read_meta(foreign)
    meta["config"]["model"]["d_model"] = 96  # what another run's meta says (its weights are another width)
    write_json(foreign / ckpt.META, {**meta, "step": RUN_STEPS + 12, "model_config": {**meta["model_config"],
                                                                                       "d_model": 96}})
    before = tree_hashes(foreign)
    rc = main(["eval", "--ckpt", str(run), *tiny_train_cfg.overrides(root)])
    assert tree_hashes(foreign) == before
    return run, foreign, rc


def test_eval_does_not_export_another_runs_checkpoint(evaluated_run, capsys):
    run, foreign, rc = evaluated_run
    selection = json.loads((run / "selection.json").read_text())
    assert rc == 0 and selection["best"] != foreign.name
    entry = selection["checkpoints"][foreign.name]
    assert entry["status"] == "skipped" and re.search(r"not a checkpoint of this run: .*model\.d_model: 96 -> 64",
                                                      entry["reason"]), entry
    source = json.loads((run / "best" / "source.json").read_text())
    assert Path(source["checkpoint"]).name == selection["best"] and source["pretrained_on"] == ["ml-100k", "lastfm"]


def test_predict_on_a_pretraining_dataset_says_its_targets_were_training_data(evaluated_run, prepared_dir,
                                                                            embed_config, tmp_path):
    run, _, _ = evaluated_run
    out = tmp_path / "out"
    assert main(["predict", "--dataset", str(prepared_dir("ml-100k")), f"predict.model_dir={run / 'best'}",
                 "predict.max_users=20", f"predict.output_dir={out}", f"embed.cache_dir={embed_config.cache_dir}"]) == 0
    notes = json.loads((out / "metrics.json").read_text())["notes"]
    assert any(re.match(r"ml-100k is one of the datasets the model was pretrained on .*its test targets were "
                        r"training data; this is not a zero-shot result", n) for n in notes), notes
    assert "not a zero-shot result" in (out / "metrics.md").read_text()


def launch(args, cwd):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1"}
    return subprocess.run([sys.executable, "-m", "recgpt.cli", "launch", *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=300)


def test_recgpt_launch_keeps_a_refusal_to_its_one_line(tmp_path):
    missing = tmp_path / "missing.yaml"
    proc = launch(["--cpu", "--num_processes", "1", str(REPO / "launch" / "pretrain.py"), "--config", str(missing)],
                  tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == f"error: config file not found: {missing}"
    proc = launch(["--config_file", str(missing), str(REPO / "launch" / "pretrain.py"), "--config", str(TINY)],
                  tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert re.fullmatch(rf"recgpt launch: The passed configuration file `{re.escape(str(missing))}` does not "
                        r"exist\..*", proc.stderr.strip()), proc.stderr
    assert not list(tmp_path.iterdir())  # nothing written
