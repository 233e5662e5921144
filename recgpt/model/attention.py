"""Block-causal attention over item codes: the mask rule, an SDPA reference and a FlexAttention fast path.

Rule: token (s, k) (slot k of the s-th stored item) attends token (s', k') iff
segment[s] == segment[s'] != 0 and item_pos[s'] <= item_pos[s]. The L tokens of one item see each other,
items see earlier items of the same user only, and users packed in one row never see each other. Positions
come from item_pos, not the storage offset, so padding side and packing do not change the result. Padding
tokens (segment 0) attend to themselves only, which keeps their (unused) outputs finite.
"""
import torch
import torch.nn.functional as F
from torch.nn.attention.flex_attention import BlockMask, create_block_mask, flex_attention

_compiled_flex = None


def token_layout(item_pos: torch.Tensor, segment: torch.Tensor, n_slots: int):
    """Per-token item position and segment, [B, S*L] each (token s*L + k is slot k of item s)."""
    return item_pos.repeat_interleave(n_slots, dim=1), segment.repeat_interleave(n_slots, dim=1)


def block_causal_mask(item_pos: torch.Tensor, segment: torch.Tensor, n_slots: int) -> torch.Tensor:
    """Bool[B, S*L, S*L]: True where the query token (row) may attend the key token (column)."""
    seg_q, seg_k = segment[:, :, None], segment[:, None, :]
    items = (seg_q == seg_k) & (seg_q != 0) & (item_pos[:, None, :] <= item_pos[:, :, None])  # [B, S, S]
    mask = items.repeat_interleave(n_slots, dim=1).repeat_interleave(n_slots, dim=2)
    return mask | torch.eye(mask.shape[-1], dtype=torch.bool, device=mask.device)


def sdpa_attention(q, k, v, mask: torch.Tensor, dropout_p: float = 0.0) -> torch.Tensor:
    """Reference: q, k, v [B, H, T, Dh]; mask Bool[B, T, T] from `block_causal_mask`."""
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None], dropout_p=dropout_p)


def flex_block_mask(item_pos: torch.Tensor, segment: torch.Tensor, n_slots: int) -> BlockMask:
    """The same rule as `block_causal_mask`, as a FlexAttention BlockMask (skips fully masked tiles)."""
    tok_pos, tok_seg = token_layout(item_pos, segment, n_slots)
    batch, length = tok_pos.shape

    def mask_mod(b, h, q_idx, kv_idx):
        same_user = (tok_seg[b, q_idx] == tok_seg[b, kv_idx]) & (tok_seg[b, q_idx] != 0)
        return (same_user & (tok_pos[b, kv_idx] <= tok_pos[b, q_idx])) | (q_idx == kv_idx)

    return create_block_mask(mask_mod, batch, None, length, length, device=tok_pos.device)


def flex_block_attention(q, k, v, block_mask: BlockMask) -> torch.Tensor:
    """Fast path: q, k, v [B, H, T, Dh]. Compiled (fused kernel) on CUDA; eager elsewhere, which torch runs
    as an unfused reference (it warns once) and is only meant for testing the mask on CPU."""
    global _compiled_flex
    if q.is_cuda:
        if _compiled_flex is None:
            _compiled_flex = torch.compile(flex_attention)
        return _compiled_flex(q, k, v, block_mask=block_mask)
    return flex_attention(q, k, v, block_mask=block_mask)
