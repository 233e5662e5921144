"""fit_tokenizer(embeddings, cfg) -> ItemTokenizer for every kind (fsq | rqvae | rqkmeans), with its report.

A seeded share `cfg.heldout` of the items is kept out of training and measures reconstruction error;
codes, collisions and slot usage are computed on all items. Training: Adam with linear warmup then cosine
decay, seeded shuffling, so a fit is deterministic on one machine.

The embeddings are streamed: an Embeddings loaded with load_embeddings(folder, mmap=True) stays a float16
memmap on disk, and every pass (statistics, training batches, codes, reconstruction) reads `CHUNK` rows or one
training batch at a time, so the [N, D] float32 matrix is never in memory. k-means (RQ-KMeans, the RQ-VAE's
codebook initialisation) runs on a seeded sample of at most `tokenizer.kmeans_max_items` training items.
"""
import math
import time
from dataclasses import replace
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from recgpt.io import release_pages
from recgpt.tokenizer.base import ItemTokenizer, build_model, check_finite
from recgpt.tokenizer.report import build_report, reconstruction_errors
from recgpt.tokenizer.collisions import capped_disambiguation


def model_params(cfg) -> dict:
    params = {"n_codes": cfg.n_codes, "hidden": cfg.hidden, "standardize": cfg.standardize}
    if cfg.kind == "fsq":
        params.update(levels=list(cfg.levels), encoder=cfg.encoder)
    else:
        params.update(codebook_size=cfg.codebook_size)
    if cfg.kind == "rqvae":
        params.update(latent_dim=cfg.latent_dim, commitment=cfg.commitment, rotation_trick=cfg.rotation_trick,
                      dead_code_steps=cfg.dead_code_steps, sinkhorn_iters=cfg.sinkhorn_iters, seed=cfg.seed)
    return params


