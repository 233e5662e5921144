"""Collaborative alignment of item-text embeddings: what the text side learns from sequences, before any model.

The ingredient credited for cross-domain transfer (EasyRec, LLM2Rec, Recformer): text vectors of items that
follow each other in real sequences should be close. Here the sentence encoder stays frozen and a residual
adapter is trained over its unit vectors,

    y = normalize(x + up(gelu(down(x)))),   up = 0 at init,

so an untrained adapter is the identity on unit vectors and training starts exactly at content kNN. With
`center` (the default) every catalog is first centered on its own mean, label-free, the form in which recgpt's
recipes and their content kNN read item text: the adapter learns over centered vectors and centers any catalog
it transforms. The loss is a symmetric InfoNCE over pairs (item, next item) of the source domains' sequences.
Every batch comes from one domain, so its negatives are items of the same catalogue (the adapter cannot win by
telling domains apart), and in-batch copies of a positive are masked out of the negatives.

Training keeps the adapter after every epoch (`train_adapter` calls back after each); bench/text_alignment.py
picks one on held-out *source* domains by content kNN NDCG@10 (leave-one-out, history excluded), epoch 0 (the
untrained adapter) included, so an adapter that does not help where it is chosen is not used. The adapter
folder (adapter.safetensors + adapter.json) is an artefact of its own: `TextAdapter.load(folder).transform(v)`
aligns a catalogue's MiniLM vectors `v`, e.g. a new catalogue's.
"""
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ADAPTER_FILE, ADAPTER_CONFIG = "adapter.safetensors", "adapter.json"


@dataclass
class AlignConfig:
    hidden: int = 512  # width of the adapter's bottleneck
    epochs: int = 4
    batch_size: int = 1024  # pairs per batch, all from one domain
    lr: float = 1e-3
    weight_decay: float = 0.01
    temperature: float = 0.05
    max_pairs_per_domain: int = 200_000  # pairs drawn per domain and epoch (large domains do not dominate)
    seed: int = 0
    center: bool = True  # each catalog centered on its own mean first, as recgpt's recipes and content kNN read it

    def __post_init__(self):
        for key in ("hidden", "epochs", "batch_size", "max_pairs_per_domain"):
            if getattr(self, key) < 1:
                raise ValueError(f"align.{key}: must be >= 1, got {getattr(self, key)}")
        if not self.temperature > 0 or not self.lr > 0:
            raise ValueError(f"align: temperature and lr must be > 0, got {self.temperature}, {self.lr}")


class TextAdapter(nn.Module):
    """y = normalize(x + up(gelu(down(x)))) over unit text vectors; the identity until trained. With `center`,
    `transform` centers the catalog it is given on that catalog's mean first (what the adapter was trained on)."""

    def __init__(self, dim: int, hidden: int, center: bool = False):
        super().__init__()
        self.dim, self.hidden, self.center = dim, hidden, bool(center)
        self.down = nn.Linear(dim, hidden)
        self.up = nn.Linear(hidden, dim)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.normalize(x.float(), dim=-1)
        return F.normalize(x + self.up(F.gelu(self.down(x))), dim=-1)

    @torch.no_grad()
    def transform(self, vectors, batch_size: int = 65536) -> np.ndarray:
        """float16 [N, D] aligned unit vectors of a catalogue's float [N, D] vectors (e.g. its MiniLM vectors;
        with `center`, the whole catalogue at once, since it is centered on its own mean)."""
        vectors = np.asarray(vectors)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise ValueError(f"adapter: vectors of shape {vectors.shape}, expected [N, {self.dim}]")
        if self.center and len(vectors):
            vectors = vectors.astype(np.float32)
            vectors = vectors - vectors.mean(0)
        out = np.empty(vectors.shape, np.float16)
        for start in range(0, len(vectors), batch_size):
            part = torch.from_numpy(np.asarray(vectors[start:start + batch_size], np.float32))
            out[start:start + batch_size] = self(part).numpy().astype(np.float16)
        return out

    def save(self, folder, meta: Optional[dict] = None) -> Path:
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().contiguous() for k, v in self.state_dict().items()}, str(folder / ADAPTER_FILE))
        (folder / ADAPTER_CONFIG).write_text(json.dumps({"kind": "text_adapter", "dim": self.dim,
                                                         "hidden": self.hidden, "center": self.center, **(meta or {})},
                                                        indent=2) + "\n")
        return folder

    @classmethod
    def load(cls, folder) -> "TextAdapter":
        from recgpt.io import ArtifactError, load_safetensors, require_files

        folder = require_files(folder, [ADAPTER_FILE, ADAPTER_CONFIG], "text adapter")
        config = json.loads((folder / ADAPTER_CONFIG).read_text())
        if config.get("kind") != "text_adapter":
            raise ArtifactError(f"{folder / ADAPTER_CONFIG}: not a text adapter (kind {config.get('kind')!r})")
        adapter = cls(int(config["dim"]), int(config["hidden"]), bool(config.get("center", False)))  # earlier: plain
        tensors, _ = load_safetensors(folder / ADAPTER_FILE)
        adapter.load_state_dict(tensors, strict=True)
        return adapter.eval()


