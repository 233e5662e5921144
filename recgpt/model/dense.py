"""Dense head (model.dense): a query from the user's last items scores every catalog item by its text embedding.

query         = normalize(content + W . mean over slots of the query item's L states)          [B, D]
  content     (query=content / content_state) = sum_k a_k normalize(e_k) over the last `pool` items,
              a_k = [k = 0] + r_k + c * cos(e_0, e_k), recency prior r and attention scale c starting at zero:
              untrained, the query item's own text (content kNN on it); 0 with query=state
  W . state   (query=state / content_state; W starts at zero beside the content part)
item(e)       = normalize(u + MLP(u)), u = normalize(e) with item_tower (MLP's last layer starts at zero), else u
score(b, n)   = ((1 + g_b) * query_b . item(e_n) + s_b * log popularity_n) / temperature
              popularity=scale: s_b = b + v . mean state (b, v starting at zero), g_b = 0;
              popularity=gated: also g_b = c + u . mean state (starting at zero); none: s_b = g_b = 0

An item never seen in pretraining is scored through its text alone. Trained with InfoNCE over the distinct
target items of the micro-batch (sampled softmax), optionally plus items drawn uniformly from the catalog, and
optionally only those of the query's own source dataset (model.dense.negatives). Popularity is the item's count
in its own catalog's interaction log (training: its dataset's training sequences; prediction: the catalog's
log, recgpt.data.popularity): the head learns per user how strongly the next item follows it.
"""
import torch
import torch.nn.functional as F
from torch import nn


class DenseHead(nn.Module):
    """Built from `config.dense` (recgpt.config.model.DenseConfig); a part the config leaves off is not built."""

    def __init__(self, config):
        super().__init__()
        d, dim, cfg = config.d_model, config.dense_dim, config.dense
        self.temperature = float(cfg.temperature)
        self.query_skip = cfg.uses_content  # the query's content part: the last item's (or pooled items') text
        self.use_state = cfg.query != "content"
        self.pool = int(cfg.pool)
        self.use_tower = bool(cfg.item_tower)
        self.query = nn.Linear(d, dim) if self.use_state else None
        if self.pool > 1:
            self.recency = nn.Parameter(torch.zeros(self.pool))  # learned recency prior per age
            # learned weight of similarity to the query item; shape (1,): DeepSpeed cannot broadcast a 0-dim parameter
            self.attention = nn.Parameter(torch.zeros(1))
        self.tower = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim)) if self.use_tower else None
        self.popularity = cfg.popularity != "none"
        self.content_gate = cfg.popularity == "gated"
        if self.popularity:
            self.popularity_scale = nn.Linear(d, 2 if self.content_gate else 1)  # s_b (and g_b) from the state

    def zero_learned_parts(self) -> None:
        """Untrained, the head is content kNN on the query item: learned parts start at zero."""
        if self.tower is not None:
            nn.init.zeros_(self.tower[-1].weight)
            nn.init.zeros_(self.tower[-1].bias)
        if self.query is not None and self.query_skip:  # the learned part of the query starts at zero beside the skip
            nn.init.zeros_(self.query.weight)
            nn.init.zeros_(self.query.bias)
        if self.pool > 1:
            nn.init.zeros_(self.recency)
            nn.init.zeros_(self.attention)
        if self.popularity:  # an untrained head ignores popularity
            nn.init.zeros_(self.popularity_scale.weight)
            nn.init.zeros_(self.popularity_scale.bias)

    def skip_text(self, own_text: torch.Tensor, pooled: bool) -> torch.Tensor:
        """The content part of the query: the query item's unit text (own_text [..., D]), or with pool > 1
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
        """[..., L, d] states of an item (and, with a content query, its own text embedding [..., D] or, with
        pool > 1, the texts of the last items [..., K, D], the item itself first) -> [..., D] unit query for its
        next item."""
        query = self.query(item_states.mean(dim=-2)).float() if self.use_state else 0.0
        if self.query_skip:
            if own_text is None:
                raise ValueError("a dense head with a content query needs the query item's own text embedding")
            query = query + self.skip_text(own_text, own_text.dim() == item_states.dim())
        return F.normalize(query, dim=-1)

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
        if self.tower is None:  # items stay where the text encoder put them
            return unit
        return F.normalize(unit + self.tower(unit.to(self.tower[0].weight.dtype)).float(), dim=-1)

    def scores(self, item_states: torch.Tensor, text_emb: torch.Tensor, own_text=None, log_popularity=None,
               chunk: int = 8192) -> torch.Tensor:
        """Float[B, N] cosine of each query with every catalog item (the item vectors `chunk` at a time), plus
        s_b * log_popularity [N] (the catalog items' log popularity) with a popularity head; a catalog without an
        interaction log (log_popularity None) is scored without the popularity term (the gate scales every item of
        a user alike, so it leaves the ranking unchanged)."""
        q = self.queries(item_states, own_text)
        out = torch.cat([q @ self.items(text_emb[i:i + chunk]).t() for i in range(0, len(text_emb), chunk)], dim=1)
        if self.popularity and log_popularity is not None:
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
        batch's targets follow popularity, uniform extras do not). With a popularity head, `target_popularity`
        [M] / `negative_popularity` [K] are the candidates' log popularity."""
        emb, group, popularity = target_emb.float(), target_group, target_popularity
        if negative_emb is not None:
            emb = torch.cat([emb, negative_emb.float()])
            if group is not None:
                group = torch.cat([group, negative_group.to(group)])
            if popularity is not None:
                popularity = torch.cat([popularity, negative_popularity.to(popularity)])
        if self.popularity and popularity is None:
            raise ValueError("a dense head with popularity trains with the candidates' log popularity")
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
        query = head.query(item_states[b].mean(dim=0)) if head.use_state else torch.zeros(text_emb.shape[1])
        if head.query_skip and own_text[b].dim() == 1:
            query = query + own_text[b] / own_text[b].norm()
        elif head.query_skip:  # pooled: row 0 the query item, row k the k-th before it, zero rows absent
            first = own_text[b][0] / own_text[b][0].norm()
            for k, row in enumerate(own_text[b][: max(head.pool, 1)]):
                if row.norm() > 0 and (k == 0 or head.pool > 1):
                    unit = row / row.norm()
                    learned = head.recency[k] + head.attention * (unit @ first) if head.pool > 1 else 0.0
                    query = query + (float(k == 0) + learned) * unit
        query = F.normalize(query, dim=0)
        for n in range(text_emb.shape[0]):
            unit = F.normalize(text_emb[n].float(), dim=0)
            vector = F.normalize(unit + head.tower(unit), dim=0) if head.use_tower else unit
            out[b, n] = float((query * vector).sum())
            if head.popularity and log_popularity is not None:
                out[b, n] = gate * out[b, n] + float(scale[0] * log_popularity[n])
    return out
