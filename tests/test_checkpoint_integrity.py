"""Checkpoint integrity: meta.json records the sha256 of every file, resume refuses changed bytes before anything is
unpickled, and unpickles only with weights_only=True (DeepSpeed's own files included). Each row plants a pickle
payload (unpickling it creates a marker file) or tampers with meta.json in a copy of the session's tiny run: the
payload never runs, the tampered checkpoint is named in one warning line and left byte-identical, and resume falls
back to the older checkpoint."""
import json
import re
import shutil
from pathlib import Path

import pytest
import torch

from fixtures_train import RUN_STEPS, SAVE_EVERY, TINY, ZERO2_STEPS, launch
from recgpt.cli import main
from recgpt.io import sha256_file
from recgpt.train import checkpoint as ckpt
from test_bad_inputs import snapshot

REPO = Path(__file__).resolve().parents[1]


class Payload:
    """Unpickled with full pickle, this opens (creates) `marker`: a stand-in for any code a pickle can run."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def plant(path: Path, marker: Path, rehash: bool) -> None:
    """Replace a checkpoint file by a live payload (checked live on a copy); with `rehash`, also rewrite meta.json
    so that its record matches (as a tamperer who edits meta.json would): then weights_only loading is the guard."""
    torch.save({"state": {}, "param_groups": [], "extra": Payload(marker)}, path)
    probe = path.with_name("probe.tmp")
    shutil.copy(path, probe)
    torch.load(probe, weights_only=False)  # the payload is live: full unpickling runs it
    assert marker.exists()
    marker.unlink()
    probe.unlink()
    if rehash:
        rewrite_meta(path.parent if path.parent.name.startswith("step-") else path.parent.parent,
                     lambda meta, folder: meta["files"].__setitem__(path.relative_to(folder).as_posix(),
                                                                      sha256_file(path)))


def rewrite_meta(folder: Path, edit) -> None:
    meta = json.loads((folder / ckpt.META).read_text())
    edit(meta, folder)
    meta["meta_sha256"] = ckpt.meta_digest(meta)
    (folder / ckpt.META).write_text(json.dumps(meta))


def edit_meta_raw(folder: Path, edit) -> None:
    """An edit that does not update meta_sha256 (a hand edit or a corruption)."""
    meta = json.loads((folder / ckpt.META).read_text())
    (folder / ckpt.META).write_text(json.dumps(edit(meta)))


def test_meta_records_every_file(tiny_run):
    folder = ckpt.step_dir(tiny_run, RUN_STEPS)
    meta = ckpt.read_meta(folder)
    files = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and p.name != ckpt.META}
    assert set(meta["files"]) == files and {"optimizer.bin", "model.safetensors", "weights.safetensors"} <= files
    assert all(meta["files"][name] == sha256_file(folder / name) for name in files)
    assert meta["meta_sha256"] == ckpt.meta_digest(meta)
    assert ckpt.verify_files(folder, meta) is None


# (case, how the newest checkpoint is damaged, what the warning line names)
def payload_hash_differs(folder, marker):
    plant(folder / "optimizer.bin", marker, rehash=False)


def payload_rehashed(folder, marker):
    plant(folder / "optimizer.bin", marker, rehash=True)


def payload_rng_rehashed(folder, marker):
    plant(folder / "random_states_0.pkl", marker, rehash=True)


def payload_added_file(folder, marker):
    (folder / "pytorch_model").mkdir()
    plant(folder / "pytorch_model" / "mp_rank_00_model_states.pt", marker, rehash=False)


def meta_step_edited(folder, marker):
    edit_meta_raw(folder, lambda m: {**m, "step": 999})


def meta_position_wrong_type(folder, marker):
    edit_meta_raw(folder, lambda m: {**m, "data_position": "0:0"})


def meta_not_an_object(folder, marker):
    (folder / ckpt.META).write_text("[1, 2]\n")


def meta_files_not_a_mapping(folder, marker):
    edit_meta_raw(folder, lambda m: {**m, "files": ["optimizer.bin"]})


CASES = [
    ("payload_hash_differs", payload_hash_differs, r"optimizer\.bin: sha256 differs from the one recorded in meta\.json"),
    ("payload_rehashed", payload_rehashed, r"optimizer\.bin: .*(Unsupported global|weights_only|Weights only)"),
    ("payload_rng_rehashed", payload_rng_rehashed, r"random_states_0\.pkl: .*(Unsupported global|Weights only)"),
    ("payload_added_file", payload_added_file, r"mp_rank_00_model_states\.pt: not a file of this checkpoint"),
    ("meta_step_edited", meta_step_edited, r"meta\.json: its content differs from what was written"),
    ("meta_position_wrong_type", meta_position_wrong_type, r"meta\.json: data_position is str '0:0', not dict"),
    ("meta_not_an_object", meta_not_an_object, r"meta\.json: not a JSON object"),
    ("meta_files_not_a_mapping", meta_files_not_a_mapping, r"meta\.json: files is list"),
]


@pytest.mark.parametrize("case, damage, expected", CASES, ids=[c[0] for c in CASES])
def test_tampered_newest_checkpoint_falls_back(case, damage, expected, tiny_run, tiny_train_cfg, tmp_path, capsys):
    run, marker = tmp_path / "ckpt" / "tiny", tmp_path / "PAYLOAD_RAN"
    shutil.copytree(tiny_run, run)
    newest = ckpt.step_dir(run, RUN_STEPS)
    damage(newest, marker)
    before = snapshot(newest)
    capsys.readouterr()
    rc = main(["pretrain", "--config", str(TINY), *tiny_train_cfg.overrides(tmp_path / "ckpt"),
               f"train.max_steps={SAVE_EVERY + 1}"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert not marker.exists(), "the planted payload ran"
    warnings = [line for line in err.splitlines() if "cannot resume from" in line]
    assert len(warnings) == 1 and str(newest) in warnings[0], err
    assert re.search(expected, warnings[0]) and "trying the next older checkpoint" in warnings[0], warnings[0]
    assert f"resumed from {ckpt.step_dir(run, SAVE_EVERY)}" in out
    assert snapshot(newest) == before  # the evidence is left as it was


def test_weights_only_loads_refuses_a_payload_asked_for_with_weights_only_false(tmp_path):
    """What DeepSpeed's checkpoint engine does (torch.load(..., weights_only=False)) is refused inside."""
    from deepspeed.runtime.checkpoint_engine.torch_checkpoint_engine import TorchCheckpointEngine

    marker, path = tmp_path / "PAYLOAD_RAN", tmp_path / "mp_rank_00_model_states.pt"
    torch.save({"module": {"w": torch.ones(2)}, "x": Payload(marker)}, path)
    with ckpt.weights_only_loads(), pytest.raises(Exception, match="Unsupported global|Weights only"):
        TorchCheckpointEngine().load(str(path), map_location="cpu")
    assert not marker.exists()
    assert torch.load is not None and "weights_only_loads" not in repr(torch.load)  # restored afterwards
    torch.save({"module": {"w": torch.ones(2)}, "skipped_steps": 0}, path)
    with ckpt.weights_only_loads():
        assert float(TorchCheckpointEngine().load(str(path))["module"]["w"].sum()) == 2.0


