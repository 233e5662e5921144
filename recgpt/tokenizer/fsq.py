"""Finite scalar quantization (Mentzer et al. 2023) and the FSQ item autoencoder.

Each latent value is bounded with tanh to `level` buckets and rounded; the straight-through estimator passes
the gradient of the rounding through unchanged. One latent slot of len(levels) values is one code in
[0, prod(levels)). Encoders: `reshape` (RecGPT: the D-dim embedding cut into n_codes chunks of D/n_codes,
one shared linear chunk -> len(levels), mirrored by a shared linear decoder, as an FSQ layer with
project_in/out does) and `mlp` (an MLP to n_codes latent slots and an MLP decoder from all of them).
"""
import torch
from torch import nn


def round_ste(z: torch.Tensor) -> torch.Tensor:
    return z + (z.round() - z).detach()


class FSQ(nn.Module):
    def __init__(self, levels: list[int], eps: float = 1e-3):
        super().__init__()
        levels_t = torch.tensor(levels, dtype=torch.long)
        self.register_buffer("levels", levels_t, persistent=False)
        self.register_buffer("basis", torch.cumprod(torch.tensor([1] + levels[:-1]), 0), persistent=False)
        self.eps = eps
        self.codebook_size = int(torch.prod(levels_t))

    def bound(self, z: torch.Tensor) -> torch.Tensor:
        """Squash to (-L/2, L/2) so that rounding gives exactly L integer values (odd/even L alike)."""
        half_l = (self.levels - 1) * (1 + self.eps) / 2
        offset = torch.where(self.levels % 2 == 0, 0.5, 0.0)
        shift = torch.atanh(offset / half_l)
        return torch.tanh(z + shift) * half_l - offset

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Quantized values in [-1, 1] (normalised by L // 2), same shape as z [..., len(levels)]."""
        return round_ste(self.bound(z)) / (self.levels // 2)

    def codes_to_indices(self, zhat: torch.Tensor) -> torch.Tensor:
        half = self.levels // 2
        digits = (zhat * half + half).round().long()
        return (digits * self.basis).sum(-1)

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        half = self.levels // 2
        digits = (indices.unsqueeze(-1) // self.basis) % self.levels
        return (digits - half).float() / half


class Standardized(nn.Module):
    """Base of the item autoencoders: inputs are shifted and scaled per dimension by statistics of the training
    items (set once by `set_standardization`; identity until then), outputs mapped back. Raw sentence
    embeddings have values ~1/sqrt(D): without this a tanh-bounded latent starts near one code."""

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("shift", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(dim))

    @torch.no_grad()
    def set_standardization(self, x: torch.Tensor) -> None:
        self.shift.copy_(x.mean(0))
        self.scale.copy_(x.std(0).clamp_min(1e-6))

    def standardize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.shift) / self.scale

    def unstandardize(self, y: torch.Tensor) -> torch.Tensor:
        return y * self.scale + self.shift


def mlp(sizes: list[int]) -> nn.Sequential:
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.GELU())
    return nn.Sequential(*layers)


class FSQAutoencoder(Standardized):
    """forward(x) -> (reconstruction, codes [N, n_codes], auxiliary loss); encode / decode for inference."""

    def __init__(self, dim: int, n_codes: int, levels: list[int], encoder: str = "mlp", hidden: int = 512):
        super().__init__(dim)
        self.dim, self.n_codes, self.encoder_kind = dim, n_codes, encoder
        self.fsq = FSQ(levels)
        width = len(levels)
        if encoder == "reshape":
            if dim % n_codes:
                raise ValueError(f"tokenizer.encoder=reshape needs the embedding dim {dim} to be divisible by "
                                 f"tokenizer.n_codes={n_codes}")
            self.encoder = nn.Linear(dim // n_codes, width)
            self.decoder = nn.Linear(width, dim // n_codes)
        elif encoder == "mlp":
            self.encoder = mlp([dim, hidden, hidden, n_codes * width])
            self.decoder = mlp([n_codes * width, hidden, hidden, dim])
        else:
            raise ValueError(f"unknown FSQ encoder {encoder!r}")

    @property
    def code_vocab(self) -> int:
        return self.fsq.codebook_size

    def latent(self, x: torch.Tensor) -> torch.Tensor:
        n, x = x.shape[0], self.standardize(x)
        if self.encoder_kind == "reshape":
            return self.encoder(x.reshape(n, self.n_codes, -1))
        return self.encoder(x).reshape(n, self.n_codes, -1)

    def _decode_quantized(self, zq: torch.Tensor) -> torch.Tensor:
        n = zq.shape[0]
        if self.encoder_kind == "reshape":
            return self.unstandardize(self.decoder(zq).reshape(n, self.dim))
        return self.unstandardize(self.decoder(zq.reshape(n, -1)))

    def forward(self, x: torch.Tensor):
        zq = self.fsq(self.latent(x))
        return self._decode_quantized(zq), self.fsq.codes_to_indices(zq), x.new_zeros(())

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.fsq.codes_to_indices(self.fsq(self.latent(x)))

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return self._decode_quantized(self.fsq.indices_to_codes(codes))
