"""Shared training of the torch baselines: seeded minibatches of sequence windows, AdamW, early stopping on
validation NDCG@10 (the best state is kept), an optional wall-clock cap, tqdm progress, and a checkpoint
after every validation (recgpt.baselines.resume) when the model has a `resume_dir`.

A model supplies `build() -> nn.Module`, `loss(batch) -> scalar` over a Long[B, T] batch of catalog rows
right-padded with -1, and `scores(histories)`. Nothing of the test split is used here.
"""
import copy
import time

import numpy as np
import torch
from tqdm.auto import tqdm

from recgpt.baselines.base import Baseline
from recgpt.baselines.resume import Checkpoint
from recgpt.data.splits import windows
from recgpt.predict.metrics import ranking_metrics

PAD = -1


def pad_right(sequences, value: int = PAD) -> torch.Tensor:
    width = max(len(s) for s in sequences)
    out = torch.full((len(sequences), width), value, dtype=torch.long)
    for b, s in enumerate(sequences):
        out[b, :len(s)] = torch.as_tensor(list(s), dtype=torch.long)
    return out


def training_windows(sequences, length: int) -> list[list[int]]:
    """Each sequence cut into windows of at most `length` items (anchored at its end); single items dropped."""
    return [list(s[a:b]) for s in sequences for a, b in windows(len(s), length) if b - a >= 2]


def validation_ndcg(model: Baseline, cases, cfg, k: int = 10) -> float:
    recs = []
    for i in range(0, len(cases), cfg.eval_batch):
        rows, _ = model.recommend(cases.histories[i:i + cfg.eval_batch], k, cases.user_ids[i:i + cfg.eval_batch],
                                  cfg.allow_history)
        recs += rows
    return ranking_metrics(recs, cases.targets, [k])[f"NDCG@{k}"]


class TorchBaseline(Baseline):
    window = 0  # items per training window; 0 = max_len + 1 (history + next item)

    def build(self) -> torch.nn.Module:
        raise NotImplementedError

    def loss(self, batch: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def state(self):
        return {k: v.clone() for k, v in self.net.state_dict().items()}  # clone: tied weights share storage

    def load_state(self, tensors):
        torch.manual_seed(self.cfg.seed)
        self.net = self.build()
        self.net.load_state_dict(tensors)
        self.net.eval()

    def recent(self, histories, n: int):
        return [list(h)[-n:] if len(h) else [0] for h in histories]

    def fit(self, split):
        from recgpt.baselines.data import subset

        cfg = self.cfg
        torch.manual_seed(cfg.seed)
        self.net = self.build()
        opt = torch.optim.AdamW(self.net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        examples = training_windows(split.train, self.window or cfg.max_len + 1)
        valid = subset(split.valid, cfg.max_valid_users, cfg.seed)
        rng = np.random.default_rng(cfg.seed)
        best, best_state, bad, log, start, steps, first = -1.0, None, 0, [], time.time(), 0, 0
        stopped = "epochs"
        checkpoint = Checkpoint(getattr(self, "resume_dir", None), cfg)
        resumed = checkpoint.load({"adamw": opt}, {"order": rng}, {})
        if resumed:
            progress, states = resumed
            self.net.load_state_dict(states["net"])
            best_state = states.get("best")
            best, bad, log, steps, first, stopped = (progress[k] for k in ("best", "bad", "log", "steps", "epoch",
                                                                          "stopped"))
            start -= progress["seconds"]
        bar = tqdm(range(first, cfg.epochs if stopped == "epochs" else first), desc=f"{self.name} epochs",
                   leave=False)
        for epoch in bar:
            self.net.train()
            order, total, batches, out_of_time = rng.permutation(len(examples)), 0.0, 0, False
            for i in range(0, len(order), cfg.batch_size):
                loss = self.loss(pad_right([examples[j] for j in order[i:i + cfg.batch_size]]))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.net.parameters(), 1.0)
                opt.step()
                total, steps, batches = total + loss.item(), steps + 1, batches + 1
                if cfg.max_seconds and time.time() - start > cfg.max_seconds:
                    out_of_time = True
                    break
            if (epoch + 1) % cfg.eval_every_epochs and not out_of_time and epoch + 1 < cfg.epochs:
                continue
            self.net.eval()
            ndcg = validation_ndcg(self, valid, cfg)
            log.append({"epoch": epoch + 1, "loss": total / max(1, batches),  # batches run (a capped epoch: fewer)
                        "valid_ndcg@10": ndcg, "seconds": round(time.time() - start, 1)})
            bar.set_postfix(loss=f"{log[-1]['loss']:.3f}", ndcg=f"{ndcg:.4f}")
            if ndcg > best:
                best, best_state, bad = ndcg, copy.deepcopy(self.net.state_dict()), 0
            else:
                bad += 1
            stopped = "time" if out_of_time else ("patience" if bad >= cfg.patience else "epochs")
            checkpoint.save(epoch + 1, {"net": self.net.state_dict(), "best": best_state}, {"adamw": opt},
                            {"order": rng}, {}, {"epoch": epoch + 1, "best": best, "bad": bad, "log": log,
                                                 "steps": steps, "seconds": time.time() - start, "stopped": stopped})
            if stopped != "epochs":
                break
        self.net.load_state_dict(best_state)
        self.net.eval()
        self.fit_log = {"epochs": log, "best_valid_ndcg@10": best, "steps": steps, "examples": len(examples),
                        "stopped": stopped, "resumed_after_epoch": first or None}
        return self
