"""What the re-ranker reads of a catalog: relations between a history and the candidates, never where an item sits
in text space, so that what it learns on source domains carries to a catalog it never saw.

Item vectors are the catalog's text embeddings centered on its mean and normalized; popularity is log1p of each
item's count in the catalog's log, z-scored over its items; co-occurrence comes from the log's sequences
(recgpt.predict.rerank.cooccurrence). The per-user rule is recgpt's shipped content-kNN + popularity rule: score
w z(kNN cosine) + (1 - w) z(popularity) with w of WEIGHTS picked per user by the gain of the user's own last history
item ranked from the items before it plus LOG_STRENGTH times the log's prior over w (the same gain averaged over
the log's sampled sequences; recgpt.predict.self_weights). The base rule adds COOC_BASE z(co-occurrence).

Per (history, candidate), N_FEATURES values: the candidate's cosine to each of the history's last 5 items and whether
that item exists (5 + 5), the content-kNN cosine raw and z-scored over the catalog, the candidate's z popularity, the
history's mean z popularity and its coherence (mean cosine of consecutive items among its last 5); co-occurrence,
its z-score and the history's support; the log prior over w, the history's own-item gains over w and their flag, the
rule's w; and last, the base rule's score.
"""
from typing import Sequence

import numpy as np
import torch

from recgpt.predict.baselines import normalize_rows, user_vectors
from recgpt.predict.scoring import standardize
from recgpt.predict.self_weights import LOG_STRENGTH, own_cases
from recgpt.predict.rerank.cooccurrence import LAST, cooccurrence_matrix, history_cooccurrence

WEIGHTS = tuple(i / 10 for i in range(11))  # w on content kNN, 1 - w on popularity
COOC_BASE = 0.5  # the base rule's weight on z(co-occurrence), fixed before any held-out figure
N_FEATURES = (2 * LAST + 5) + 3 + (2 * len(WEIGHTS) + 3)


class DomainContext:
    """A catalog as the re-ranker reads it. `vectors` Float[N, D]: item text embeddings; `counts` [N]: each item's
    count in the log; `rows`: the log's sequences as catalog rows (co-occurrence); `prior_rows`: the sampled log
    sequences whose last items set the per-user rule's prior (recgpt.predict.self_weights.log_rows)."""

    def __init__(self, vectors, counts, rows: Sequence[Sequence[int]], prior_rows: Sequence[Sequence[int]]):
        emb = torch.as_tensor(np.asarray(vectors, dtype=np.float32))
        if emb.ndim != 2 or len(counts) != len(emb):
            raise ValueError(f"{len(counts)} popularity counts for {tuple(emb.shape)} item vectors")
        self.emb = normalize_rows(emb - emb.mean(0))
        self.n_items = len(emb)
        log_pop = torch.log1p(torch.as_tensor(np.asarray(counts, dtype=np.float32)))
        self.zpop = (log_pop - log_pop.mean()) / log_pop.std().clamp_min(1e-6)
        self.zpop_rule = standardize(log_pop[None])  # the per-user rule's popularity (population std)
        self.cooc, self.occ = cooccurrence_matrix(rows, self.n_items)
        log = torch.as_tensor(mean_own_gains(self.ranks, prior_rows, len(WEIGHTS)), dtype=torch.float32)
        self.log_prior = log / log.max().clamp_min(1e-12)

    def ranks(self, histories, targets) -> tuple:
        """weight_ranks of this catalog's vectors and popularity."""
        return weight_ranks(self.emb, self.zpop_rule, histories, targets)

    def evidence(self, histories) -> tuple:
        """(Float[B, 2 len(WEIGHTS) + 2]: the log prior, the history's own-item gains over w and their flag (0
        without an own item), the rule's w; Float[B]: that w)."""
        gains, has = torch.zeros(len(histories), len(WEIGHTS)), torch.zeros(len(histories))
        users, before, last = own_cases(histories)
        if users:
            rank, repeated = self.ranks(before, last)
            index = torch.as_tensor(users)[~repeated]
            gains[index] = 1 / torch.log2(rank[~repeated].float() + 2)
            has[index] = 1.0
        score = LOG_STRENGTH * self.log_prior[None] + gains
        w = torch.as_tensor(WEIGHTS)[torch.argmax(score - 1e-12 * torch.arange(len(WEIGHTS)), 1)]  # ties: earlier
        return torch.cat([self.log_prior[None].expand(len(histories), -1), gains, has[:, None], w[:, None]], 1), w

    def knn(self, histories) -> tuple:
        """(Float[B, N] the content-kNN cosine of every item, its z-score over the catalog)."""
        knn = normalize_rows(user_vectors(histories, self.emb)) @ self.emb.t()
        return knn, (knn - knn.mean(1, keepdim=True)) / knn.std(1, keepdim=True).clamp_min(1e-6)

    def catalog_parts(self, histories) -> dict:
        """What the features read over the whole catalog, once per history: Float[B, N] "knn" (cosine), "zknn",
        "cf", "zcf" and "rule" (the base rule's score); Float[B] "support" and "w"; Float[B, E] "evidence"."""
        knn, zknn = self.knn(histories)
        cf, zcf, support = history_cooccurrence(histories, self.cooc, self.occ)
        evidence, w = self.evidence(histories)
        rule = w[:, None] * zknn + (1 - w[:, None]) * self.zpop[None] + COOC_BASE * zcf
        return {"knn": knn, "zknn": zknn, "cf": cf, "zcf": zcf, "rule": rule, "support": support, "w": w,
                "evidence": evidence}

    def features(self, histories, candidates=None, parts=None) -> torch.Tensor:
        """Float[B, C, N_FEATURES] of each history against its candidate rows (Long[B, C]; None: every item);
        the last is the base rule's score. `parts`: catalog_parts of the histories, when already computed."""
        parts = self.catalog_parts(histories) if parts is None else parts
        b = len(histories)
        if candidates is None:
            candidates = torch.arange(self.n_items).expand(b, -1)
        c = candidates.shape[1]
        last = torch.zeros(b, LAST, self.emb.shape[1])
        exists = torch.zeros(b, LAST)
        for i, history in enumerate(histories):
            recent = list(history)[-LAST:][::-1]
            last[i, :len(recent)] = self.emb[torch.as_tensor(recent)]
            exists[i, :len(recent)] = 1.0
        sims = torch.einsum("bkd,bcd->bck", last, self.emb[candidates])
        hist_pop = torch.stack([self.zpop[torch.as_tensor(list(h)[-LAST:])].mean() for h in histories])
        pairs = (last[:, :-1] * last[:, 1:]).sum(-1) * exists[:, 1:]
        coherence = pairs.sum(1) / exists[:, 1:].sum(1).clamp_min(1)

        def at(name):  # Float[B, C, 1] of a catalog part at the candidates
            return parts[name].gather(1, candidates)[..., None]

        per_user = [torch.stack([hist_pop, coherence], 1), parts["support"][:, None], parts["evidence"]]
        per_user = [x[:, None].expand(b, c, -1) for x in per_user]
        return torch.cat([sims, exists[:, None].expand(b, c, LAST), at("knn"), at("zknn"), self.zpop[candidates][..., None],
                          per_user[0], at("cf"), at("zcf"), per_user[1], per_user[2], at("rule")], -1)

    def rule(self, histories, beta: float = COOC_BASE) -> torch.Tensor:
        """Float[B, N]: the per-user rule w z(kNN) + (1 - w) z(pop) + beta z(co-occurrence), history items -inf
        (beta COOC_BASE: the base rule; 0: recgpt's shipped kNN + popularity rule)."""
        _, zknn = self.knn(histories)
        w = self.evidence(histories)[1][:, None]
        score = w * zknn + (1 - w) * self.zpop[None]
        if beta:
            score = score + beta * history_cooccurrence(histories, self.cooc, self.occ)[1]
        return mask_history(score, histories)

    def top(self, histories, k: int, parts: dict = None) -> tuple:
        """(Float[B, N] the base rule, history items -inf; Long[B, k] its top k rows; Float[B, k, N_FEATURES] their
        features): what the features read of the catalog computed once (`parts`: catalog_parts of the histories,
        when already computed), the features of the top k only."""
        parts = self.catalog_parts(histories) if parts is None else parts
        score = mask_history(parts["rule"].clone(), histories)
        top = torch.topk(score, min(k, self.n_items)).indices
        return score, top, self.features(histories, top, parts)


