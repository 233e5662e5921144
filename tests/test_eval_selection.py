"""Checkpoint selection (issue 5): token-weighted loss, ranks, selection.json, skips, export."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from fixtures_train import RUN_STEPS, SAVE_EVERY
from recgpt.train import checkpoint as ckpt

REPO = Path(__file__).resolve().parents[1]
ACCELERATE = str(Path(sys.executable).with_name("accelerate"))


class _SingleProcess:
    """What heldout_loss needs of an Accelerator, for one process."""
    num_processes, process_index, is_main_process, device = 1, 0, True, torch.device("cpu")

    def reduce(self, tensor, reduction="sum"):
        return tensor

    def autocast(self):
        return torch.autocast("cpu", enabled=False)


def test_token_weighted_loss_equals_a_hand_computation(tiny_inputs):
    from recgpt.model import ItemCodeDecoder, ItemCodeDecoderConfig
    from recgpt.train.heldout import heldout_loss
    from recgpt.train.inputs import SequenceSource

    torch.manual_seed(0)
    seqs = [tiny_inputs.heldout.take([i])[i] for i in range(5)]
    seqs = [s[:n] for s, n in zip(seqs, [2, 9, 4, 13, 3])]  # unequal lengths, one with a single target
    model = ItemCodeDecoder(ItemCodeDecoderConfig.from_recipe(
        "code", tiny_inputs.slot_vocab_sizes, n_layers=1, d_model=32, n_heads=4, d_ff=64, dropout=0.0, max_items=50)).eval()
    from recgpt.train.objective import NextItemObjective

    got = heldout_loss(NextItemObjective(model), _SingleProcess(), SequenceSource(seqs), tiny_inputs, "pack", 2 * 16 * 5, 16)  # 2 rows of 16 items
    # By hand: each user alone, every (item j -> code k of item j+1) target, summed, / number of targets.
    total, count, user_means = 0.0, 0, []
    with torch.no_grad():
        for s in seqs:
            user_total = 0.0
            codes = tiny_inputs.codes[torch.tensor(s)].long()[None]
            pos = torch.arange(len(s))[None]
            logits = model(codes=codes, item_pos=pos, segment=torch.ones_like(pos)).logits[0]
            for j in range(len(s) - 1):
                for k in range(codes.shape[-1]):
                    token_loss = float(F.cross_entropy(logits[j, k][None].float(), codes[0, j + 1, k][None]))
                    total, count, user_total = total + token_loss, count + 1, user_total + token_loss
            user_means.append(user_total / ((len(s) - 1) * codes.shape[-1]))
    assert got["tokens"] == count == sum(len(s) - 1 for s in seqs) * codes.shape[-1]
    assert got["loss"] == pytest.approx(total / count, rel=1e-5)
    # ... which is not the mean of per-user means (that would weight short users up)
    assert abs(got["loss"] - sum(user_means) / len(user_means)) > 1e-4


@pytest.fixture(scope="module")
def selected(tiny_run, tiny_train_cfg, tmp_path_factory):
    from recgpt.evaluate import select_checkpoints

    run = tmp_path_factory.mktemp("sel") / "tiny"
    shutil.copytree(tiny_run, run)
    cfg = tiny_train_cfg(output_root=run.parent)
    return run, cfg, select_checkpoints(cfg, run)


def test_selector_picks_the_minimum_and_exports_a_loadable_best(selected, tiny_inputs):
    from recgpt.evaluate import load_checkpoint_model
    from recgpt.model import ItemCodeDecoder
    from recgpt.train.batching import collate

    run, _, selection = selected
    on_disk = json.loads((run / "selection.json").read_text())
    assert on_disk["best"] == selection["best"]
    scores = {name: r["loss"] for name, r in on_disk["checkpoints"].items()}
    assert set(scores) == {f"step-{s:08d}" for s in range(SAVE_EVERY, RUN_STEPS + 1, SAVE_EVERY)}
    assert on_disk["best"] == min(scores, key=scores.get)
    assert on_disk["eval_data_hash"] and on_disk["tokenizer_hash"] == tiny_inputs.tokenizer_hash
    entry = on_disk["checkpoints"][on_disk["best"]]
    assert entry["tokens"] > 0 and entry["sequences_per_s"] > 0 and entry["datasets"]
    # per-dataset losses recombine to the overall one (token-weighted)
    parts = entry["datasets"].values()
    assert sum(p["loss"] * p["tokens"] for p in parts) / sum(p["tokens"] for p in parts) == pytest.approx(entry["loss"])
    # the best folder: HF model + tokenizer + item codes it was trained with
    best = run / "best"
    assert {"config.json", "model.safetensors", "tokenizer", "codes.safetensors", "item_ids.json"} <= {
        p.name for p in best.iterdir()}
    reloaded = ItemCodeDecoder.from_pretrained(best).eval()
    original = load_checkpoint_model(run / on_disk["best"], ckpt.read_meta(run / on_disk["best"]))
    seqs = tiny_inputs.heldout.take(range(4))
    batch = collate([[(i, 0, min(len(seqs[i]), 20))] for i in range(4)], seqs, tiny_inputs.codes)
    with torch.no_grad():
        assert torch.equal(reloaded(**batch).logits, original(**batch).logits)


def test_scores_of_unchanged_checkpoints_are_reused(selected, capsys):
    from recgpt.evaluate import select_checkpoints

    run, cfg, first = selected
    again = select_checkpoints(cfg, run, export=False)
    assert again["checkpoints"] == first["checkpoints"]  # same entries, timing included: nothing re-scored
    assert "unchanged, reused" in capsys.readouterr().out


def test_corrupt_incomplete_and_foreign_checkpoints_are_skipped_and_reported(selected, tmp_path):
    from recgpt.evaluate import select_checkpoints
    from recgpt.io import write_json

    run0, cfg, first = selected
    run = tmp_path / "tiny"
    shutil.copytree(run0, run, ignore=shutil.ignore_patterns("best", "selection.json"))
    corrupt = ckpt.step_dir(run, SAVE_EVERY)
    data = (corrupt / ckpt.EXPORT_WEIGHTS).read_bytes()
    (corrupt / ckpt.EXPORT_WEIGHTS).write_bytes(data[: len(data) // 2])  # truncated
    foreign = ckpt.step_dir(run, RUN_STEPS + 1)
    shutil.copytree(ckpt.step_dir(run, RUN_STEPS), foreign)
    meta = ckpt.read_meta(foreign)
    write_json(foreign / ckpt.META, {**meta, "step": RUN_STEPS + 1, "tokenizer_hash": "f" * 64})
    incomplete = ckpt.step_dir(run, RUN_STEPS + 2)
    incomplete.mkdir()
    selection = select_checkpoints(cfg, run, export=False)
    entries = selection["checkpoints"]
    assert entries[corrupt.name]["status"] == "skipped" and "corrupt" in entries[corrupt.name]["reason"]
    assert entries[foreign.name]["status"] == "skipped" and "tokenizer" in entries[foreign.name]["reason"]
    assert entries[incomplete.name]["status"] == "skipped" and "incomplete" in entries[incomplete.name]["reason"]
    assert entries[ckpt.step_dir(run, RUN_STEPS).name]["status"] == "ok"
    assert selection["best"] == ckpt.step_dir(run, RUN_STEPS).name


@pytest.mark.slow
@pytest.mark.distributed
def test_two_process_eval_gives_the_one_process_loss(selected, tmp_path):
    run0, cfg, first = selected
    run = tmp_path / "tiny"
    shutil.copytree(run0, run, ignore=shutil.ignore_patterns("best", "selection.json"))
    env = {**os.environ, "PYTHONPATH": str(REPO), "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    step = ckpt.step_dir(run, RUN_STEPS)
    cmd = [ACCELERATE, "launch", "--multi_gpu", "--num_processes", "2", str(REPO / "launch" / "eval.py"),
           "--ckpt", str(step), "--no-export", "eval.batch_tokens=1000"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    two = json.loads((run / "selection.json").read_text())["checkpoints"][step.name]
    one = first["checkpoints"][step.name]
    assert two["tokens"] == one["tokens"] and two["sequences"] == one["sequences"]
    assert two["loss"] == pytest.approx(one["loss"], rel=1e-5)


def test_separate_eval_domains_are_scored_per_domain(selected, train_corpus, tiny_tokenizer, tmp_path):
    """eval.source=domains: a corpus folder whose items were coded with the pretraining tokenizer."""
    from datasets import load_from_disk

    from recgpt.evaluate import select_checkpoints
    from recgpt.tokenizer.cli import main as tokenize

    run0, cfg, _ = selected
    domain = tmp_path / "domain"
    shutil.copytree(train_corpus, domain, ignore=shutil.ignore_patterns("sequences"))
    sequences = load_from_disk(str(train_corpus / "sequences"))
    sequences["train"] = sequences["train"].select(range(16))  # a few users keep the test short
    sequences.save_to_disk(str(domain / "sequences"))
    shutil.copytree(Path(tiny_tokenizer).parent / "embeddings", domain / "embeddings",
                    ignore=shutil.ignore_patterns("codes.safetensors"))
    assert tokenize(["assign", f"tokenizer.output_dir={tiny_tokenizer}", "--embeddings", str(domain / "embeddings")]) == 0
    run = tmp_path / "tiny"
    shutil.copytree(run0, run, ignore=shutil.ignore_patterns("best", "selection.json"))
    cfg.eval.source, cfg.eval.domains = "domains", [str(domain)]
    try:
        selection = select_checkpoints(cfg, ckpt.step_dir(run, RUN_STEPS), export=False)
    finally:
        cfg.eval.source, cfg.eval.domains = "heldout_users", []
    entry = selection["checkpoints"][f"step-{RUN_STEPS:08d}"]
    assert entry["status"] == "ok" and entry["sequences"] == 16 + 48
    assert {k.split(":")[0] for k in entry["datasets"]} == {"domain/train", "domain/heldout"}
    parts = entry["datasets"].values()
    assert sum(p["loss"] * p["tokens"] for p in parts) / sum(p["tokens"] for p in parts) == pytest.approx(entry["loss"])