@dataclass
class Domain:
    """One domain's item vectors (float16 [N, D], rows = items) and its (item, next item) row pairs."""
    name: str
    vectors: np.ndarray
    pairs: np.ndarray  # int64 [P, 2]


def next_item_pairs(sequences: Sequence[Sequence[int]]) -> np.ndarray:
    """int64 [P, 2]: every (item, following item) of each sequence, repeats of the same item left out."""
    out = [np.stack([s[:-1], s[1:]], 1) for s in map(np.asarray, sequences) if len(s) > 1]
    pairs = np.concatenate(out) if out else np.zeros((0, 2), np.int64)
    return pairs[pairs[:, 0] != pairs[:, 1]].astype(np.int64)


def domain_of(name: str, item_ids: Sequence[str], vectors, interactions) -> Domain:
    """A Domain from a catalog's item ids, their vectors (rows in that order) and its interactions table; items the
    catalog does not hold are left out of the sequences."""
    from recgpt.data.splits import user_sequences

    row_of = {str(item): row for row, item in enumerate(item_ids)}
    rows = [[row_of[i] for i in items if i in row_of] for items in user_sequences(interactions)]
    return Domain(name, np.asarray(vectors), next_item_pairs(rows))


def info_nce(adapter: TextAdapter, vectors: torch.Tensor, pairs: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE of a batch of (item, next item) rows of one domain; copies of a positive are not
    negatives."""
    a, b = adapter(vectors[pairs[:, 0]]), adapter(vectors[pairs[:, 1]])
    logits = a @ b.t() / temperature
    eye = torch.eye(len(pairs), dtype=torch.bool)
    forward = logits.masked_fill((pairs[:, 1][None, :] == pairs[:, 1][:, None]) & ~eye, float("-inf"))
    backward = logits.t().masked_fill((pairs[:, 0][None, :] == pairs[:, 0][:, None]) & ~eye, float("-inf"))
    target = torch.arange(len(pairs))
    return (F.cross_entropy(forward, target) + F.cross_entropy(backward, target)) / 2


def batches(domains: Sequence[Domain], cfg: AlignConfig, rng: np.random.Generator) -> list[tuple[int, np.ndarray]]:
    """One epoch of (domain index, pair rows) batches: up to max_pairs_per_domain pairs of each domain, cut into
    batches of one domain each, in a random order."""
    out = []
    for d, domain in enumerate(domains):
        take = rng.permutation(len(domain.pairs))[:cfg.max_pairs_per_domain]
        out += [(d, take[s:s + cfg.batch_size]) for s in range(0, len(take), cfg.batch_size)
                if len(take[s:s + cfg.batch_size]) > 1]
    return [out[i] for i in rng.permutation(len(out))]


def train_adapter(domains: Sequence[Domain], cfg: AlignConfig,
                  on_epoch: Optional[Callable[[int, TextAdapter, float], None]] = None) -> list[dict]:
    """Train an adapter on the domains' pairs; calls on_epoch(epoch, adapter, mean loss) after epoch 0 (the
    untrained identity, loss measured) and every epoch. Returns [{epoch, loss, steps}] per epoch."""
    if not domains or not any(len(d.pairs) for d in domains):
        raise ValueError("align: no (item, next item) pairs in the source domains")
    dims = {int(d.vectors.shape[1]) for d in domains}
    if len(dims) != 1:
        raise ValueError(f"align: the domains' vectors have different widths {sorted(dims)}")
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    adapter = TextAdapter(dims.pop(), cfg.hidden, cfg.center)
    tensors = [torch.from_numpy(np.asarray(d.vectors, np.float32)) for d in domains]
    if cfg.center:  # each catalog on its own mean, as `transform` centers a catalog
        tensors = [t - t.mean(0) for t in tensors]
    pair_tensors = [torch.from_numpy(d.pairs) for d in domains]
    epoch_batches = batches(domains, cfg, rng)
    steps = len(epoch_batches) * cfg.epochs
    optimizer = torch.optim.AdamW(adapter.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * min(s / steps, 1))))
    history = []
    for epoch in range(cfg.epochs + 1):
        adapter.train(epoch > 0)
        losses = []
        for d, rows in epoch_batches:
            with torch.set_grad_enabled(epoch > 0):
                loss = info_nce(adapter, tensors[d], pair_tensors[d][torch.from_numpy(rows)], cfg.temperature)
            if epoch > 0:
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
            losses.append(float(loss.detach()))
        adapter.eval()
        history.append({"epoch": epoch, "loss": float(np.mean(losses)), "steps": epoch * len(epoch_batches)})
        if on_epoch is not None:
            on_epoch(epoch, adapter, history[-1]["loss"])
        epoch_batches = batches(domains, cfg, rng)
    return history


def config_dict(cfg: AlignConfig) -> dict:
    return asdict(cfg)
