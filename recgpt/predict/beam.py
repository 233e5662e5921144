"""Trie-constrained beam search over item codes, batched over users and run on the model's device.

Every step masks the next slot's log-probs with the codes the trie allows after each beam's prefix, so a
finished beam is always a real item's code tuple; a tuple shared by several items (a collision the
tokenizer could not resolve) yields all of them with the same score. `reference_beam_search` is the
simple per-user Python version (nested-dict trie) the batched one is tested against, and with
first=10, per_beam=5, keep=20 it is RecGPT's own prediction-time search.
"""
import heapq
from typing import Callable, Optional

import torch

from recgpt.predict.trie import CodeTrie


def model_head(model) -> str:
    """The code head's kind (parallel or autoregressive); a model without a code head scores exactly."""
    config = getattr(model, "config", None)
    codes = getattr(config, "codes", None)
    return codes.head if codes is not None else getattr(config, "head", "parallel")


@torch.no_grad()
def trie_beam_search(model, state: torch.Tensor, trie: CodeTrie, beam_size: int):
    """Best `beam_size` code tuples per row of `state` [B, L, d]: (leaf ids Long[B, W], log-probs [B, W]).

    Leaf id -1 (score -inf) where the trie has fewer than W tuples. The parallel head ignores the prefix,
    so its slot distributions are computed once per user rather than once per beam.
    """
    if beam_size < 1:
        raise ValueError(f"beam size must be >= 1, got {beam_size}")
    batch, device = state.shape[0], state.device
    parallel = model_head(model) == "parallel"
    nodes = torch.zeros(batch, 1, dtype=torch.long, device=device)
    scores = torch.zeros(batch, 1, device=device)
    prefix = torch.zeros(batch, 1, 0, dtype=torch.long, device=device)
    for depth in range(trie.depth):
        width, vocab = nodes.shape[1], trie.slot_vocab_sizes[depth]
        if parallel:
            logp = model.next_code_logprobs(state, prefix[:, 0]).float()[:, None, :].expand(batch, width, vocab)
        else:
            logp = model.next_code_logprobs(state.repeat_interleave(width, 0), prefix.reshape(batch * width, depth))
            logp = logp.float().view(batch, width, vocab)
        allowed = trie.allowed(depth, nodes.reshape(-1)).view(batch, width, vocab)
        total = (scores[:, :, None] + logp).masked_fill(~allowed, float("-inf"))
        top, idx = total.view(batch, -1).topk(min(beam_size, width * vocab), dim=1)
        beam, code = idx // vocab, idx % vocab
        nodes = trie.child(depth, nodes.gather(1, beam).reshape(-1), code.reshape(-1)).view(beam.shape)
        nodes = torch.where(torch.isfinite(top), nodes, torch.full_like(nodes, -1))
        scores = top
        prefix = torch.cat([prefix.gather(1, beam[:, :, None].expand(-1, -1, depth)), code[:, :, None]], dim=2)
    return nodes, scores


def leaves_to_item_scores(trie: CodeTrie, leaves: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """Dense Float[B, n_items]: each found leaf's score on every item it maps to, -inf elsewhere."""
    batch, width = leaves.shape
    out = torch.full((batch, trie.n_items + 1), float("-inf"), device=leaves.device)  # last column: discard
    live = leaves >= 0
    safe = leaves.clamp(min=0)
    starts = trie.leaf_ptr[safe]
    counts = torch.where(live, trie.leaf_ptr[safe + 1] - starts, torch.zeros_like(starts)).reshape(-1)
    rows = torch.repeat_interleave(torch.arange(batch, device=leaves.device).repeat_interleave(width), counts)
    first = torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
    offset = torch.arange(rows.shape[0], device=leaves.device) - first
    items = trie.leaf_item[torch.repeat_interleave(starts.reshape(-1), counts) + offset]
    out[rows, items] = torch.repeat_interleave(scores.reshape(-1).float(), counts)
    return out[:, :-1]


def beam_item_scores(model, state: torch.Tensor, trie: CodeTrie, beam_size: int) -> torch.Tensor:
    leaves, scores = trie_beam_search(model, state, trie, beam_size)
    return leaves_to_item_scores(trie, leaves, scores)


def reference_beam_search(next_logprobs: Callable[[tuple], torch.Tensor], trie: dict, depth: int,
                          first: int, per_beam: Optional[int], keep: int) -> list[tuple[float, list[int]]]:
    """One user, pure Python: keep `first` codes at slot 0, then expand each beam's best `per_beam` allowed
    children (all when None) and keep the best `keep`. Returns [(log-prob, catalog rows)] best first."""
    beams = [(0.0, (), trie)]
    for k in range(depth):
        candidates = []
        for score, prefix, node in beams:
            logp = next_logprobs(prefix).tolist()
            children = [(score + logp[c], prefix + (c,), child) for c, child in node.items()]
            if k > 0 and per_beam is not None:
                children = heapq.nlargest(per_beam, children, key=lambda t: t[0])
            candidates.extend(children)
        beams = heapq.nlargest(first if k == 0 else keep, candidates, key=lambda t: t[0])
    return [(score, rows) for score, _, rows in beams]