def split_heldout(n: int, share: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_held = int(round(n * share)) if n > 1 else 0
    return perm[n_held:].sort().values, perm[:n_held].sort().values


def recon_loss(recon: torch.Tensor, x: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "cosine":
        return (1 - F.cosine_similarity(recon, x, dim=-1)).mean()
    return F.mse_loss(recon, x, reduction="none").sum(-1).mean()  # per item, so the scale is dim-free


CHUNK = 16384  # rows per streamed read of the embeddings (25 MB as float32 at D=384)
GATHER = 1024  # scattered rows read from a memmap between two releases of its pages


class RowSource:
    """Rows `index` (all when None) of an [N, D] array-like (ndarray, memmap, tensor), read as float32 tensors
    on `device`: a training batch or a chunk at a time."""

    def __init__(self, data, index=None, device="cpu"):
        self.data = data.detach().cpu().numpy() if isinstance(data, torch.Tensor) else data
        self.index = None if index is None else np.asarray(index, dtype=np.int64)
        self.device = torch.device(device)

    def __len__(self) -> int:
        return len(self.data) if self.index is None else len(self.index)

    def take(self, positions) -> torch.Tensor:
        """Rows at `positions` (into this source's rows), in that order."""
        positions = np.asarray(positions, dtype=np.int64)
        rows = positions if self.index is None else self.index[positions]
        if len(rows) <= GATHER:
            return self._tensor(self.data[rows])  # a memmap reads just these rows
        out = np.empty((len(rows), self.data.shape[1]), np.float32)
        for start in range(0, len(rows), GATHER):  # scattered rows: a bounded share of the file at a time
            out[start:start + GATHER] = self.data[rows[start:start + GATHER]]
            release_pages(self.data)
        return torch.from_numpy(out).to(self.device)

    def _tensor(self, block) -> torch.Tensor:
        out = torch.from_numpy(np.asarray(block, dtype=np.float32)).to(self.device)
        # The file pages just read leave the resident set (RSS stays flat in N). Every read: each scattered row
        # faults in its neighbourhood (fault-around, ~64 KB), so GATHER rows map at most ~64 MB.
        release_pages(self.data)
        return out

    def chunks(self, size: int = 0):
        size = size or CHUNK
        for start in range(0, len(self), size):
            stop = min(start + size, len(self))
            yield start, (self._tensor(self.data[start:stop]) if self.index is None
                          else self.take(np.arange(start, stop)))


@torch.no_grad()
def set_standardization(model, source: RowSource) -> None:
    """Per-dimension mean and (unbiased) std of the source's rows, accumulated in float64 chunk by chunk."""
    total = square = None
    for _, x in source.chunks():
        x = x.double()
        total = x.sum(0) if total is None else total + x.sum(0)
        square = x.pow(2).sum(0) if square is None else square + x.pow(2).sum(0)
    n = len(source)
    mean = total / n
    var = ((square - n * mean.pow(2)) / max(n - 1, 1)).clamp_min(0)
    model.shift.copy_(mean.float())
    model.scale.copy_(var.sqrt().float().clamp_min(1e-6))


def kmeans_sample(source: RowSource, cap: int, seed: int) -> torch.Tensor:
    """All rows when there are at most `cap`, else a seeded sample of `cap` rows (in row order)."""
    if len(source) <= cap:
        return source.take(np.arange(len(source)))
    pick = np.sort(np.random.default_rng(seed).choice(len(source), cap, replace=False))
    return source.take(pick)


@torch.no_grad()
def streamed_reconstruction(model, source: RowSource) -> dict:
    """report.reconstruction_errors over the source's rows, accumulated chunk by chunk."""
    if len(source) == 0:
        return reconstruction_errors(torch.zeros(0, 1), torch.zeros(0, 1))
    err = cos = 0.0
    total = square = None
    for _, x in source.chunks():
        recon = model(x)[0]
        err += float((x - recon).pow(2).sum(-1).double().sum())
        cos += float(F.cosine_similarity(x, recon, dim=-1).double().sum())
        xd = x.double()
        total = xd.sum(0) if total is None else total + xd.sum(0)
        square = float(xd.pow(2).sum()) + (square or 0.0)
    n, dim = len(source), source.take([0]).shape[1]
    var = max(square - float(total.pow(2).sum()) / n, 1e-12)  # sum of squared distances to the mean
    return {"mse": err / n / dim, "relative_mse": err / var, "cosine": cos / n}


def count_unique_rows(source: RowSource, seed: int = 0) -> int:
    """Distinct rows, by a 64-bit hash of each row's float32 bits (chunk by chunk; collisions ~2^-64 a pair)."""
    if len(source) == 0:
        return 0
    dim = source.take([0]).shape[1]
    mult = np.random.default_rng(seed).integers(1, 2 ** 63, size=dim, dtype=np.uint64) * 2 + 1
    hashes = np.empty(len(source), np.uint64)
    with np.errstate(over="ignore"):
        for start, x in source.chunks(max(1, CHUNK // 4)):  # the 64-bit words take 2x the float32 chunk
            words = x.cpu().numpy().view(np.uint32).astype(np.uint64)
            words ^= words >> np.uint64(7)
            hashes[start:start + len(x)] = (words * mult).sum(1, dtype=np.uint64)
    return len(np.unique(hashes))


def train_autoencoder(model: torch.nn.Module, x: RowSource, cfg, progress: bool = True) -> list[float]:
    """Adam + warmup/cosine over cfg.epochs; returns the mean loss of each epoch."""
    from tqdm.auto import tqdm
    from transformers import get_cosine_schedule_with_warmup

    model.train()
    steps_per_epoch = math.ceil(len(x) / cfg.batch_size)
    total = max(1, cfg.epochs * steps_per_epoch)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = get_cosine_schedule_with_warmup(opt, min(cfg.warmup_steps, total // 10), total)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    history = []
    bar = tqdm(range(cfg.epochs), desc=f"fit {cfg.kind}", disable=not progress)
    for _ in bar:
        perm, losses = torch.randperm(len(x), generator=gen), []
        for start in range(0, len(x), cfg.batch_size):
            batch = x.take(perm[start:start + cfg.batch_size].numpy())
            recon, _, aux = model(batch)
            loss = recon_loss(recon, batch, cfg.loss) + aux
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if hasattr(model, "after_step"):
                model.after_step()
            losses.append(loss.item())
        history.append(float(np.mean(losses)))
        bar.set_postfix(loss=f"{history[-1]:.4f}")
    model.eval()
    return history


def warm_up_rqvae(model, x: RowSource, cfg, progress: bool) -> list[float]:
    """Train the RQ-VAE as a plain autoencoder for cfg.rq_warmup_epochs, then initialise its codebooks by
    k-means on the latents of all training items. Quantizing from the first step, the decoder cannot yet use
    the codes and the encoder's latents fall together (ml-100k: 78 items on one tuple after 2 epochs)."""
    history = []
    if cfg.rq_warmup_epochs:
        model.quantize = False
        history = train_autoencoder(model, x, replace(cfg, epochs=cfg.rq_warmup_epochs), progress)
        model.quantize = True
    model.init_codebooks(kmeans_sample(x, cfg.kmeans_max_items, cfg.seed), cfg.kmeans_iters, cfg.seed)
    return history


def fit_tokenizer(embeddings, cfg, embed_model: Optional[str] = None, progress: bool = True) -> ItemTokenizer:
    """`embeddings`: an Embeddings (its model is recorded; its vectors may be a memmap) or an array [N, D]
    with `embed_model` given."""
    if hasattr(embeddings, "vectors"):
        embed_model, vectors = embeddings.model, embeddings.vectors
    else:
        vectors = embeddings
    if embed_model is None:
        raise ValueError("fit_tokenizer: pass embed_model= (the text encoder the embeddings came from)")
    shape = tuple(vectors.shape) if hasattr(vectors, "shape") else np.shape(vectors)
    if len(shape) != 2 or shape[0] < 2:
        raise ValueError(f"fit_tokenizer: need [N >= 2, D] embeddings, got shape {shape}")
    params = model_params(cfg)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.kind, shape[1], params)
    tok = ItemTokenizer(cfg.kind, model, params, embed_model, shape[1], cfg.dedup_size)
    rows = tok.embedding_rows(vectors)
    every = RowSource(rows)
    for start, x in every.chunks():  # NaN/inf anywhere is an error before any training
        check_finite(x, offset=start)
    train_idx, held_idx = split_heldout(shape[0], cfg.heldout, cfg.seed)
    device = torch.device(cfg.device)
    train = RowSource(rows, train_idx.numpy(), device)
    started = time.perf_counter()
    history = []
    model.to(device)
    if cfg.standardize:
        set_standardization(model, train)
    if cfg.kind == "rqkmeans":
        model.fit(kmeans_sample(train, cfg.kmeans_max_items, cfg.seed), cfg.kmeans_iters, cfg.seed)
    else:
        if cfg.kind == "rqvae":
            history = warm_up_rqvae(model, train, cfg, progress)
        history += train_autoencoder(model, train, cfg, progress)
    fit_seconds = time.perf_counter() - started
    model.cpu().eval()
    measured = RowSource(rows, held_idx.numpy()) if len(held_idx) else RowSource(rows, train_idx.numpy())
    recon = streamed_reconstruction(model, measured)
    codes = tok.encode(rows, batch_size=CHUNK)
    # The report is written even when some tuple holds more than dedup_size items (a collapsed fit);
    # assign() then refuses those items with a clear error.
    assigned, overflow = capped_disambiguation(codes, cfg.dedup_size)
    identical = count_unique_rows(every)  # items with equal embeddings collide under any tokenizer
    tok.report = build_report(cfg.kind, shape[0], len(held_idx), recon, codes, assigned, tok.slot_vocab_sizes,
                              fit_seconds, {"embed_model": embed_model, "params": params,
                                            "items_over_dedup_capacity": overflow,
                                            "n_unique_embeddings": identical,
                                            "codebook_restarts": list(getattr(model, "restarts", [])),
                                            "train_loss": history[-1] if history else None})
    return tok