def mask_history(score: torch.Tensor, histories) -> torch.Tensor:
    for i, history in enumerate(histories):
        score[i, torch.as_tensor(list(history))] = -float("inf")
    return score


def weight_ranks(emb: torch.Tensor, z_pop: torch.Tensor, histories, targets) -> tuple:
    """(Int64[B, len(WEIGHTS)] items ranked above each target by w z(kNN cosine) + (1 - w) z_pop for each w of
    WEIGHTS, the history's items never ranked; Bool[B] target among the history). `emb`: unit item vectors.
    The history's items are counted out of each rank instead of masked in the catalog-wide scores, which are
    computed in one buffer and counted as floats (exact below 2^24 items): the direct count's ranks, bit for bit."""
    z_cos = standardize(normalize_rows(user_vectors(histories, emb)) @ emb.t())
    b, n = z_cos.shape
    t = torch.as_tensor(list(targets), dtype=torch.long)
    seen = [sorted(set(int(i) for i in history)) for history in histories]
    repeated = torch.as_tensor([target in set(items) for target, items in zip(t.tolist(), seen)], dtype=torch.bool)
    width = max((len(items) for items in seen), default=0)
    own = torch.as_tensor([items + [0] * (width - len(items)) for items in seen], dtype=torch.long).reshape(b, width)
    valid = torch.arange(width)[None] < torch.as_tensor([len(items) for items in seen])[:, None]
    score, out = torch.empty_like(z_cos), []
    for w in WEIGHTS:
        torch.mul(z_cos, w, out=score).add_((1 - w) * z_pop)  # w z_cos + (1 - w) z_pop, bit for bit
        thr = score.gather(1, t[:, None])
        count = (score > thr).float().sum(1)
        own_above = ((score.gather(1, own) > thr) & valid).sum(1)
        out.append(count.long() - own_above)
    ranks = torch.stack(out, 1)
    # a target among its history's items scores -inf: every other item outranks it
    ranks[repeated] = n - valid[repeated].sum(1, keepdim=True)
    return ranks, repeated


def mean_own_gains(ranks, rows: Sequence[Sequence[int]], columns: int, block: int = 500) -> np.ndarray:
    """Per column of `ranks(histories, targets)` (weight_ranks' form), the mean gain 1 / log2(rank + 2) of each
    row's last item ranked from the items before it (a repeated last item left out); zeros without such an item."""
    gains = []
    for start in range(0, len(rows), block):
        part = rows[start:start + block]
        rank, repeated = ranks([r[:-1] for r in part], [r[-1] for r in part])
        gains.append(1 / np.log2(rank[~repeated].numpy() + 2))
    return np.concatenate(gains).mean(0) if gains else np.zeros(columns)
