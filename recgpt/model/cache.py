"""KV cache of the item-code decoder: encode a batch of histories once, then append one item per row.

Each row holds one user (segment 1). The cache keeps, per layer, the keys and values of every token encoded so
far ([B, H, T, Dh]) and which of the T tokens are real (`valid`: left padding of the first encode is not). An
appended item's L tokens attend every real cached token of their row and each other, which is exactly the
block-causal rule (recgpt.model.attention) for the row's newest item: every earlier item of the user has a smaller
item_pos. Its position is the row's own item count, so padding never changes a row. Layer l's keys and values of
an item depend on earlier items only, so the cached ones are those a re-encoding would compute (to float rounding:
SDPA sums over a different set of masked keys).

A history longer than max_items is encoded through its last max_items items (positions 0..max_items-1), so
appending to a full row shifts every position: such a row is encoded again (`put` replaces its cache rows).

    cache = KVCache.empty(model, batch)
    state = model.history_state(**history_inputs(...), past=cache)       # [B, L, d], the rows' last items
    state = append_items(model, cache, codes Long[B, L], text Float[B, D])  # each row one item longer
"""
from typing import List, Optional

import torch
import torch.nn.functional as F

from recgpt.model.attention import block_causal_mask


class LayerCache:
    """One layer's keys and values [B, H, T, Dh] (None before the first encode)."""

    def __init__(self, keys: Optional[torch.Tensor] = None, values: Optional[torch.Tensor] = None):
        self.keys, self.values = keys, values

    def attend(self, q, k, v, mask: torch.Tensor) -> torch.Tensor:
        """Keep the new tokens' k, v after the cached ones; SDPA of q over all of them (mask Bool[B, Tq, T])."""
        if self.keys is not None:
            k, v = torch.cat([self.keys, k], dim=2), torch.cat([self.values, v], dim=2)
        self.keys, self.values = k, v
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None])


class KVCache:
    """Per-layer keys and values of B rows, which cached tokens are real (Bool[B, T]) and each row's item count
    (Long[B], the position of its next item)."""

    def __init__(self, layers: List[LayerCache], valid: torch.Tensor, n_items: torch.Tensor):
        self.layers, self.valid, self.n_items = layers, valid, n_items

    @classmethod
    def empty(cls, model, batch: int, device=None) -> "KVCache":
        device = device or next(model.parameters()).device
        return cls([LayerCache() for _ in model.blocks], torch.zeros(batch, 0, dtype=torch.bool, device=device),
                   torch.zeros(batch, dtype=torch.long, device=device))

    @property
    def batch(self) -> int:
        return self.valid.shape[0]

    def extend(self, item_pos: torch.Tensor, segment: torch.Tensor, n_slots: int) -> torch.Tensor:
        """Called by the decoder's encode for new items (item_pos, segment [B, S]): Bool[B, S*L, T + S*L], where
        a new token may attend (every real cached token of its row, the new ones by the block-causal rule)."""
        if segment.shape[0] != self.batch:
            raise ValueError(f"the cache holds {self.batch} rows, the items {segment.shape[0]}")
        if (segment > 1).any():
            raise ValueError("a KV cache holds one user per row (segment 0 or 1)")
        if self.valid.shape[1] and ((segment == 1) & (item_pos != self.n_items[:, None])).any():
            raise ValueError("an appended item's item_pos must be its row's item count (cache.n_items)")
        new = (segment != 0).repeat_interleave(n_slots, dim=1)
        cached = self.valid[:, None, :] & new[:, :, None]
        mask = torch.cat([cached, block_causal_mask(item_pos, segment, n_slots)], dim=2)
        self.valid = torch.cat([self.valid, new], dim=1)
        self.n_items = self.n_items + (segment != 0).sum(dim=1)
        return mask

    def select(self, rows) -> "KVCache":
        """A new cache of the given rows (Long[B'] or a list; a row may repeat), e.g. beams or samples of one user."""
        rows = torch.as_tensor(rows, dtype=torch.long, device=self.valid.device)
        layers = [LayerCache(c.keys.index_select(0, rows), c.values.index_select(0, rows)) for c in self.layers]
        return KVCache(layers, self.valid.index_select(0, rows), self.n_items.index_select(0, rows))

    def widen(self, width: int) -> None:
        """Pad every row with invalid tokens up to `width` tokens (where they sit does not matter: masked)."""
        extra = width - self.valid.shape[1]
        if extra > 0:
            for c in self.layers:
                c.keys, c.values = F.pad(c.keys, (0, 0, 0, extra)), F.pad(c.values, (0, 0, 0, extra))
            self.valid = F.pad(self.valid, (0, extra))

    def put(self, rows, other: "KVCache") -> None:
        """Replace the given rows with the rows of `other` (same count, same model)."""
        rows = torch.as_tensor(rows, dtype=torch.long, device=self.valid.device)
        width = max(self.valid.shape[1], other.valid.shape[1])
        self.widen(width)
        other.widen(width)
        for mine, theirs in zip(self.layers, other.layers):
            mine.keys[rows], mine.values[rows] = theirs.keys, theirs.values
        self.valid[rows], self.n_items[rows] = other.valid, other.n_items


@torch.no_grad()
def append_items(model, cache: KVCache, codes: torch.Tensor, text_emb: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Append one item per row (codes Long[B, L], its text embedding Float[B, D] when the model reads text) at
    each row's next position; -> Float[B, L, d], the states of the appended items (the rows' new last items)."""
    if (cache.n_items >= model.config.max_items).any():
        row = int((cache.n_items >= model.config.max_items).nonzero()[0])
        raise ValueError(f"cache row {row} already holds max_items={model.config.max_items} items: encode its "
                         "last max_items items again instead of appending")
    segment = torch.ones_like(cache.n_items)[:, None]
    text = None if text_emb is None else text_emb[:, None]
    return model.history_state(codes[:, None], cache.n_items[:, None].clone(), segment, text, past=cache)
