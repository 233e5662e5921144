"""The baseline interface: `fit(split) -> model`, `recommend(histories, k)`, `save` / `load` (safetensors + json).

A model scores the whole catalog for a batch of histories (`scores`, higher is better). Sequence models are
also next-item scorers (`log_probs`), so the shared horizon strategies (recgpt.predict.horizon) generate
lists with them exactly as they do with recgpt. Histories are catalog rows, oldest first.
"""
import json
from pathlib import Path
from typing import Optional, Sequence

import torch
from safetensors.torch import load_file, save_file

from recgpt.config.predict import ContentKnnConfig
from recgpt.io import ArtifactError, write_json
from recgpt.predict.horizon import NEG_INF, _mask, _ranked

STATE_FILE, META_FILE = "model.safetensors", "baseline.json"


class Baseline:
    knn = ContentKnnConfig()  # how a user's last items are weighted (content / item kNN); run_baseline sets it
    name = "baseline"
    generative = False  # True: log_probs is a next-item distribution the horizon strategies may roll out

    def __init__(self, cfg, n_items: int):
        self.cfg, self.n_items = cfg, n_items

    # -- what each model provides -------------------------------------------------------------------------
    def fit(self, split) -> "Baseline":
        raise NotImplementedError

    def scores(self, histories: Sequence[Sequence[int]], users: Optional[Sequence[str]] = None) -> torch.Tensor:
        """Float[B, N] preference of each history for every catalog row; -inf = never recommended."""
        raise NotImplementedError

    def state(self) -> dict:
        """Tensors that, with the config, reproduce the fitted model."""
        raise NotImplementedError

    def load_state(self, tensors: dict) -> None:
        raise NotImplementedError

    def extra_meta(self) -> dict:
        """JSON-able state beside the tensors (e.g. user ids); given back to load_extra."""
        return {}

    def load_extra(self, meta: dict) -> None:
        pass

    # -- shared -------------------------------------------------------------------------------------------
    def log_probs(self, histories) -> torch.Tensor:
        with torch.no_grad():
            return torch.log_softmax(self.scores(histories).float(), dim=-1)

    def recommend(self, histories, k: int, users=None, allow_history: bool = False):
        """(rows, scores): the k best distinct rows per history, history excluded unless allowed."""
        exclude = [[] if allow_history else sorted(set(int(i) for i in h)) for h in histories]
        with torch.no_grad():
            scores = self.scores(histories, users).float().cpu()
        return _ranked(scores.masked_fill(_mask(self.n_items, exclude, "cpu"), NEG_INF), min(k, self.n_items))

    def save(self, folder) -> Path:
        from recgpt.config import config_to_dict

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().cpu().contiguous() for k, v in self.state().items()}, str(folder / STATE_FILE))
        write_json(folder / META_FILE, {"name": self.name, "n_items": self.n_items, "config": config_to_dict(self.cfg),
                                        "extra": self.extra_meta()})
        return folder


def load_baseline(folder) -> Baseline:
    """A model saved by Baseline.save; its own json says which model and config."""
    from recgpt.baselines import get_model
    from recgpt.config import BaselineConfig
    from recgpt.config.loader import _build

    folder = Path(folder)
    for f in (STATE_FILE, META_FILE):
        if not (folder / f).is_file():
            raise ArtifactError(f"{folder}: not a saved baseline (no {f})")
    meta = json.loads((folder / META_FILE).read_text())
    cfg = _build(BaselineConfig, [meta["config"]], str(folder / META_FILE))
    model = get_model(meta["name"])(cfg, int(meta["n_items"]))
    model.load_state(load_file(str(folder / STATE_FILE)))
    model.load_extra(meta.get("extra", {}))
    return model


def history_matrix(histories, n_items: int, weights=None) -> torch.Tensor:
    """Float[B, N] with each history's items set to 1 (or summed `weights[b][j]`)."""
    out = torch.zeros(len(histories), n_items)
    for b, h in enumerate(histories):
        if len(h):
            w = torch.ones(len(h)) if weights is None else torch.as_tensor(weights[b], dtype=torch.float32)
            out[b].index_add_(0, torch.as_tensor(list(h), dtype=torch.long), w)
    return out
