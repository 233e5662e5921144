"""Output heads: hidden states of item s -> distribution over the L codes of the next item.

Both heads share one slot-aware output matrix [sum(V_k), d]: slot k owns rows offsets[k]:offsets[k]+V_k, so
no row is spent on a code that slot k cannot take. `forward` returns logits [..., L, Vmax] with -inf at codes
a slot does not have.
"""
from typing import List, Optional

import torch
from torch import nn


def slot_offsets(slot_vocab_sizes: List[int]) -> List[int]:
    """Start of each slot's code range in a slot-aware table (cumulative sizes)."""
    out, total = [], 0
    for size in slot_vocab_sizes:
        out.append(total)
        total += size
    return out


class _SlotOutput(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.sizes = list(config.slot_vocab_sizes)
        self.offsets = slot_offsets(self.sizes)
        self.out = nn.Linear(config.d_model, sum(self.sizes), bias=False)

    def slot_logits(self, features: torch.Tensor, slot: int) -> torch.Tensor:
        """[..., d] -> [..., V_slot]."""
        start = self.offsets[slot]
        return features @ self.out.weight[start:start + self.sizes[slot]].t()

    def stack_slots(self, per_slot: List[torch.Tensor]) -> torch.Tensor:
        """[..., V_k] for each slot -> [..., L, Vmax], -inf beyond each slot's vocabulary."""
        vmax = max(self.sizes)
        padded = [nn.functional.pad(x, (0, vmax - x.shape[-1]), value=float("-inf")) for x in per_slot]
        return torch.stack(padded, dim=-2)

    def check_items(self, item_codes: torch.Tensor) -> None:
        if item_codes.dim() != 2 or item_codes.shape[1] != len(self.sizes):
            raise ValueError(f"item_codes must be [N, {len(self.sizes)}], got {tuple(item_codes.shape)}")
        sizes = torch.tensor(self.sizes, device=item_codes.device)
        bad = ((item_codes < 0) | (item_codes >= sizes)).any(dim=1)
        if bad.any():
            row = int(bad.nonzero()[0])
            raise ValueError(f"item_codes row {row} = {item_codes[row].tolist()} is out of slot_vocab_sizes {self.sizes}")


class ParallelHead(_SlotOutput):
    """RecGPT's head: position (s, k) predicts slot k of item s+1, so an item's log-prob factorizes over slots."""

    def forward(self, hidden: torch.Tensor, next_codes: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.stack_slots([self.slot_logits(hidden[..., k, :], k) for k in range(len(self.sizes))])

    def next_code_logprobs(self, state: torch.Tensor, prefix: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(self.slot_logits(state[:, prefix.shape[1]], prefix.shape[1]).float(), dim=-1)

    def score_items(self, state: torch.Tensor, item_codes: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
        self.check_items(item_codes)
        total = state.new_zeros(state.shape[0], item_codes.shape[0], dtype=torch.float32)
        for k in range(len(self.sizes)):
            logp = torch.log_softmax(self.slot_logits(state[:, k], k).float(), dim=-1)  # [B, V_k]
            total += logp[:, item_codes[:, k]]
        return total


class AutoregressiveHead(_SlotOutput):
    """Slot k of item s+1 from hidden[s, k] plus the (slot-aware) embeddings of its codes 0..k-1, through a
    residual MLP: p(c_0..c_{L-1}) = prod_k p(c_k | item s, c_0..c_{k-1}). Teacher-forced in training."""

    def __init__(self, config):
        super().__init__(config)
        d = config.d_model
        self.prefix_embedding = nn.Embedding(sum(self.sizes), d)
        self.mlp_norm = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, config.d_ff), nn.GELU(), nn.Linear(config.d_ff, d))
        self.out_norm = nn.LayerNorm(d)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        return self.out_norm(x + self.mlp(self.mlp_norm(x)))

    def _prefix_sum(self, prefix: torch.Tensor) -> torch.Tensor:
        """Long[..., k] codes of slots 0..k-1 -> summed slot-aware embeddings [..., d]."""
        offsets = torch.tensor(self.offsets[:prefix.shape[-1]], dtype=torch.long, device=prefix.device)
        return self.prefix_embedding(prefix + offsets).sum(dim=-2)

    def forward(self, hidden: torch.Tensor, next_codes: torch.Tensor) -> torch.Tensor:
        offsets = torch.tensor(self.offsets, device=next_codes.device)
        emb = self.prefix_embedding(next_codes + offsets)  # [B, S, L, d]
        exclusive = emb.cumsum(dim=-2) - emb  # slot k sees codes 0..k-1 only
        features = self._features(hidden + exclusive.to(hidden.dtype))
        return self.stack_slots([self.slot_logits(features[..., k, :], k) for k in range(len(self.sizes))])

    def next_code_logprobs(self, state: torch.Tensor, prefix: torch.Tensor) -> torch.Tensor:
        k = prefix.shape[1]
        features = self._features(state[:, k] + self._prefix_sum(prefix).to(state.dtype))
        return torch.log_softmax(self.slot_logits(features, k).float(), dim=-1)

    def score_items(self, state: torch.Tensor, item_codes: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
        """Exact teacher-forced log-probs; each distinct prefix is evaluated once, `chunk` prefixes at a time."""
        self.check_items(item_codes)
        batch, n_items = state.shape[0], item_codes.shape[0]
        total = state.new_zeros(batch, n_items, dtype=torch.float32)
        for k in range(len(self.sizes)):
            if k == 0:
                prefixes = item_codes[:1, :0]
                which = torch.zeros(n_items, dtype=torch.long, device=item_codes.device)
            else:
                prefixes, which = torch.unique(item_codes[:, :k], dim=0, return_inverse=True)
            order = which.argsort()
            bounds = torch.searchsorted(which[order], torch.arange(0, len(prefixes) + chunk, chunk, device=which.device))
            for i, lo in enumerate(range(0, len(prefixes), chunk)):
                block = prefixes[lo:lo + chunk]
                features = self._features(state[:, None, k] + self._prefix_sum(block).to(state.dtype)[None])
                logp = torch.log_softmax(self.slot_logits(features, k).float(), dim=-1)  # [B, chunk, V_k]
                items = order[bounds[i]:bounds[i + 1]]
                total[:, items] += logp[:, which[items] - lo, item_codes[items, k]]
        return total
