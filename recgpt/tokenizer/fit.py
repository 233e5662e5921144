"""fit_tokenizer(embeddings, cfg) -> ItemTokenizer for every kind (fsq | rqvae | rqkmeans), with its report.

A seeded share `cfg.heldout` of the items is kept out of training and measures reconstruction error;
codes, collisions and slot usage are computed on all items. Training: Adam with linear warmup then cosine
decay, seeded shuffling, so a fit is deterministic on one machine.
"""
import math
import time
from dataclasses import replace
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from recgpt.tokenizer.base import ItemTokenizer, build_model
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


def train_autoencoder(model: torch.nn.Module, x: torch.Tensor, cfg, progress: bool = True) -> list[float]:
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
            batch = x[perm[start:start + cfg.batch_size]]
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


def warm_up_rqvae(model, x: torch.Tensor, cfg, progress: bool) -> list[float]:
    """Train the RQ-VAE as a plain autoencoder for cfg.rq_warmup_epochs, then initialise its codebooks by
    k-means on the latents of all training items. Quantizing from the first step, the decoder cannot yet use
    the codes and the encoder's latents fall together (ml-100k: 78 items on one tuple after 2 epochs)."""
    history = []
    if cfg.rq_warmup_epochs:
        model.quantize = False
        history = train_autoencoder(model, x, replace(cfg, epochs=cfg.rq_warmup_epochs), progress)
        model.quantize = True
    model.init_codebooks(x, cfg.kmeans_iters, cfg.seed)
    return history


def fit_tokenizer(embeddings, cfg, embed_model: Optional[str] = None, progress: bool = True) -> ItemTokenizer:
    """`embeddings`: an Embeddings (its model is recorded) or an array [N, D] with `embed_model` given."""
    if hasattr(embeddings, "vectors"):
        embed_model, vectors = embeddings.model, embeddings.vectors
    else:
        vectors = embeddings
    if embed_model is None:
        raise ValueError("fit_tokenizer: pass embed_model= (the text encoder the embeddings came from)")
    x = torch.as_tensor(np.asarray(vectors)).float()
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"fit_tokenizer: need [N >= 2, D] embeddings, got shape {tuple(x.shape)}")
    params = model_params(cfg)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.kind, x.shape[1], params)
    tok = ItemTokenizer(cfg.kind, model, params, embed_model, x.shape[1], cfg.dedup_size)
    x = tok.check_embeddings(x)
    train_idx, held_idx = split_heldout(len(x), cfg.heldout, cfg.seed)
    device = torch.device(cfg.device)
    started = time.perf_counter()
    history = []
    model.to(device)
    if cfg.standardize:
        model.set_standardization(x[train_idx].to(device))
    if cfg.kind == "rqkmeans":
        model.fit(x[train_idx].to(device), cfg.kmeans_iters, cfg.seed)
    else:
        if cfg.kind == "rqvae":
            history = warm_up_rqvae(model, x[train_idx].to(device), cfg, progress)
        history += train_autoencoder(model, x[train_idx].to(device), cfg, progress)
    fit_seconds = time.perf_counter() - started
    model.cpu().eval()
    with torch.no_grad():
        measured = x[held_idx] if len(held_idx) else x[train_idx]
        recon = reconstruction_errors(measured, model(measured)[0])
    codes = tok.encode(x)
    # The report is written even when some tuple holds more than dedup_size items (a collapsed fit);
    # assign() then refuses those items with a clear error.
    assigned, overflow = capped_disambiguation(codes, cfg.dedup_size)
    identical = len(np.unique(x.numpy(), axis=0))  # items with equal embeddings collide under any tokenizer
    tok.report = build_report(cfg.kind, len(x), len(held_idx), recon, codes, assigned, tok.slot_vocab_sizes,
                              fit_seconds, {"embed_model": embed_model, "params": params,
                                            "items_over_dedup_capacity": overflow,
                                            "n_unique_embeddings": identical,
                                            "codebook_restarts": list(getattr(model, "restarts", [])),
                                            "train_loss": history[-1] if history else None})
    return tok
