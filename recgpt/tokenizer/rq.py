"""Residual quantizers: RQ-VAE (TIGER: MLP autoencoder, residual codebooks initialised by k-means,
commitment loss, optional rotation trick) and RQ-KMeans (residual k-means on the embeddings, no training).

Level l quantizes the residual left by levels < l to its nearest codebook vector; an item's codes are the
n_codes nearest-vector indices, each in [0, codebook_size).

An RQ-VAE left to itself collapses: as the encoder moves away from the latents its codebooks were
initialised on, whole regions of the catalog fall onto a few codes and the rest die (on ml-100k, 83 items
on one tuple of 32^4). Two remedies keep every code in use during training: dead codes (unused by any
item of the last `dead_code_steps` batches) restart at random residuals of the current batch, and the last
level assigns by Sinkhorn-Knopp balancing (LC-Rec, GAMER) so that no code takes more than its share of a
batch. Encoding is always plain nearest-code, so an item's codes never depend on the batch around it.
"""
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recgpt.tokenizer.fsq import Standardized, mlp


def residual_kmeans(x: torch.Tensor, n_levels: int, k: int, iters: int, seed: int) -> torch.Tensor:
    """Centroids [n_levels, k, D]: k-means on x, then on what the nearest centroid leaves, and so on."""
    from sklearn.cluster import KMeans

    if x.shape[0] < k:
        raise ValueError(f"tokenizer.codebook_size={k} exceeds the {x.shape[0]} training items: lower it")
    residual = x.detach().double().cpu().numpy()
    centroids = []
    for level in range(n_levels):
        km = KMeans(n_clusters=k, n_init=1, max_iter=iters, random_state=seed + level).fit(residual)
        centres = km.cluster_centers_
        residual = residual - centres[km.labels_]
        centroids.append(centres)
    return torch.from_numpy(np.stack(centroids)).float()


