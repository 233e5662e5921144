"""Behaviour input of the item-code decoder for multi-behaviour logs (view / fav / cart / buy).

Two switchable parts, each an embedding added to every code token of an item (on when config.n_behaviors > 0):
- input: the behaviour of the event itself, so a view and a purchase of one item are different inputs;
- target (config.behavior_target): the behaviour of the *next* event, added at the item whose states predict
  it, so the prediction is conditioned on what the user does next ("the next item the user will buy"). In
  training it is the next event's real behaviour (`next_behaviors`); at prediction the caller names it.
It tells item s only the behaviour of event s+1, never its item, so the block-causal mask still hides the target.
Behaviour ids: 0 = none (no behaviour column, padding, an unknown next behaviour), then BEHAVIOR_NAMES[1:].
With n_behaviors = 0 the decoder has no behaviour parameters and its logits are exactly those without them.
"""
from typing import Optional

import torch
from torch import nn


def next_behaviors(behavior: torch.Tensor, segment: torch.Tensor, item_pos: torch.Tensor,
                   target: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Long[B, S]: the behaviour of each item's next item of the same user (0 where there is none); with
    `target` Long[B], each row's last item of segment 1 (the history's end, the position that predicts) gets
    target[b] instead: the behaviour the prediction is conditioned on."""
    from recgpt.model.loss import shift_targets

    shifted, _ = shift_targets(behavior[..., None], segment, item_pos)
    shifted = shifted[..., 0]
    if target is None:
        return shifted
    key = torch.where(segment == 1, item_pos, torch.full_like(item_pos, -1))
    last = key.argmax(dim=1)
    rows = torch.arange(behavior.shape[0], device=behavior.device)
    shifted = shifted.clone()
    shifted[rows, last] = target.to(shifted.dtype)
    return shifted


class BehaviorEmbedding(nn.Module):
    """x Float[B, S, L, d] + input embedding of `behavior` [+ target embedding of `next_behavior`], per item."""

    def __init__(self, config):
        super().__init__()
        self.n_behaviors = config.n_behaviors
        self.input = nn.Embedding(config.n_behaviors, config.d_model)
        self.target = nn.Embedding(config.n_behaviors, config.d_model) if config.behavior_target else None

    def _check(self, ids: torch.Tensor, shape, name: str) -> None:
        if ids.shape != shape:
            raise ValueError(f"{name} must be Long[B, S] = {tuple(shape)}, got {tuple(ids.shape)}")
        if ids.numel() and (ids.min() < 0 or ids.max() >= self.n_behaviors):
            raise ValueError(f"{name} ids must be in [0, n_behaviors={self.n_behaviors}), got "
                             f"[{int(ids.min())}, {int(ids.max())}]")

    def forward(self, x: torch.Tensor, behavior: Optional[torch.Tensor], segment: torch.Tensor,
                item_pos: torch.Tensor, next_behavior: Optional[torch.Tensor] = None) -> torch.Tensor:
        if behavior is None:
            behavior = torch.zeros_like(segment)  # single-behaviour data: every event is "none"
        behavior = torch.where(segment != 0, behavior, torch.zeros_like(behavior))
        self._check(behavior, segment.shape, "behavior")
        x = x + self.input(behavior)[:, :, None]
        if self.target is not None:
            if next_behavior is None:
                next_behavior = next_behaviors(behavior, segment, item_pos)
            next_behavior = torch.where(segment != 0, next_behavior, torch.zeros_like(next_behavior))
            self._check(next_behavior, segment.shape, "next_behavior")
            x = x + self.target(next_behavior)[:, :, None]
        return x
