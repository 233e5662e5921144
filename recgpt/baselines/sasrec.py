"""SASRec+ : SASRec (Kang & McAuley 2018) trained with full-softmax cross-entropy over all items at every
position ("Turning Dross Into Gold Loss", Klenitskiy & Vasilev 2023) instead of one sampled negative.

`SASRecNet(items, extra) -> Float[B, T, N]` next-item logits at every position under a causal mask, reusable as
a generator (MFGAN) or with an extra per-event embedding (e.g. a behaviour) added to the input. Rows are
right-padded with -1; positions count from the first item of the window, so padding never changes a logit.
"""
import math
from typing import Optional

import torch
from torch import nn

from recgpt.baselines.training import TorchBaseline


class SASRecNet(nn.Module):
    def __init__(self, n_items: int, d_model: int, n_layers: int, n_heads: int, dropout: float, max_len: int,
                 extra_dim: int = 0):
        super().__init__()
        self.n_items, self.d_model = n_items, d_model
        self.item_emb = nn.Embedding(n_items + 1, d_model, padding_idx=n_items)  # row n_items = padding
        self.pos_emb = nn.Embedding(max_len, d_model)
        self.extra = nn.Linear(extra_dim, d_model) if extra_dim else None
        layer = nn.TransformerEncoderLayer(d_model, n_heads, 4 * d_model, dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        for emb in (self.item_emb, self.pos_emb):  # small, as in GPT-2: the output layer is tied to item_emb
            nn.init.normal_(emb.weight, std=0.02)

    def hidden(self, items: torch.Tensor, extra: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Float[B, T, D] for Long[B, T] rows (-1 = padding) and an optional Float[B, T, extra_dim]."""
        t = items.shape[1]
        x = self.item_emb(torch.where(items < 0, self.n_items, items)) * math.sqrt(self.d_model)
        x = x + self.pos_emb(torch.arange(t, device=items.device))
        if extra is not None:
            x = x + self.extra(extra)
        causal = nn.Transformer.generate_square_subsequent_mask(t, device=items.device, dtype=x.dtype)
        return self.norm(self.encoder(self.dropout(x), mask=causal, is_causal=True))

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden @ self.item_emb.weight[:self.n_items].T

    def forward(self, items, extra=None):
        return self.logits(self.hidden(items, extra))


def causal_ce(hidden: torch.Tensor, batch: torch.Tensor, logits_fn) -> torch.Tensor:
    """Full-softmax next-item cross-entropy; position t predicts item t+1, padded targets left out."""
    targets = batch[:, 1:]
    keep = targets >= 0
    return nn.functional.cross_entropy(logits_fn(hidden[:, :-1][keep]), targets[keep])


def last_positions(histories) -> torch.Tensor:
    return torch.as_tensor([len(h) - 1 for h in histories], dtype=torch.long)


class CausalBaseline(TorchBaseline):
    """A next-item model whose `net_class(n_items, d, layers, heads, dropout, positions)` has hidden / logits."""
    generative = True
    net_class = SASRecNet

    def build(self):
        c = self.cfg
        return self.net_class(self.n_items, c.d_model, c.n_layers, c.n_heads, c.dropout, c.max_len + 1)

    def loss(self, batch):
        return causal_ce(self.net.hidden(batch), batch, self.net.logits)

    def scores(self, histories, users=None):
        from recgpt.baselines.training import pad_right

        recent = self.recent(histories, self.cfg.max_len)
        hidden = self.net.hidden(pad_right(recent))
        return self.net.logits(hidden[torch.arange(len(recent)), last_positions(recent)])


class SASRec(CausalBaseline):
    name = "sasrec"