@pytest.mark.slow
@pytest.mark.distributed
def test_deepspeed_files_are_hashed_and_checked(zero2_run, tmp_path):
    """A ZeRO-2 checkpoint records DeepSpeed's own files; a payload planted in its model states is refused by the
    hash check, before DeepSpeed could open it."""
    run = tmp_path / "tiny"
    shutil.copytree(zero2_run[0], run)
    folder, states = ckpt.step_dir(run, 4), "pytorch_model/mp_rank_00_model_states.pt"
    meta = ckpt.read_meta(folder)
    assert states in meta["files"] and "pytorch_model/zero_pp_rank_1_mp_rank_00_optim_states.pt" in meta["files"]
    assert ckpt.verify_files(folder, meta) is None
    plant(folder / states, tmp_path / "PAYLOAD_RAN", rehash=False)
    assert re.search(r"mp_rank_00_model_states\.pt: sha256 differs", ckpt.verify_files(folder, meta))


@pytest.mark.slow
@pytest.mark.distributed
def test_deepspeed_resume_refuses_a_planted_payload(zero2_run, tiny_train_cfg, tmp_path):
    """The session's 2-process ZeRO-2 run (checkpoints at steps 2 and 4): step 4's model states get a payload and
    meta.json is rewritten to match, so only weights_only loading inside DeepSpeed's engine stands between the
    payload and a resume. Resume names the file, falls back to step 2, and the payload never runs."""
    shutil.copytree(zero2_run[0], tmp_path / "tiny")
    run, marker = tmp_path / "tiny", tmp_path / "PAYLOAD_RAN"
    plant(ckpt.step_dir(run, 4) / "pytorch_model" / "mp_rank_00_model_states.pt", marker, rehash=True)
    before = snapshot(ckpt.step_dir(run, 4))
    proc = launch(["--config_file", str(REPO / "launch" / "accelerate" / "zero2.yaml"), "--num_processes", "2"],
                  [*tiny_train_cfg.overrides(tmp_path), *ZERO2_STEPS, "train.max_steps=5", "train.save_every=5"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not marker.exists(), "the planted payload ran"
    warnings = [line for line in proc.stderr.splitlines() if "cannot resume from" in line]
    assert warnings and all(re.search(r"step-00000004/pytorch_model/mp_rank_00_model_states\.pt: "
                                      r"(Weights only|.*Unsupported global)", w) for w in warnings), warnings
    assert f"resumed from {ckpt.step_dir(run, 2)}" in proc.stdout
    assert ckpt.read_meta(ckpt.step_dir(run, 5))["step"] == 5 and snapshot(ckpt.step_dir(run, 4)) == before


def test_weights_file_stores_a_tied_matrix_once_and_loads_it_under_every_name(tiny_run, tmp_path):
    from safetensors.torch import load_file, save_file

    from recgpt.evaluate import load_checkpoint_model
    from recgpt.io import ArtifactError

    folder = ckpt.step_dir(tiny_run, RUN_STEPS)
    stored = load_file(folder / ckpt.EXPORT_WEIGHTS)
    model = load_checkpoint_model(folder, ckpt.read_meta(folder))
    state = model.state_dict()
    tied = ckpt.tied_parameters(model)
    assert tied and not set(tied) & set(stored) and set(stored) | set(tied) == set(state)
    assert all(torch.equal(state[name], stored[name]) for name in stored)
    assert all(torch.equal(state[name], stored[source]) for name, source in tied.items())

    broken = tmp_path / "step"
    broken.mkdir()
    save_file(stored, str(broken / ckpt.EXPORT_WEIGHTS), metadata={ckpt.TIED_KEY: json.dumps({"x": "absent"})})
    with pytest.raises(ArtifactError, match=r"weights\.safetensors: metadata 'tied' does not name stored tensors"):
        ckpt.load_export_weights(broken)
