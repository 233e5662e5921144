"""Checkpoints of the baselines' training loops, so a killed `recgpt baseline` run resumes where it stopped
instead of starting over (the shared epoch loop of recgpt.baselines.training, MFGAN's adversarial rounds).

One loop's folder holds its last complete step: `step-N.safetensors` (named state dicts as `<name>.<key>`, the
torch RNG and any torch.Generator as `rng.<name>`), `optimizers-N.pt` (AdamW states: plain tensors, read back
with weights_only=True) and `progress.json`, written last so that it always names a complete pair (the loop's
counters and log, numpy RNG states, and a fingerprint of the training config). A checkpoint of another config
is ignored with a note. The run's resume folder is removed once its report is written.
"""
import hashlib
import json
import os
import re
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from recgpt.io import ArtifactError, read_json, write_json
from recgpt.logging import print0

OWN_FILE = re.compile(r"step-(?P<weights>\d+)\.safetensors|optimizers-(?P<optimizers>\d+)\.pt")  # a step's pair
# Keys that change only how the finished model is evaluated, not how it is trained.
EVAL_ONLY = {"strategies", "ks", "temperatures", "n_samples", "beam_size", "max_test_users", "eval_batch",
             "threads", "max_seconds", "output_dir", "sampled_negatives"}


def fingerprint(*configs) -> str:
    from recgpt.config import config_to_dict

    train = [{k: v for k, v in config_to_dict(c).items() if k not in EVAL_ONLY} for c in configs]
    return hashlib.sha256(json.dumps(train, sort_keys=True, default=str).encode()).hexdigest()[:16]


class Checkpoint:
    def __init__(self, folder, *configs):
        self.folder = Path(folder) if folder else None
        self.key = fingerprint(*configs)

    def save(self, step: int, states: dict, optimizers: dict, rngs: dict, generators: dict, progress: dict):
        """states {name: state_dict or None}, optimizers {name: torch optimizer}, rngs {name: numpy Generator},
        generators {name: torch.Generator}; progress: JSON counters of the loop."""
        if self.folder is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        tensors = {f"{name}.{k}": v.detach().clone().contiguous()
                   for name, state in states.items() for k, v in (state or {}).items()}
        tensors["rng.torch"] = torch.get_rng_state()
        tensors.update({f"rng.{name}": g.get_state() for name, g in generators.items()})
        optimizer_states = {name: opt.state_dict() for name, opt in optimizers.items()}
        for name, write in ((f"step-{step}.safetensors", lambda p: save_file(tensors, p)),
                            (f"optimizers-{step}.pt", lambda p: torch.save(optimizer_states, p))):
            (self.folder / (name + ".tmp")).unlink(missing_ok=True)  # a link there is removed, never written through
            write(str(self.folder / (name + ".tmp")))
            os.replace(self.folder / (name + ".tmp"), self.folder / name)
        write_json(self.folder / "progress.json", {
            **progress, "step": step, "fingerprint": self.key, "states": sorted(n for n, s in states.items() if s),
            "numpy_rng": {name: rng.bit_generator.state for name, rng in rngs.items()}})
        for old in self.folder.iterdir():  # earlier steps' pairs; nothing else (a user's file stays)
            match = OWN_FILE.fullmatch(old.name)
            if match and (match["weights"] or match["optimizers"]) != str(step) and old.is_file() and not old.is_symlink():
                old.unlink()

    def load(self, optimizers: dict, rngs: dict, generators: dict):
        """(progress, {name: state_dict}) of the last complete step, with optimizers and RNGs restored in
        place; None when there is none or it belongs to another config."""
        if self.folder is None or not (self.folder / "progress.json").is_file():
            return None
        progress = read_json(self.folder / "progress.json")
        if progress.get("fingerprint") != self.key:
            print0(f"{self.folder}: checkpoint of another training config; training from the start")
            return None
        step = progress["step"]
        tensors = load_file(str(self.folder / f"step-{step}.safetensors"))
        torch.set_rng_state(tensors.pop("rng.torch"))
        for name, g in generators.items():
            g.set_state(tensors.pop(f"rng.{name}"))
        saved = torch.load(self.folder / f"optimizers-{step}.pt", weights_only=True)
        for name, opt in optimizers.items():
            opt.load_state_dict(saved[name])
        for name, rng in rngs.items():
            rng.bit_generator.state = progress["numpy_rng"][name]
        states = {name: {} for name in progress["states"]}
        for key, value in tensors.items():
            name, inner = key.split(".", 1)
            states[name][inner] = value
        print0(f"{self.folder}: resuming after step {step}")
        return progress, states


def written_here(folder: Path) -> bool:
    """A checkpoint folder of this module: a progress.json with our fingerprint key, and nothing but our files
    and such folders inside (no symlink)."""
    progress = folder / "progress.json"
    try:
        if folder.is_symlink() or progress.is_symlink() or "fingerprint" not in read_json(progress):
            return False
    except (ArtifactError, TypeError):
        return False
    ours = re.compile(r"(step-\d+\.safetensors|optimizers-\d+\.pt)(\.tmp)?|progress\.json(\.tmp)?")
    return all(not p.is_symlink() and (written_here(p) if p.is_dir() else bool(ours.fullmatch(p.name)))
               for p in folder.iterdir())


def remove_resume_folder(folder) -> None:
    """The run's resume folder, once its report is written; a folder holding anything else is left as it is."""
    folder = Path(folder)
    if folder.is_dir() and written_here(folder):
        shutil.rmtree(folder)
    elif folder.exists():
        print0(f"{folder}: holds files these checkpoints did not write; left in place")
