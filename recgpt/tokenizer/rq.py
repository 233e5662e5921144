"""Residual quantizers: RQ-VAE (TIGER: MLP autoencoder, residual codebooks initialised by k-means,
commitment loss, optional rotation trick) and RQ-KMeans (residual k-means on the embeddings, no training).

Level l quantizes the residual left by levels < l to its nearest codebook vector; an item's codes are the
n_codes nearest-vector indices, each in [0, codebook_size).
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
                 commitment: float = 0.25, rotation_trick: bool = False):
        super().__init__(dim)
        self.dim, self.n_codes, self.commitment, self.rotation_trick = dim, n_codes, commitment, rotation_trick
        self.encoder = mlp([dim, hidden, hidden, latent_dim])
        self.decoder = mlp([latent_dim, hidden, hidden, dim])
        self.codebooks = nn.Parameter(torch.randn(n_codes, codebook_size, latent_dim) * 0.1)

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
        residual, total, codes, aux = z, torch.zeros_like(z), [], z.new_zeros(())
        for codebook in self.codebooks:
            idx = nearest(residual.detach(), codebook.detach())
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
