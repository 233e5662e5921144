"""Epoch checkpoints of the shared baseline loop on real ml-100k: a fit killed after an epoch and run again
continues from that epoch and ends in exactly the state of an uninterrupted fit."""
import pytest
import torch

from recgpt.baselines import get_model
from recgpt.config import BaselineConfig
from fixtures_train import Killed

SMALL = dict(name="sasrec", epochs=3, patience=5, max_valid_users=100, lr=3e-3, batch_size=128, d_model=16,
             n_layers=1, max_len=20, dropout=0.1, threads=1)


@pytest.fixture(scope="module")
def loo_split(prepared_dir):
    from recgpt.baselines.data import build_split
    from recgpt.data import load_prepared

    return build_split(load_prepared(prepared_dir("ml-100k")).interactions, "ml-100k", "loo")


def fit(split, resume_dir, cfg=None):
    model = get_model("sasrec")(cfg or BaselineConfig(**SMALL), split.n_items)
    model.resume_dir = resume_dir
    return model.fit(split)


def test_killed_fit_resumes_to_the_uninterrupted_state(loo_split, tmp_path, monkeypatch, kill_at_call):
    import recgpt.baselines.training as training

    torch.set_num_threads(1)
    whole = fit(loo_split, None)
    real = kill_at_call(training, "validation_ndcg", 2)
    with pytest.raises(Killed):
        fit(loo_split, tmp_path / "resume")
    assert (tmp_path / "resume" / "progress.json").is_file()
    monkeypatch.setattr(training, "validation_ndcg", real)
    resumed = fit(loo_split, tmp_path / "resume")
    assert resumed.fit_log["resumed_after_epoch"] == 1
    assert [e["epoch"] for e in resumed.fit_log["epochs"]] == [1, 2, 3]
    assert resumed.fit_log["steps"] == whole.fit_log["steps"]
    for key, value in whole.net.state_dict().items():
        assert torch.equal(value, resumed.net.state_dict()[key]), key
    assert sorted(p.name for p in (tmp_path / "resume").iterdir()) == [
        "optimizers-3.pt", "progress.json", "step-3.safetensors"]


def test_checkpoint_of_another_config_is_not_resumed(loo_split, tmp_path, capsys):
    fit(loo_split, tmp_path / "resume", BaselineConfig(**{**SMALL, "epochs": 1}))
    other = fit(loo_split, tmp_path / "resume", BaselineConfig(**{**SMALL, "epochs": 1, "lr": 1e-3}))
    assert other.fit_log["resumed_after_epoch"] is None
    assert "another training config" in capsys.readouterr().out


def test_cli_run_leaves_no_checkpoint_behind(tmp_path, prepared_dir):
    from recgpt.cli import main

    out = tmp_path / "report"
    overrides = [f"baseline.{k}={v}" for k, v in {**SMALL, "epochs": 1, "max_test_users": 50}.items() if k != "name"]
    assert main(["baseline", "sasrec", "--dataset", str(prepared_dir("ml-100k")), f"baseline.output_dir={out}",
                 *overrides]) == 0
    assert (out / "metrics.json").is_file() and not (out / "resume").exists()


def test_resume_folder_with_foreign_files_is_left_in_place(tmp_path):
    from recgpt.baselines.resume import remove_resume_folder

    folder = tmp_path / "resume"
    folder.mkdir()
    (folder / "progress.json").write_text('{"fingerprint": "x", "step": 1}')
    (folder / "notes.txt").write_text("a user's file")
    remove_resume_folder(folder)
    assert (folder / "notes.txt").is_file()
    (folder / "notes.txt").unlink()
    remove_resume_folder(folder)
    assert not folder.exists()
