"""Dense head: the last item's state predicts the next item's (normalized) text embedding.

query(state) = normalize(W . mean over slots of the item's L states)          [B, D]
               (query_skip: normalize(normalize(e_last) + W . mean state), W starting at zero, so an
               untrained query is the last item's own text embedding: content kNN on the last item)
tower(e)     = normalize(u + MLP(u)), u = normalize(e)  (shared by every item) [N, D]
score(b, n)  = query_b . tower(e_n) / temperature

The tower's last layer starts at zero, so an untrained tower is the identity on unit text embeddings and
an item never seen in pretraining is scored through its text alone. Trained with InfoNCE over the distinct
target items of the micro-batch (sampled softmax: the other targets are the negatives).
"""
import torch
import torch.nn.functional as F
from torch import nn


class DenseHead(nn.Module):
    def __init__(self, config):
        super().__init__()
        d, dim = config.d_model, config.dense_dim
        self.temperature = float(config.dense_temperature)
        self.query = nn.Linear(d, dim)
        self.query_skip = bool(getattr(config, "dense_query_skip", False))
        self.tower = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim))

    def zero_tower_output(self) -> None:
        nn.init.zeros_(self.tower[-1].weight)
        nn.init.zeros_(self.tower[-1].bias)
        if self.query_skip:  # the learned part of the query starts at zero beside the skip
            nn.init.zeros_(self.query.weight)
            nn.init.zeros_(self.query.bias)

    def queries(self, item_states: torch.Tensor, own_text=None) -> torch.Tensor:
        """[..., L, d] states of an item (and, with query_skip, its own text embedding [..., D]) -> [..., D]
        unit query for its next item."""
        learned = self.query(item_states.mean(dim=-2)).float()
        if self.query_skip:
            if own_text is None:
                raise ValueError("a dense head with query_skip needs the query item's own text embedding")
            learned = learned + F.normalize(own_text.float(), dim=-1)
        return F.normalize(learned, dim=-1)

    def items(self, text_emb: torch.Tensor) -> torch.Tensor:
        """[N, D] text embeddings -> [N, D] unit item vectors through the shared tower."""
        unit = F.normalize(text_emb.float(), dim=-1)
        return F.normalize(unit + self.tower(unit.to(self.query.weight.dtype)).float(), dim=-1)

    def scores(self, item_states: torch.Tensor, text_emb: torch.Tensor, own_text=None, chunk: int = 8192) -> torch.Tensor:
        """Float[B, N] cosine of each query with every catalog item (the item vectors `chunk` at a time)."""
        q = self.queries(item_states, own_text)
        return torch.cat([q @ self.items(text_emb[i:i + chunk]).t() for i in range(0, len(text_emb), chunk)], dim=1)

    def infonce_sum(self, item_states: torch.Tensor, target_emb: torch.Tensor, own_text=None) -> torch.Tensor:
        """Summed InfoNCE of M predictions [M, L, d] against their targets' text embeddings [M, D]; the
        candidates are the distinct targets (equal embedding rows are one item, never a negative of itself)."""
        candidates, label = torch.unique(target_emb.float(), dim=0, return_inverse=True)
        logits = self.queries(item_states, own_text) @ self.items(candidates).t() / self.temperature
        return F.cross_entropy(logits, label, reduction="sum")


def reference_dense_scores(head: DenseHead, item_states: torch.Tensor, text_emb: torch.Tensor,
                           own_text=None) -> torch.Tensor:
    """Float[B, N], one item at a time: the brute-force loop the batched `scores` is tested against."""
    out = torch.empty(item_states.shape[0], text_emb.shape[0])
    for b in range(item_states.shape[0]):
        query = head.query(item_states[b].mean(dim=0))
        if head.query_skip:
            query = query + own_text[b] / own_text[b].norm()
        query = F.normalize(query, dim=0)
        for n in range(text_emb.shape[0]):
            unit = F.normalize(text_emb[n].float(), dim=0)
            vector = F.normalize(unit + head.tower(unit), dim=0)
            out[b, n] = float((query * vector).sum())
    return out
