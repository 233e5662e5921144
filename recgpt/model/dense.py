"""Dense head: the last item's state predicts the next item's (normalized) text embedding.

query(state) = normalize(W . mean over slots of the item's L states)          [B, D]
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
        self.tower = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim))

    def zero_tower_output(self) -> None:
        nn.init.zeros_(self.tower[-1].weight)
        nn.init.zeros_(self.tower[-1].bias)

    def queries(self, item_states: torch.Tensor) -> torch.Tensor:
        """[..., L, d] states of an item -> [..., D] unit query for its next item."""
        return F.normalize(self.query(item_states.mean(dim=-2)).float(), dim=-1)

    def items(self, text_emb: torch.Tensor) -> torch.Tensor:
        """[N, D] text embeddings -> [N, D] unit item vectors through the shared tower."""
        unit = F.normalize(text_emb.float(), dim=-1)
        return F.normalize(unit + self.tower(unit.to(self.query.weight.dtype)).float(), dim=-1)

    def scores(self, item_states: torch.Tensor, text_emb: torch.Tensor, chunk: int = 8192) -> torch.Tensor:
        """Float[B, N] cosine of each query with every catalog item (the item vectors `chunk` at a time)."""
        q = self.queries(item_states)
        return torch.cat([q @ self.items(text_emb[i:i + chunk]).t() for i in range(0, len(text_emb), chunk)], dim=1)

    def infonce_sum(self, item_states: torch.Tensor, target_emb: torch.Tensor) -> torch.Tensor:
        """Summed InfoNCE of M predictions [M, L, d] against their targets' text embeddings [M, D]; the
        candidates are the distinct targets (equal embedding rows are one item, never a negative of itself)."""
        candidates, label = torch.unique(target_emb.float(), dim=0, return_inverse=True)
        logits = self.queries(item_states) @ self.items(candidates).t() / self.temperature
        return F.cross_entropy(logits, label, reduction="sum")


def reference_dense_scores(head: DenseHead, item_states: torch.Tensor, text_emb: torch.Tensor) -> torch.Tensor:
    """Float[B, N], one item at a time: the brute-force loop the batched `scores` is tested against."""
    out = torch.empty(item_states.shape[0], text_emb.shape[0])
    for b in range(item_states.shape[0]):
        query = F.normalize(head.query(item_states[b].mean(dim=0)), dim=0)
        for n in range(text_emb.shape[0]):
            unit = F.normalize(text_emb[n].float(), dim=0)
            vector = F.normalize(unit + head.tower(unit), dim=0)
            out[b, n] = float((query * vector).sum())
    return out
