"""Next-item targets and the token-summed cross-entropy (the caller divides by the token count)."""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F

IGNORE = -100


def shift_targets(
    codes: torch.Tensor, segment: torch.Tensor, item_pos: Optional[torch.Tensor] = None
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Codes of each item's next item and where such a target exists.

    codes Long[B, S, L], segment Long[B, S] (0 = padding), item_pos Long[B, S] (optional).
    Returns next_codes Long[B, S, L] (codes of stored item s+1; 0 where there is no target, so it is always a
    valid index) and target_mask Bool[B, S]: item s is real, item s+1 has the same segment and, when item_pos
    is given, item_pos[s+1] == item_pos[s] + 1. Items of one user are stored in order in training layouts
    (left or right padding, several users packed in a row), so the next stored item is the next item.
    """
    same = (segment[:, :-1] != 0) & (segment[:, 1:] == segment[:, :-1])
    if item_pos is not None:
        same = same & (item_pos[:, 1:] == item_pos[:, :-1] + 1)
    target_mask = F.pad(same, (0, 1), value=False)
    next_codes = F.pad(codes[:, 1:], (0, 0, 0, 1), value=0)
    next_codes = torch.where(target_mask[..., None], next_codes, torch.zeros_like(next_codes))
    return next_codes, target_mask


def next_item_loss(
    logits: torch.Tensor, codes: torch.Tensor, item_pos: torch.Tensor, segment: torch.Tensor
) -> Tuple[torch.Tensor, torch.Tensor]:
    """(loss_sum, n_tokens): cross-entropy summed over real target tokens, and how many there are.

    logits Float[B, S, L, Vmax] from `ItemCodeDecoder` (logits at item s predict the L codes of item s+1);
    codes, item_pos, segment as given to the model. Items without a next item of the same user (the last
    one, padding) contribute nothing. Mean loss = loss_sum / n_tokens; summing both over batches and ranks
    before dividing gives the token-weighted held-out loss. Computed in fp32.
    """
    next_codes, target_mask = shift_targets(codes, segment, item_pos)
    targets = torch.where(target_mask[..., None], next_codes, torch.full_like(next_codes, IGNORE))
    loss_sum = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1), ignore_index=IGNORE, reduction="sum"
    )
    n_tokens = target_mask.sum() * codes.shape[-1]
    return loss_sum, n_tokens
