"""Dense head: the last item's state predicts the next item's (normalized) text embedding.

query(state) = normalize(W . mean over slots of the item's L states)          [B, D]
               (query_skip: normalize(normalize(e_last) + W . mean state), W starting at zero, so an
               untrained query is the last item's own text embedding: content kNN on the last item;
               query_pool K: normalize(sum_k a_k normalize(e_k) + W . mean state) over the last K items,
               a_k = [k = 0] + r_k + c * cos(e_0, e_k), recency prior r and attention scale c starting at
               zero: still last-item kNN untrained, and the pooled part is content only; dense_pool_decay:
               r_k starts at decay^k, 0.7 being the content kNN baseline's user vector)
tower(e)     = normalize(u + MLP(u)), u = normalize(e)  (shared by every item) [N, D]
score(b, n)  = (query_b . tower(e_n) + s_b * log popularity_n) / temperature
               (dense_popularity: s_b = b + v . mean state, b and v starting at zero; else s_b = 0;
               dense_content_gate: the cosine is scaled by 1 + g_b, g_b = c + u . mean state starting at zero)

The tower's last layer starts at zero, so an untrained tower is the identity on unit text embeddings and
an item never seen in pretraining is scored through its text alone. Trained with InfoNCE over the distinct
target items of the micro-batch (sampled softmax: the other targets are the negatives), optionally plus
items drawn uniformly from the catalog, and optionally only those of the query's own source dataset.
With dense_popularity the head learns, per user state, how strongly the next item follows popularity (log
counts over its dataset's training sequences; at prediction over the histories being scored, label-free): the
content part is then trained as a correction to what popularity already ranks.
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
        self.pool = int(getattr(config, "dense_query_pool", 0) or 0)
        self.use_state = bool(getattr(config, "dense_query_state", True))
        self.use_tower = bool(getattr(config, "dense_item_tower", True))
        if self.pool > 1:
            self.recency = nn.Parameter(torch.zeros(self.pool))  # learned recency prior per age
            self.pool_decay = float(getattr(config, "dense_pool_decay", 0.0))
            self.attention = nn.Parameter(torch.zeros(()))  # learned weight of similarity to the query item
        self.tower = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim))
        self.popularity = bool(getattr(config, "dense_popularity", False))
        if self.popularity:
            self.content_gate = bool(getattr(config, "dense_content_gate", False))
            self.popularity_scale = nn.Linear(d, 2 if self.content_gate else 1)  # s_b (and g_b) from the state

    def zero_tower_output(self) -> None:
        nn.init.zeros_(self.tower[-1].weight)
        nn.init.zeros_(self.tower[-1].bias)
        if self.query_skip:  # the learned part of the query starts at zero beside the skip
            nn.init.zeros_(self.query.weight)
            nn.init.zeros_(self.query.bias)
        if self.pool > 1:
            with torch.no_grad():  # r_k = decay^k after the query item: untrained, the content kNN user vector
                self.recency.copy_(torch.tensor([0.0] + [self.pool_decay ** k for k in range(1, self.pool)]))
            nn.init.zeros_(self.attention)
        if self.popularity:  # an untrained head ignores popularity
            nn.init.zeros_(self.popularity_scale.weight)
            nn.init.zeros_(self.popularity_scale.bias)

    def skip_text(self, own_text: torch.Tensor, pooled: bool) -> torch.Tensor:
        """The content part of the query: the query item's unit text (own_text [..., D]), or with query_pool
        the weighted sum over own_text [..., K, D] (`pooled`: row 0 the query item, row k the k-th item
        before it, zero rows none)."""
        units = F.normalize(own_text.float(), dim=-1)
        if not pooled:
            return units
        if self.pool <= 1:
            return units[..., 0, :]
        k = min(units.shape[-2], self.pool)
        units = units[..., :k, :]
        similarity = (units * units[..., :1, :]).sum(-1)  # [..., K] cosine to the query item
        first = torch.zeros(k, device=units.device)
        first[0] = 1.0
        weights = first + self.recency[:k].float() + self.attention.float() * similarity
        return (weights[..., None] * units).sum(-2)

    def queries(self, item_states: torch.Tensor, own_text=None) -> torch.Tensor:
        """[..., L, d] states of an item (and, with query_skip, its own text embedding [..., D] or, for
        query_pool, the texts of the last items [..., K, D], the item itself first) -> [..., D] unit query
        for its next item."""
        learned = self.query(item_states.mean(dim=-2)).float()
        if not self.use_state:  # content only: the learned state term is left out
            learned = torch.zeros_like(learned)
        if self.query_skip:
            if own_text is None:
                raise ValueError("a dense head with query_skip needs the query item's own text embedding")
            learned = learned + self.skip_text(own_text, own_text.dim() == item_states.dim())
        return F.normalize(learned, dim=-1)

    def popularity_weight(self, item_states: torch.Tensor) -> torch.Tensor:
        """[..., L, d] -> [...] s_b, the weight of the candidates' log popularity in the score."""
        return self.popularity_scale(item_states.mean(dim=-2)).float()[..., 0]

    def with_popularity(self, cosine: torch.Tensor, item_states: torch.Tensor, log_popularity: torch.Tensor):
        """[B, N] cosines -> (1 + g_b) * cosine + s_b * log_popularity [N] (g_b = 0 without the content gate)."""
        scales = self.popularity_scale(item_states.mean(dim=-2)).float()  # [B, 1]: s_b; [B, 2]: s_b, g_b
        gate = 1 + scales[:, 1:2] if self.content_gate else 1.0
        return gate * cosine + scales[:, :1] * log_popularity.float().to(cosine.device)[None]

    def items(self, text_emb: torch.Tensor) -> torch.Tensor:
        """[N, D] text embeddings -> [N, D] unit item vectors through the shared tower."""
        unit = F.normalize(text_emb.float(), dim=-1)
        if not self.use_tower:  # items stay where the text encoder put them
            return unit
        return F.normalize(unit + self.tower(unit.to(self.query.weight.dtype)).float(), dim=-1)

    def scores(self, item_states: torch.Tensor, text_emb: torch.Tensor, own_text=None, log_popularity=None,
               chunk: int = 8192) -> torch.Tensor:
        """Float[B, N] cosine of each query with every catalog item (the item vectors `chunk` at a time), plus
        s_b * log_popularity [N] (the catalog items' log popularity) with dense_popularity."""
        q = self.queries(item_states, own_text)
        out = torch.cat([q @ self.items(text_emb[i:i + chunk]).t() for i in range(0, len(text_emb), chunk)], dim=1)
        if self.popularity:
            if log_popularity is None:
                raise ValueError("a dense head with dense_popularity scores with the catalog's log popularity")
            out = self.with_popularity(out, item_states, log_popularity)
        return out

    def infonce_sum(self, item_states: torch.Tensor, target_emb: torch.Tensor, own_text=None, target_group=None,
                    negative_emb=None, negative_group=None, in_batch: bool = True, target_popularity=None,
                    negative_popularity=None) -> torch.Tensor:
        """Summed InfoNCE of M predictions [M, L, d] against their targets' text embeddings [M, D]; the
        candidates are the distinct targets (equal embedding rows are one item, never a negative of itself)
        plus `negative_emb` [K, D] (extra sampled items). With `target_group` (Long[M], the target's source
        dataset; `negative_group` [K] for the extras) a query's candidates are its own dataset's only.
        in_batch=False: a query's candidates are its own target and the extras only (no other targets: the
        batch's targets follow popularity, uniform extras do not). With dense_popularity, `target_popularity`
        [M] / `negative_popularity` [K] are the candidates' log popularity."""
        emb, group, popularity = target_emb.float(), target_group, target_popularity
        if negative_emb is not None:
            emb = torch.cat([emb, negative_emb.float()])
            if group is not None:
                group = torch.cat([group, negative_group.to(group)])
            if popularity is not None:
                popularity = torch.cat([popularity, negative_popularity.to(popularity)])
        if self.popularity and popularity is None:
            raise ValueError("a dense head with dense_popularity trains with the candidates' log popularity")
        d = emb.shape[1]
        key = torch.cat([emb, *[c[:, None].float() for c in (group, popularity) if c is not None]], dim=1)
        candidates, inverse = torch.unique(key, dim=0, return_inverse=True)
        label = inverse[: len(target_emb)]
        logits = self.queries(item_states, own_text) @ self.items(candidates[:, :d]).t()
        if self.popularity:
            logits = self.with_popularity(logits, item_states, candidates[:, -1])
        logits = logits / self.temperature
        if group is not None:
            logits = logits.masked_fill(candidates[None, :, d].long() != target_group[:, None], float("-inf"))
        if not in_batch:
            extra = torch.zeros(len(candidates), dtype=torch.bool, device=logits.device)
            extra[inverse[len(target_emb):]] = True
            own = torch.arange(len(candidates), device=logits.device)[None] == label[:, None]
            logits = logits.masked_fill(~(extra[None] | own), float("-inf"))
        return F.cross_entropy(logits, label, reduction="sum")


