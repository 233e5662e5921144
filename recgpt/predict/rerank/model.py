"""The re-ranker: exp(t) * the base rule's score + an MLP over the relation features (recgpt.predict.rerank.context) whose
last layer starts at zero, so that untrained it ranks as the base rule does. It re-orders the base rule's top
`rerank` items of a catalog and leaves the rest in the rule's order below them.

A trained re-ranker is a folder: config.json (what it reads and how it was chosen), model.safetensors, manifest.json.
"""
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from recgpt.io import ArtifactError, load_safetensors, read_json, require_files
from recgpt.predict.ranking import top_k_items
from recgpt.predict.rerank.context import COOC_BASE, N_FEATURES, DomainContext, mask_history

FORMAT = "recgpt-reranker"
FILES = ["config.json", "model.safetensors"]


class Reranker(nn.Module):
    def __init__(self, hidden: int = 64, rerank: int = 100, seed: int = 0, meta: dict = None):
        super().__init__()
        with torch.random.fork_rng():  # seeded, the caller's generator untouched
            torch.manual_seed(seed)
            self.mlp = nn.Sequential(nn.Linear(N_FEATURES, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(),
                                     nn.Linear(hidden, 1))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)
        self.log_scale = nn.Parameter(torch.zeros(1))
        self.hidden, self.rerank, self.meta = hidden, rerank, dict(meta or {})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Float[..., 1] from Float[..., N_FEATURES] (the last feature is the base rule's score)."""
        return self.log_scale.exp() * x[..., -1:] + self.mlp(x)

    @torch.no_grad()
    def scores(self, context: DomainContext, histories: Sequence[Sequence[int]], batch: int = 32) -> torch.Tensor:
        """Float[B, N]: the base rule's score of every item (history items -inf) with its top `rerank` re-ordered
        by the re-ranker, all of them above the rest."""
        out, k = [], min(self.rerank, context.n_items - 1)
        for start in range(0, len(histories), batch):
            part = histories[start:start + batch]
            x, top, features = context.top(part, k + 1)
            if k >= 1:
                below = x.gather(1, top[:, k:])
                below = torch.where(torch.isfinite(below), below, torch.zeros_like(below))  # the rest: history
                new = self(features[:, :k]).squeeze(-1)
                # just above the (k+1)-th rule score, no large offset: float32 would tie close scores
                x.scatter_(1, top[:, :k], below + 1 + new - new.min(1, keepdim=True).values)
                mask_history(x, part)  # a history item among the top (a catalog barely larger than it) stays out
            out.append(x)
        return torch.cat(out) if out else torch.zeros(0, context.n_items)

    def recommend(self, context: DomainContext, histories: Sequence[Sequence[int]], k: int) -> tuple[list, list]:
        """(top-k catalog rows, their scores) per history, the history's own items excluded."""
        return top_rows(lambda part: self.scores(context, part), histories, k)

    def config(self) -> dict:
        return {"format": FORMAT, "n_features": N_FEATURES, "hidden": self.hidden, "rerank": self.rerank,
                "cooc_base": COOC_BASE, **self.meta}

    def save(self, folder) -> None:
        """config.json + model.safetensors into `folder` (a staged folder: recgpt.predict.rerank.train writes it)."""
        from safetensors.torch import save_file

        from recgpt.io import write_json

        folder = Path(folder)
        save_file({k: v.detach().contiguous() for k, v in self.state_dict().items()}, str(folder / "model.safetensors"))
        write_json(folder / "config.json", self.config())

    @classmethod
    def load(cls, folder) -> "Reranker":
        """A trained re-ranker folder (`recgpt rerank`); a file that is not one is refused with its path."""
        folder = require_files(folder, FILES, "re-ranker")
        config = read_json(folder / "config.json")
        if not isinstance(config, dict) or config.get("format") != FORMAT:
            raise ArtifactError(f"{folder / 'config.json'}: not a recgpt re-ranker (format {FORMAT!r} expected)")
        if config.get("cooc_base") != COOC_BASE:
            raise ArtifactError(f"{folder / 'config.json'}: trained with base rule weight {config.get('cooc_base')} "
                                f"on co-occurrence, this recgpt computes {COOC_BASE}")
        try:
            if int(config["n_features"]) != N_FEATURES:
                raise ArtifactError(f"{folder / 'config.json'}: a re-ranker over {config['n_features']} features, "
                                    f"this recgpt computes {N_FEATURES}")
            meta = {k: v for k, v in config.items() if k not in ("format", "n_features", "hidden", "rerank",
                                                                   "cooc_base")}
            model = cls(int(config["hidden"]), int(config["rerank"]), meta=meta)
        except (KeyError, TypeError, ValueError) as e:
            raise ArtifactError(f"{folder / 'config.json'}: needs integer hidden, rerank and n_features ({e!r})") from None
        tensors, _ = load_safetensors(folder / "model.safetensors")
        try:
            model.load_state_dict(tensors)
        except RuntimeError as e:
            raise ArtifactError(f"{folder / 'model.safetensors'}: does not match its config.json: "
                                f"{str(e).splitlines()[0]}") from None
        return model.eval()


def top_rows(scores_of, histories: Sequence[Sequence[int]], k: int, batch: int = 256) -> tuple[list, list]:
    """(top-k rows, their scores) per history of `scores_of(histories) -> Float[B, N]` (-inf: never listed)."""
    rows, values = [], []
    for start in range(0, len(histories), batch):
        top, vals = top_k_items(scores_of(histories[start:start + batch]), k)
        for row, value in zip(top.tolist(), vals.tolist()):
            kept = [i for i, r in enumerate(row) if r >= 0]
            rows.append([row[i] for i in kept])
            values.append([value[i] for i in kept])
    return rows, values