def nearest(x: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    # ||x - c||^2 without the ||x||^2 term: same argmin, one matmul.
    return (codebook.pow(2).sum(-1) - 2 * x @ codebook.T).argmin(-1)


def residual_encode(x: torch.Tensor, codebooks: torch.Tensor):
    """(codes [N, L], quantized sum [N, D]) for codebooks [L, K, D]."""
    residual, total, codes = x, torch.zeros_like(x), []
    for codebook in codebooks:
        idx = nearest(residual, codebook)
        q = codebook[idx]
        codes.append(idx)
        total = total + q
        residual = residual - q
    return torch.stack(codes, 1), total


def sinkhorn_assign(dist: torch.Tensor, iters: int, eps: float = 0.05) -> torch.Tensor:
    """Balanced assignment of B rows to K codes: argmax of the entropic transport plan between the rows
    (mass 1/B each) and the codes (mass 1/K each) under cost `dist` [B, K], computed in log space."""
    cost = dist / dist.abs().amax().clamp_min(1e-12)  # scale-free temperature
    log_q = -cost / eps
    for _ in range(iters):
        log_q = log_q - torch.logsumexp(log_q, 0, keepdim=True)  # each code holds 1/K of the mass
        log_q = log_q - torch.logsumexp(log_q, 1, keepdim=True)  # each row holds 1/B
    return log_q.argmax(-1)


def rotate_to(e: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Rotation trick (Fifty et al. 2024): equals q in value; the gradient reaches e through a fixed rotation
    and rescaling that map e onto q, rather than being copied unchanged (straight-through)."""
    e_norm = e.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    q_norm = q.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    u, v = (e / e_norm).detach(), (q / q_norm).detach()
    w = F.normalize(u + v, dim=-1)
    rotated = e - 2 * (e * w).sum(-1, keepdim=True) * w + 2 * (e * u).sum(-1, keepdim=True) * v
    return rotated * (q_norm / e_norm).detach()


class RQVAE(Standardized):
    def __init__(self, dim: int, n_codes: int, codebook_size: int, latent_dim: int = 32, hidden: int = 512,
                 commitment: float = 0.25, rotation_trick: bool = False, dead_code_steps: int = 0,
                 sinkhorn_iters: int = 0, seed: int = 0):
        super().__init__(dim)
        self.dim, self.n_codes, self.commitment, self.rotation_trick = dim, n_codes, commitment, rotation_trick
        self.dead_code_steps, self.sinkhorn_iters = dead_code_steps, sinkhorn_iters
        self.encoder = mlp([dim, hidden, hidden, latent_dim])
        self.decoder = mlp([latent_dim, hidden, hidden, dim])
        self.codebooks = nn.Parameter(torch.randn(n_codes, codebook_size, latent_dim) * 0.1)
        # training-time bookkeeping for dead-code restarts (not saved: a fitted model encodes without it)
        self.register_buffer("last_used", torch.zeros(n_codes, codebook_size, dtype=torch.long), persistent=False)
        self.steps, self.restarts = 0, [0] * n_codes
        self.quantize = True  # False during the autoencoder warm-up: latents go to the decoder unquantized
        self._generator = torch.Generator().manual_seed(seed)
        self._residuals: list[torch.Tensor] = []

    @property
    def code_vocab(self) -> int:
        return self.codebooks.shape[1]

    @torch.no_grad()
    def init_codebooks(self, x: torch.Tensor, iters: int, seed: int) -> None:
        """k-means on the (untrained) encoder's latents of the training items."""
        k = self.codebooks.shape[1]
        self.codebooks.copy_(residual_kmeans(self.encoder(self.standardize(x)), self.n_codes, k, iters, seed))

    def forward(self, x: torch.Tensor):
        z = self.encoder(self.standardize(x))
        if not self.quantize:
            return self.unstandardize(self.decoder(z)), z.new_zeros((len(z), self.n_codes), dtype=torch.long), \
                z.new_zeros(())
        residual, total, codes, aux = z, torch.zeros_like(z), [], z.new_zeros(())
        self._residuals = []
        for level, codebook in enumerate(self.codebooks):
            if self.training and self.sinkhorn_iters and level == self.n_codes - 1:
                dist = torch.cdist(residual.detach(), codebook.detach()).pow(2)
                idx = sinkhorn_assign(dist, self.sinkhorn_iters)
            else:
                idx = nearest(residual.detach(), codebook.detach())
            if self.training:
                self.last_used[level, idx] = self.steps
                self._residuals.append(residual.detach())
            # one-hot matmul rather than codebook[idx]: the backward of an indexed gather accumulates in a
            # thread-dependent order on CPU, which made fits differ from run to run
            q = F.one_hot(idx, len(codebook)).to(codebook.dtype) @ codebook
            # codebook loss moves q to the residual; commitment loss keeps the encoder near its codes
            aux = aux + F.mse_loss(q, residual.detach()) + self.commitment * F.mse_loss(residual, q.detach())
            codes.append(idx)
            total = total + q
            residual = residual - q.detach()
        zq = rotate_to(z, total.detach()) if self.rotation_trick else z + (total - z).detach()
        return self.unstandardize(self.decoder(zq)), torch.stack(codes, 1), aux

    @torch.no_grad()
    def after_step(self) -> None:
        """Called by the fit loop after each optimizer step: restart codes that no item of the last
        `dead_code_steps` batches chose at residuals of the latest batch, drawn with the model's own seeded
        generator (so a fit stays deterministic)."""
        self.steps += 1
        if not self.dead_code_steps or not self._residuals:
            return
        for level, residual in enumerate(self._residuals):
            dead = torch.nonzero(self.steps - self.last_used[level] > self.dead_code_steps).flatten()
            if len(dead) == 0:
                continue
            pick = torch.randint(len(residual), (len(dead),), generator=self._generator)
            self.codebooks[level, dead] = residual[pick.to(residual.device)]
            self.last_used[level, dead] = self.steps
            self.restarts[level] += len(dead)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return residual_encode(self.encoder(self.standardize(x)), self.codebooks)[0]

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        total = sum(self.codebooks[level][codes[:, level]] for level in range(self.n_codes))
        return self.unstandardize(self.decoder(total))


class RQKMeans(Standardized):
    def __init__(self, dim: int, n_codes: int, codebook_size: int):
        super().__init__(dim)
        self.dim, self.n_codes = dim, n_codes
        self.register_buffer("centroids", torch.zeros(n_codes, codebook_size, dim))

    @property
    def code_vocab(self) -> int:
        return self.centroids.shape[1]

    def fit(self, x: torch.Tensor, iters: int, seed: int) -> None:
        self.centroids.copy_(residual_kmeans(self.standardize(x), self.n_codes, self.code_vocab, iters, seed))

    def forward(self, x: torch.Tensor):
        codes, total = residual_encode(self.standardize(x), self.centroids)
        return self.unstandardize(total), codes, x.new_zeros(())

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return residual_encode(self.standardize(x), self.centroids)[0]

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return self.unstandardize(sum(self.centroids[level][codes[:, level]] for level in range(self.n_codes)))
