"""Epoch checkpoints of the shared baseline training loop, so a killed `recgpt baseline` run resumes where it
stopped instead of starting over.

Folder `<output_dir>/resume/`: `epoch-N.safetensors` (the network, the best state so far as `best.*`, the torch
RNG), `optimizer-N.pt` (AdamW state: plain tensors, read back with weights_only=True) and `progress.json`
(written last, so it always names a complete pair: epoch, best score, patience counter, log, seconds used,
numpy RNG, and a fingerprint of the training config). A checkpoint of another config is ignored with a note.
The folder is removed once the run's report is written.
"""
import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from recgpt.io import read_json, write_json
from recgpt.logging import print0

BEST, RNG = "best.", "torch_rng"
# Keys that change only how the finished model is evaluated, not how it is trained.
EVAL_ONLY = {"strategies", "ks", "temperatures", "n_samples", "beam_size", "max_test_users", "eval_batch",
             "threads", "max_seconds", "output_dir", "sampled_negatives", "allow_history_eval"}


def fingerprint(cfg) -> str:
    from recgpt.config import config_to_dict

    train = {k: v for k, v in config_to_dict(cfg).items() if k not in EVAL_ONLY}
    return hashlib.sha256(json.dumps(train, sort_keys=True, default=str).encode()).hexdigest()[:16]


class EpochCheckpoint:
    def __init__(self, folder, cfg):
        self.folder = Path(folder) if folder else None
        self.key = fingerprint(cfg)

    def save(self, net, opt, best_state, np_rng: np.random.Generator, progress: dict) -> None:
        if self.folder is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        epoch = progress["epoch"]
        tensors = {k: v.detach().clone().contiguous() for k, v in net.state_dict().items()}
        tensors.update({BEST + k: v.detach().clone().contiguous() for k, v in (best_state or {}).items()})
        tensors[RNG] = torch.get_rng_state()
        for name, write in ((f"epoch-{epoch}.safetensors", lambda p: save_file(tensors, p)),
                            (f"optimizer-{epoch}.pt", lambda p: torch.save(opt.state_dict(), p))):
            write(str(self.folder / (name + ".tmp")))
            os.replace(self.folder / (name + ".tmp"), self.folder / name)
        write_json(self.folder / "progress.json", {**progress, "fingerprint": self.key,
                                                   "numpy_rng": np_rng.bit_generator.state})
        for old in self.folder.glob("*-*.*"):  # earlier epochs' pairs
            if old.stem.split("-")[-1] != str(epoch):
                old.unlink()

    def load(self, net, opt, np_rng: np.random.Generator):
        """(progress, best_state) of the last complete epoch, restored into net / opt / RNGs; None if none."""
        if self.folder is None or not (self.folder / "progress.json").is_file():
            return None
        progress = read_json(self.folder / "progress.json")
        if progress.get("fingerprint") != self.key:
            print0(f"{self.folder}: checkpoint of another training config; training from the start")
            return None
        epoch = progress["epoch"]
        tensors = load_file(str(self.folder / f"epoch-{epoch}.safetensors"))
        torch.set_rng_state(tensors.pop(RNG))
        best = {k[len(BEST):]: v for k, v in tensors.items() if k.startswith(BEST)} or None
        net.load_state_dict({k: v for k, v in tensors.items() if not k.startswith(BEST)})
        opt.load_state_dict(torch.load(self.folder / f"optimizer-{epoch}.pt", weights_only=True))
        np_rng.bit_generator.state = progress.pop("numpy_rng")
        print0(f"{self.folder}: resuming after epoch {epoch}")
        return progress, best

    def remove(self) -> None:
        if self.folder is not None and (self.folder / "progress.json").is_file():
            shutil.rmtree(self.folder)
