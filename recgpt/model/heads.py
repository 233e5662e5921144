"""Output heads: hidden states of item s -> distribution over the L codes of the next item.

Slot k has its own output matrix [V_k, d] (`out[k]`), so no row is spent on a code that slot k cannot take;
with tied embeddings it is the slot's code embedding. `forward` returns logits [..., L, Vmax] with -inf at codes
a slot does not have. Weights are only used through module calls, so DeepSpeed ZeRO-3 can gather them.
`FactorizedHead` predicts an FSQ slot's grid dimensions separately (8+8+8+6+5 logits instead of 15,360).
"""
from typing import List

import torch
import torch.nn.functional as F
from torch import nn

from recgpt.model.grid import grid_digits, slot_levels_of


class _SlotOutput(nn.Module):
    def __init__(self, config, widths=None):
        super().__init__()
        self.sizes = list(config.slot_vocab_sizes)
        widths = widths or self.sizes
        self.out = nn.ModuleList(nn.Linear(config.d_model, width, bias=False) for width in widths)

    def slot_logits(self, features: torch.Tensor, slot: int) -> torch.Tensor:
        """[..., d] -> [..., V_slot]."""
        return self.out[slot](features)

    def slot_logprobs(self, features: torch.Tensor, slot: int) -> torch.Tensor:
        """[..., d] -> fp32 [..., V_slot] log-probs of the slot's codes."""
        return torch.log_softmax(self.slot_logits(features, slot).float(), dim=-1)

    def slot_loss_sum(self, features: torch.Tensor, slot: int, targets: torch.Tensor) -> torch.Tensor:
        """Summed cross-entropy of the slot's target codes Long[N] from features [N, d] (fp32)."""
        return F.cross_entropy(self.slot_logits(features, slot).float(), targets, reduction="sum")

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

    def forward(self, hidden: torch.Tensor, next_codes=None) -> torch.Tensor:
        return self.stack_slots([self.slot_logits(hidden[..., k, :], k) for k in range(len(self.sizes))])

    def next_code_logprobs(self, state: torch.Tensor, prefix: torch.Tensor) -> torch.Tensor:
        return self.slot_logprobs(state[:, prefix.shape[1]], prefix.shape[1])

    def score_items(self, state: torch.Tensor, item_codes: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
        self.check_items(item_codes)
        total = state.new_zeros(state.shape[0], item_codes.shape[0], dtype=torch.float32)
        for k in range(len(self.sizes)):
            total += self.slot_logprobs(state[:, k], k)[:, item_codes[:, k]]  # [B, V_k] gathered
        return total


def digit_index(levels) -> torch.Tensor:
    """Long[prod(levels), len(levels)]: where digit j of each code sits among the concatenated per-dimension logits."""
    return grid_digits(levels) + torch.tensor([0, *levels[:-1]]).cumsum(0)


class FactorizedHead(ParallelHead):
    """Parallel head whose FSQ slots get one softmax per grid dimension: p(c) = prod_j p_j(digit_j(c)).

    Slot k with levels [L_0..L_{m-1}] has sum(L_j) logits; as one softmax over the slot's prod(L_j) codes
    its logits are logit(c) = sum_j logit_j[digit_j(c)] (`slot_logits`, the reference), whose log-softmax is
    exactly the sum of the per-dimension log-softmaxes (`slot_logprobs`, `slot_loss_sum`). Slots that are not
    a grid (the disambiguation slot) keep a full output layer.
    """

    def __init__(self, config):
        self.levels = slot_levels_of(config.slot_vocab_sizes, config.slot_levels)
        super().__init__(config, [sum(lv) if lv else size for lv, size in zip(self.levels, config.slot_vocab_sizes)])
        for k, lv in enumerate(self.levels):
            if lv:  # index of each code's digit j in the concatenated per-dimension logits
                self.register_buffer(f"digit_index_{k}", digit_index(lv), persistent=False)

    @torch.no_grad()
    def reset_derived(self) -> None:
        """The digit indices (non-persistent buffers, rebuilt when transformers materializes the model)."""
        for k, lv in enumerate(self.levels):
            if lv:
                getattr(self, f"digit_index_{k}").copy_(digit_index(lv))

    def _dimension_logprobs(self, features: torch.Tensor, slot: int) -> torch.Tensor:
        """[..., d] -> fp32 [..., sum(L_j)]: per-dimension log-softmaxes, concatenated."""
        raw = self.out[slot](features).float()
        return torch.cat([torch.log_softmax(x, dim=-1) for x in raw.split(self.levels[slot], dim=-1)], dim=-1)

    def slot_logits(self, features: torch.Tensor, slot: int) -> torch.Tensor:
        if not self.levels[slot]:
            return super().slot_logits(features, slot)
        return self.out[slot](features)[..., getattr(self, f"digit_index_{slot}")].sum(-1)

    def slot_logprobs(self, features: torch.Tensor, slot: int) -> torch.Tensor:
        if not self.levels[slot]:
            return super().slot_logprobs(features, slot)
        return self._dimension_logprobs(features, slot)[..., getattr(self, f"digit_index_{slot}")].sum(-1)

    def slot_loss_sum(self, features: torch.Tensor, slot: int, targets: torch.Tensor) -> torch.Tensor:
        if not self.levels[slot]:
            return super().slot_loss_sum(features, slot, targets)
        logp = self._dimension_logprobs(features, slot)  # [N, sum L]
        return -logp.gather(1, getattr(self, f"digit_index_{slot}")[targets]).sum()


class AutoregressiveHead(_SlotOutput):
    """Slot k of item s+1 from hidden[s, k] plus the slot embeddings of its codes 0..k-1, through a
    residual MLP: p(c_0..c_{L-1}) = prod_k p(c_k | item s, c_0..c_{k-1}). Teacher-forced in training."""

    def __init__(self, config):
        super().__init__(config)
        d = config.d_model
        self.prefix_embedding = nn.ModuleList(nn.Embedding(size, d) for size in self.sizes)
        self.mlp_norm = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, config.d_ff), nn.GELU(), nn.Linear(config.d_ff, d))
        self.out_norm = nn.LayerNorm(d)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        return self.out_norm(x + self.mlp(self.mlp_norm(x)))

    def _prefix_sum(self, prefix: torch.Tensor, width: int) -> torch.Tensor:
        """Long[..., k] codes of slots 0..k-1 -> sum of their slot embeddings [..., d] (zeros when k = 0)."""
        total = prefix.new_zeros(*prefix.shape[:-1], width, dtype=torch.float32)
        for j in range(prefix.shape[-1]):
            total = total + self.prefix_embedding[j](prefix[..., j])
        return total

    def forward(self, hidden: torch.Tensor, next_codes: torch.Tensor) -> torch.Tensor:
        emb = torch.stack([self.prefix_embedding[k](next_codes[..., k]) for k in range(len(self.sizes))], dim=-2)
        exclusive = emb.cumsum(dim=-2) - emb  # slot k sees codes 0..k-1 only
        features = self._features(hidden + exclusive.to(hidden.dtype))
        return self.stack_slots([self.slot_logits(features[..., k, :], k) for k in range(len(self.sizes))])

    def next_code_logprobs(self, state: torch.Tensor, prefix: torch.Tensor) -> torch.Tensor:
        k = prefix.shape[1]
        features = self._features(state[:, k] + self._prefix_sum(prefix, state.shape[-1]).to(state.dtype))
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
                features = self._features(state[:, None, k] + self._prefix_sum(block, state.shape[-1]).to(state.dtype)[None])
                logp = torch.log_softmax(self.slot_logits(features, k).float(), dim=-1)  # [B, chunk, V_k]
                items = order[bounds[i]:bounds[i + 1]]
                total[:, items] += logp[:, which[items] - lo, item_codes[items, k]]
        return total
