"""From histories (catalog rows) to next-item log-probs over the whole catalog.

`ItemScorer.log_probs(histories) -> Float[B, N]` is the one interface the protocols and horizon strategies
use: exact full-catalog scoring or the trie-constrained beam (`-inf` outside the beam's items). For the
parallel head the exact path is one fused gather-and-sum: the L slot distributions are concatenated to
[sum V_k, B] and read at the catalog's precomputed [N, L] code index (embedding_bag); the autoregressive head
uses `model.score_items` (teacher-forced over distinct prefixes). `reference_item_scores` scores items one by
one through `next_code_logprobs`, the reference both are tested against.
"""
from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from recgpt.predict.beam import beam_item_scores, model_head
from recgpt.predict.trie import CodeTrie

NEG_INF = float("-inf")


def history_inputs(histories: Sequence[Sequence[int]], item_codes: torch.Tensor, max_items: int,
                   text_emb: Optional[torch.Tensor] = None, device=None) -> dict:
    """Model inputs for a batch of histories (catalog rows, oldest first), left-padded to the longest.

    Each history keeps its most recent `max_items` items; item_pos counts from 0 within what is kept, so
    a row's positions never depend on the other rows of the batch.
    """
    if any(len(h) == 0 for h in histories):
        bad = next(i for i, h in enumerate(histories) if len(h) == 0)
        raise ValueError(f"history {bad} is empty: a next-item prediction needs at least one known item")
    device = device or item_codes.device
    kept = [list(h)[-max_items:] for h in histories]
    width = max(len(h) for h in kept)
    rows = torch.zeros(len(kept), width, dtype=torch.long)
    item_pos = torch.zeros(len(kept), width, dtype=torch.long)
    segment = torch.zeros(len(kept), width, dtype=torch.long)
    for i, h in enumerate(kept):
        rows[i, width - len(h):] = torch.as_tensor(h, dtype=torch.long)
        item_pos[i, width - len(h):] = torch.arange(len(h))
        segment[i, width - len(h):] = 1
    rows = rows.to(item_codes.device)
    inputs = {"codes": item_codes[rows].long().to(device), "item_pos": item_pos.to(device),
              "segment": segment.to(device)}
    if text_emb is not None:
        inputs["text_emb"] = (text_emb[rows.to(text_emb.device)].float()
                              * segment.to(text_emb.device)[..., None]).to(device)
    return inputs


def flat_code_index(item_codes: torch.Tensor, slot_vocab_sizes) -> torch.Tensor:
    """Long[N, L]: position of each (item, slot) code in the slot distributions concatenated over slots."""
    offsets = torch.tensor([0, *slot_vocab_sizes[:-1]], device=item_codes.device).cumsum(0)
    return item_codes.long() + offsets


def parallel_item_scores(model, state: torch.Tensor, flat_index: torch.Tensor) -> torch.Tensor:
    """Float[B, N] exact log-probs for the parallel head: log p(item) = sum over slots of log p(code_k).

    One fused gather-and-sum (embedding_bag) over the [N, L] index into the [sum V_k, B] table of slot
    log-probs: no [B, N, L] intermediate is materialised."""
    batch, n_slots = state.shape[0], flat_index.shape[1]
    empty = [torch.zeros(batch, k, dtype=torch.long, device=state.device) for k in range(n_slots)]
    logp = torch.cat([model.next_code_logprobs(state, empty[k]).float() for k in range(n_slots)], dim=1)
    return F.embedding_bag(flat_index, logp.t().contiguous(), mode="sum").t().contiguous()


def reference_item_scores(model, state: torch.Tensor, item_codes: torch.Tensor) -> torch.Tensor:
    """Float[B, N]: log p(item) = sum over slots of log p(code_k | codes_<k), one item at a time."""
    batch = state.shape[0]
    out = torch.empty(batch, item_codes.shape[0])
    for n, codes in enumerate(item_codes.long().to(state.device)):
        total = torch.zeros(batch, device=state.device)
        for k in range(codes.shape[0]):
            prefix = codes[:k].expand(batch, k)
            total += model.next_code_logprobs(state, prefix).float()[:, codes[k]]
        out[:, n] = total.cpu()
    return out


def top_k_items(scores: torch.Tensor, k: int, exclude: Optional[Sequence[Sequence[int]]] = None):
    """(rows Long[B, k'], scores [B, k']) best first, k' = min(k, N); excluded and -inf entries get row -1."""
    if exclude is not None and any(len(rows) for rows in exclude):
        scores = scores.clone()
        for i, rows in enumerate(exclude):
            if len(rows):
                scores[i, torch.as_tensor(list(rows), dtype=torch.long, device=scores.device)] = NEG_INF
    vals, idx = scores.topk(min(k, scores.shape[1]), dim=1)
    idx = torch.where(torch.isfinite(vals), idx, torch.full_like(idx, -1))
    return idx, vals


class ItemScorer:
    """A model and a catalog (codes [N, L], trie, optional text embeddings) -> next-item log-probs."""

    def __init__(self, model, item_codes: torch.Tensor, trie: CodeTrie, text_emb: Optional[torch.Tensor] = None,
                 mode: str = "auto", beam_size: int = 20, device="cpu"):
        if mode == "auto":
            mode = "exact" if model_head(model) == "parallel" else "trie"
        if mode not in ("exact", "trie"):
            raise ValueError(f"scoring mode must be auto|exact|trie, got {mode!r}")
        self.model, self.mode, self.beam_size, self.device = model, mode, beam_size, torch.device(device)
        self.item_codes = item_codes.long().to(self.device)
        self.parallel = model_head(model) == "parallel"
        self.flat_index = flat_code_index(self.item_codes, list(trie.slot_vocab_sizes))
        self.trie = trie.to(self.device)
        use_text = getattr(getattr(model, "config", None), "text_dim", None)
        self.text_emb = text_emb.to(self.device) if (use_text and text_emb is not None) else None
        self.max_items = int(getattr(getattr(model, "config", None), "max_items", 256))

    @property
    def n_items(self) -> int:
        return self.item_codes.shape[0]

    @torch.no_grad()
    def state(self, histories: Sequence[Sequence[int]]) -> torch.Tensor:
        inputs = history_inputs(histories, self.item_codes, self.max_items, self.text_emb, self.device)
        return self.model.history_state(**inputs)

    @torch.no_grad()
    def log_probs(self, histories: Sequence[Sequence[int]]) -> torch.Tensor:
        state = self.state(histories)
        if self.mode == "exact" and self.parallel:
            return parallel_item_scores(self.model, state, self.flat_index)
        if self.mode == "exact":
            return self.model.score_items(state, self.item_codes).float()
        return beam_item_scores(self.model, state, self.trie, self.beam_size)
