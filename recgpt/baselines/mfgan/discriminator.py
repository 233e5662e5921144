"""MFGAN's discriminators: one small self-attention encoder per item factor over a user's factor sequence with
the proposed item appended (the last position), each giving P(the sequence is real).

Attention is bidirectional inside a discriminator (it judges a whole sequence, as in RUCAIBox/MFGAN); padding
(-1, its own embedding row, never a factor value) is masked out of the attention.
Fakes keep a real history and replace its last item by one of the generator's top-k next items for that
history, the true item and the history skipped, so a fake is never the real sequence.
"""
import math

import numpy as np
import torch
from torch import nn

from recgpt.baselines.training import pad_right


class FactorDiscriminator(nn.Module):
    def __init__(self, n_values: int, d_model: int, n_layers: int, n_heads: int, dropout: float, max_len: int):
        super().__init__()
        self.n_values, self.d_model = n_values, d_model
        self.emb = nn.Embedding(n_values + 1, d_model, padding_idx=n_values)  # row n_values = padding
        self.pos = nn.Embedding(max_len, d_model)
        layer = nn.TransformerEncoderLayer(d_model, n_heads, 4 * d_model, dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.norm, self.out, self.dropout = nn.LayerNorm(d_model), nn.Linear(d_model, 1), nn.Dropout(dropout)

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        """Float[B] real-vs-fake logits for Long[B, T] factor values right-padded with -1 (last = proposed)."""
        pad = values < 0
        x = self.emb(torch.where(pad, self.n_values, values)) * math.sqrt(self.d_model)
        x = x + self.pos(torch.arange(values.shape[1], device=values.device))
        h = self.norm(self.encoder(self.dropout(x), src_key_padding_mask=pad))
        last = (~pad).sum(1) - 1
        return self.out(h[torch.arange(len(values)), last]).squeeze(-1)


class Discriminators(nn.Module):
    """K factor discriminators over item sequences (catalog rows); `table` Long[K, N] maps rows to factor bins."""

    def __init__(self, table: torch.Tensor, sizes, cfg):
        super().__init__()
        self.register_buffer("table", table.clone())
        self.history = cfg.history
        self.nets = nn.ModuleList(FactorDiscriminator(s, cfg.d_model, cfg.n_layers, cfg.n_heads, cfg.dropout, cfg.history + 1)
                                  for s in sizes)

    def logits(self, sequences: torch.Tensor) -> torch.Tensor:
        """Float[B, K] logits for Long[B, T] item rows right-padded with -1 (only the last history + 1 read)."""
        if sequences.shape[1] > self.history + 1:
            sequences = pad_right([row[row >= 0][-(self.history + 1):].tolist() for row in sequences])
        pad = sequences < 0
        rows = sequences.clamp(min=0)
        return torch.stack([net(torch.where(pad, -1, self.table[k][rows])) for k, net in enumerate(self.nets)], 1)

    def reward(self, sequences: torch.Tensor) -> torch.Tensor:
        """Float[B] in [0, 1]: the mean over factors of P(real)."""
        with torch.no_grad():
            return torch.sigmoid(self.logits(sequences)).mean(1)


def with_last(histories, last) -> torch.Tensor:
    """Long[B, T]: each history with `last[b]` appended, right-padded with -1."""
    return pad_right([list(h) + [int(i)] for h, i in zip(histories, last)])


def fake_sequences(generator, windows, top_k: int, rng: np.random.Generator) -> torch.Tensor:
    """Each window's last item replaced by one of the generator's top-k for the rest (true item and history
    skipped); the generator reads the history only, never the replaced item."""
    histories = [w[:-1] for w in windows]
    with torch.no_grad():
        scores = generator.scores(histories).float()
    for b, w in enumerate(windows):
        scores[b, list(set(w))] = float("-inf")  # the history and the true last item
    k = min(top_k, scores.shape[1] - max(len(set(w)) for w in windows))
    top = scores.topk(k, dim=1).indices
    pick = torch.as_tensor(rng.integers(0, k, len(windows)))
    return with_last(histories, top[torch.arange(len(windows)), pick].tolist())


def discriminator_loss(discs: Discriminators, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of every factor's discriminator, real = 1 and fake = 0, summed over factors."""
    width = max(real.shape[1], fake.shape[1])
    both = torch.cat([nn.functional.pad(real, (0, width - real.shape[1]), value=-1),
                      nn.functional.pad(fake, (0, width - fake.shape[1]), value=-1)])
    labels = torch.cat([torch.ones(len(real)), torch.zeros(len(fake))])
    logits = discs.logits(both)
    return nn.functional.binary_cross_entropy_with_logits(logits, labels[:, None].expand_as(logits),
                                                          reduction="none").mean(0).sum()