def recent_texts(text_emb: torch.Tensor, item_pos: torch.Tensor, k: int) -> torch.Tensor:
    """[B, S, D] item texts of packed rows -> [B, S, k, D]: at each position the item's own text, then the
    texts of the items before it in the same segment (zero where the segment starts)."""
    width = text_emb.shape[1]
    shifted = [text_emb] + [F.pad(text_emb, (0, 0, j, 0))[:, :width] * (item_pos >= j)[..., None].to(text_emb)
                            for j in range(1, k)]
    return torch.stack(shifted, dim=2)


def reference_dense_scores(head: DenseHead, item_states: torch.Tensor, text_emb: torch.Tensor,
                           own_text=None, log_popularity=None) -> torch.Tensor:
    """Float[B, N], one item at a time: the brute-force loop the batched `scores` is tested against."""
    out = torch.empty(item_states.shape[0], text_emb.shape[0])
    for b in range(item_states.shape[0]):
        if head.popularity:
            scale = head.popularity_scale.bias + head.popularity_scale.weight @ item_states[b].mean(dim=0)
            gate = float(1 + scale[1]) if head.content_gate else 1.0
        query = head.query(item_states[b].mean(dim=0)) * float(head.use_state)
        if head.query_skip and own_text[b].dim() == 1:
            query = query + own_text[b] / own_text[b].norm()
        elif head.query_skip:  # pooled: row 0 the query item, row k the k-th before it, zero rows absent
            first = own_text[b][0] / own_text[b][0].norm()
            for k, row in enumerate(own_text[b][: max(head.pool, 1)]):
                if row.norm() > 0 and (k == 0 or head.pool > 1):
                    unit = row / row.norm()
                    query = query + (float(k == 0) + head.recency[k] + head.attention * (unit @ first)) * unit
        query = F.normalize(query, dim=0)
        for n in range(text_emb.shape[0]):
            unit = F.normalize(text_emb[n].float(), dim=0)
            vector = F.normalize(unit + head.tower(unit) * float(head.use_tower), dim=0)
            out[b, n] = float((query * vector).sum())
            if head.popularity:
                out[b, n] = gate * out[b, n] + float(scale[0] * log_popularity[n])
    return out
