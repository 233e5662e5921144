"""FSQ grid geometry of item codes: a code's coordinates, and code embeddings built from them.

An FSQ slot with levels [L_0, ..., L_{m-1}] holds code c = sum_j digit_j * prod(L_<j) (the tokenizer's
`FSQ.indices_to_codes` order, first level least significant). Its grid coordinates are the quantized latent
values the tokenizer produced, (digit_j - L_j // 2) / (L_j // 2), in [-1, 1]. Codes that are near on the grid
came from near text embeddings, so an embedding that is a function of the coordinates gives a code never seen
in pretraining a meaningful vector, unlike a lookup row that only training moves.
"""
import math
from typing import List, Sequence

import torch
import torch.nn.functional as F
from torch import nn


def grid_digits(levels: Sequence[int]) -> torch.Tensor:
    """Long[prod(levels), len(levels)]: digit j of every code of the grid."""
    levels_t = torch.tensor(list(levels), dtype=torch.long)
    basis = torch.cumprod(torch.tensor([1] + list(levels)[:-1], dtype=torch.long), 0)
    codes = torch.arange(math.prod(levels), dtype=torch.long)
    return (codes[:, None] // basis) % levels_t


def grid_coordinates(levels: Sequence[int]) -> torch.Tensor:
    """Float[prod(levels), len(levels)]: normalized grid coordinates of every code (as the FSQ tokenizer's)."""
    half = torch.tensor([level // 2 for level in levels], dtype=torch.float32)
    return (grid_digits(levels).float() - half) / half


class GridCodeEmbedding(nn.Module):
    """embedding(c) = W . coords(c) [+ residual[c]]: a learned projection of the code's grid coordinates, plus
    an optional per-code residual table that starts at zero (an unseen code is its projection alone)."""

    def __init__(self, levels: Sequence[int], d_model: int, residual: bool):
        super().__init__()
        self.levels = list(levels)
        self.register_buffer("coords", grid_coordinates(self.levels), persistent=False)
        self.project = nn.Linear(len(self.levels), d_model, bias=False)  # the slot embedding is the bias
        self.residual = nn.Embedding(len(self.coords), d_model) if residual else None

    @property
    def num_embeddings(self) -> int:
        return len(self.coords)

    @torch.no_grad()
    def reset_derived(self) -> None:
        """The coordinates: a non-persistent buffer, rebuilt when transformers materializes the model."""
        self.coords.copy_(grid_coordinates(self.levels))

    @torch.no_grad()
    def zero_residual(self) -> None:
        if self.residual is not None:
            self.residual.weight.zero_()

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        x = self.project(self.coords[codes].to(self.project.weight.dtype))
        return x if self.residual is None else x + self.residual(codes)

    def matrix(self) -> torch.Tensor:
        """Float[V, d]: the embedding of every code (the tied output matrix of a full head)."""
        x = self.project(self.coords.to(self.project.weight.dtype))
        return x if self.residual is None else x + self.residual.weight


class TiedGridOutput(nn.Module):
    """Output layer of a full head tied to a grid embedding: logits = features . embedding(c) for every code.
    The embedding is held outside the module tree (it is registered once, in the decoder)."""

    def __init__(self, embedding: GridCodeEmbedding):
        super().__init__()
        self._embedding: List[GridCodeEmbedding] = [embedding]
        self.out_features = embedding.num_embeddings

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return F.linear(features, self._embedding[0].matrix().to(features.dtype))


def slot_levels_of(slot_vocab_sizes: Sequence[int], slot_levels) -> List[list]:
    """Per slot: its FSQ levels, or [] for a slot that is not an FSQ grid (e.g. the disambiguation slot)."""
    levels = [list(x or []) for x in (slot_levels or [])] or [[] for _ in slot_vocab_sizes]
    return [[int(v) for v in x] for x in levels]
