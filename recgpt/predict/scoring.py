"""From histories (catalog rows) to next-item log-probs over the whole catalog.

`ItemScorer.log_probs(histories) -> Float[B, N]` is the one interface the protocols and horizon strategies
use: exact full-catalog scoring, the trie-constrained beam (`-inf` outside the beam's items), or liger (LIGER's
hybrid: the beam's items plus every catalog item the model never saw in pretraining, re-ranked by the model's
other score components; `-inf` outside those candidates). For the
parallel head the exact path is one fused gather-and-sum: the L slot distributions are concatenated to
[sum V_k, B] and read at the catalog's precomputed [N, L] code index (embedding_bag); the autoregressive head
uses `model.score_items` (teacher-forced over distinct prefixes). `reference_item_scores` scores items one by
one through `next_code_logprobs`, the reference both are tested against.
"""
from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from recgpt.predict.beam import beam_item_scores, model_head
from recgpt.predict.ranking import NEG_INF, histories_per_pass, merge_top_k
from recgpt.predict.rollout import CachedRollout, HistoryRollout
from recgpt.predict.trie import CodeTrie



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


def standardize(scores: torch.Tensor, mean=None, std=None) -> torch.Tensor:
    """Per row: (x - mean) / std over the finite entries (-inf stays -inf; a constant row becomes 0). `mean` and
    `std` (Float[B, 1]) given: those of the whole row when `scores` is a chunk of it (`row_moments`)."""
    finite = torch.isfinite(scores)
    if bool(finite.all()):  # every score finite: the arithmetic below without its masks, bit for bit
        if mean is None:
            count = torch.full((len(scores), 1), scores.shape[1], device=scores.device).clamp_min(1)
            mean = scores.sum(1, keepdim=True) / count
            centered = scores - mean
            std = ((centered ** 2).sum(1, keepdim=True) / count).sqrt()
            return centered.div_(std.clamp_min(1e-6))
        return (scores - mean).div_(std.clamp_min(1e-6))
    x = torch.where(finite, scores, torch.zeros_like(scores))
    if mean is None:
        count = finite.sum(1, keepdim=True).clamp_min(1)
        mean = x.sum(1, keepdim=True) / count
        std = ((torch.where(finite, x - mean, torch.zeros_like(x)) ** 2).sum(1, keepdim=True) / count).sqrt()
    z = (x - mean) / std.clamp_min(1e-6)
    return torch.where(finite, z, torch.full_like(z, NEG_INF))


def add_moments(acc: Optional[torch.Tensor], scores: torch.Tensor) -> torch.Tensor:
    """Running Float64[B, 3] count, mean and sum of squared deviations of each row's finite entries with one chunk
    added: the chunk's own (float32, centered on its mean) merged into the running ones (Chan et al.'s update)."""
    finite = torch.isfinite(scores)
    if bool(finite.all()):
        count = torch.full((len(scores), 1), scores.shape[1], device=scores.device)
        mean = scores.mean(1, keepdim=True)
        m2 = (scores - mean).square_().sum(1, keepdim=True)
    else:
        count = finite.sum(1, keepdim=True)
        x = scores.masked_fill(~finite, 0.0)
        mean = x.sum(1, keepdim=True) / count.clamp_min(1)
        m2 = (x - mean).masked_fill_(~finite, 0.0).square_().sum(1, keepdim=True)
    part = torch.cat([count.double(), mean.double(), m2.double()], dim=1)
    if acc is None:
        return part
    n_a, n_b, delta = acc[:, :1], part[:, :1], part[:, 1:2] - acc[:, 1:2]
    n = (n_a + n_b).clamp_min(1)
    return torch.cat([n_a + n_b, acc[:, 1:2] + delta * n_b / n, acc[:, 2:3] + part[:, 2:3] + delta ** 2 * n_a * n_b / n],
                     dim=1)


def row_moments(acc: torch.Tensor) -> tuple:
    """(mean, std) Float[B, 1] of the rows `add_moments` accumulated (what `standardize` computes on a whole row)."""
    return acc[:, 1:2].float(), (acc[:, 2:3] / acc[:, :1].clamp_min(1)).sqrt().float()


def combine(parts: dict, weights: dict) -> torch.Tensor:
    """Float[B, N]: sum over components of weight * standardized score (components of weight 0 are skipped)."""
    return weighted_sum({name: standardize(parts[name]) for name, w in weights.items() if w}, weights)


def weighted_sum(standardized: dict, weights: dict) -> torch.Tensor:
    """Float[B, N]: sum of weight * already standardized component (weight-0 components are skipped)."""
    total = None
    for name, weight in weights.items():
        if weight:
            term = weight * standardized[name]
            total = term if total is None else total + term
    return total if total is not None else torch.zeros_like(next(iter(standardized.values())))


class ItemScorer:
    """A model and a catalog (codes [N, L], trie, optional text embeddings) -> next-item log-probs."""

    def __init__(self, model, item_codes: torch.Tensor, trie: CodeTrie, text_emb: Optional[torch.Tensor] = None,
                 mode: str = "auto", beam_size: int = 20, device="cpu", popularity=None, knn=None, unseen=None):
        """`popularity`: Int[N] counts of the catalog's items in its own interaction log (None: no log; the
        popularity terms are then left out); `knn`: the content-kNN settings of the `knn` component; `unseen`:
        Bool[N], the catalog items the model never saw in pretraining (needed by mode liger)."""
        from recgpt.config.predict import ContentKnnConfig
        from recgpt.data.popularity import check_counts, log_popularity

        if mode == "auto":
            mode = "exact" if model_head(model) == "parallel" else "trie"
        if mode not in ("exact", "trie", "liger"):
            raise ValueError(f"scoring mode must be auto|exact|trie|liger, got {mode!r}")
        self.model, self.mode, self.beam_size, self.device = model, mode, beam_size, torch.device(device)
        self.item_codes = item_codes.long().to(self.device)
        self.parallel = model_head(model) == "parallel"
        self.flat_index = flat_code_index(self.item_codes, list(trie.slot_vocab_sizes))
        self.trie = trie.to(self.device)
        config = getattr(model, "config", None)
        # catalog text embeddings (kept in their own dtype, fp16 from the cache) as the dense head, content kNN
        # and (when it takes them) the model see them: centered on the catalog's own mean when the model was
        self.catalog_emb = None if text_emb is None else ItemVectors(
            text_emb.to(self.device), center=getattr(config, "center_text", False))
        self.text_emb = self.catalog_emb if getattr(config, "text_dim", None) else None
        self.chunk_items = 65536  # top_k scores this many catalog items at a time in mode exact
        self.max_items = int(getattr(config, "max_items", 256))
        self.weights = config.scoring_weights() if hasattr(config, "scoring_weights") else {"code": 1.0}
        counts = check_counts(popularity, self.item_codes.shape[0], "catalog popularity")
        self.log_popularity = log_popularity(counts).to(self.device) if counts is not None else None
        self.knn = knn or ContentKnnConfig()
        self.kv_cache = True  # multi-step strategies append to a KV cache; False: re-encode each step (the reference)
        self.pop_dropped = self.log_popularity is None and bool(self.weights.get("pop"))
        if self.pop_dropped:  # no log: the pop component cannot be scored
            rest = {c: w for c, w in self.weights.items() if c != "pop" and w}
            self.weights = rest or ({"dense": 1.0} if getattr(config, "dense", None) is not None else {"code": 1.0})
        self.unseen = None if unseen is None else torch.as_tensor(unseen, dtype=torch.bool).to(self.device)
        if mode == "liger":
            self._check_liger(config)

    def _check_liger(self, config) -> None:
        if getattr(config, "codes", None) is None or getattr(config, "dense", None) is None:
            raise ValueError("scoring liger proposes candidates with the code head and re-ranks them with the dense "
                             "head: the model needs both (recipe hybrid)")
        if self.unseen is None or self.unseen.shape != (self.n_items,):
            raise ValueError("scoring liger needs which catalog items the model never saw in pretraining (the "
                             "exported model's item_ids.json; Recommender.from_pretrained reads it)")
        # the re-ranking score: the model's score weights without the code component (the beam has used it)
        self.rerank = {c: w for c, w in self.weights.items() if c != "code" and w} or {"dense": 1.0}

    @property
    def without_popularity(self) -> bool:
        """True when the model's score has a popularity term (the dense head's, or a `pop` weight) but the catalog
        has no interaction log, so it is scored without it."""
        dense = getattr(getattr(self.model, "config", None), "dense", None)
        uses = dense is not None and dense.popularity != "none" and bool(self.weights.get("dense"))
        return self.log_popularity is None and (uses or self.pop_dropped)

    @property
    def n_items(self) -> int:
        return self.item_codes.shape[0]

    def inputs(self, histories: Sequence[Sequence[int]]) -> dict:
        """The model's inputs for a batch of histories (`history_inputs`)."""
        return history_inputs(histories, self.item_codes, self.max_items, self.text_emb, self.device)

    @torch.no_grad()
    def state(self, histories: Sequence[Sequence[int]]) -> torch.Tensor:
        return self.model.history_state(**self.inputs(histories))

    def rollout(self, histories: Sequence[Sequence[int]]) -> HistoryRollout:
        """Histories the horizon strategies grow step by step (recgpt.predict.rollout): KV-cached unless
        `kv_cache` is False."""
        return (CachedRollout if self.kv_cache else HistoryRollout)(self, histories)

    def code_scores(self, state: torch.Tensor, items: slice = slice(None)) -> torch.Tensor:
        """Float[B, n] code log-probs of the catalog items `items` (the trie beam scores the whole catalog)."""
        if self.mode == "exact" and self.parallel:
            return parallel_item_scores(self.model, state, self.flat_index[items])
        if self.mode == "exact":
            return self.model.score_items(state, self.item_codes[items]).float()
        return beam_item_scores(self.model, state, self.trie, self.beam_size)[:, items]

    @torch.no_grad()
    def log_probs(self, histories: Sequence[Sequence[int]]) -> torch.Tensor:
        """Next-item log-probs; with hybrid score weights, log_softmax of the weighted standardized components."""
        return self.scores_of(histories, self.state(histories))

    @torch.no_grad()
    def candidates(self, state: torch.Tensor) -> torch.Tensor:
        """Bool[B, N], mode liger: the items of the trie beam (beam_size code tuples) and every unseen item."""
        beam = beam_item_scores(self.model, state, self.trie, self.beam_size)
        return torch.isfinite(beam) | self.unseen[None]

    @torch.no_grad()
    def scores_of(self, histories: Sequence[Sequence[int]], state: torch.Tensor) -> torch.Tensor:
        """`log_probs` from the histories' states (Float[B, L, d], e.g. from a KV cache)."""
        if self.mode == "liger":
            keep = self.candidates(state)
            parts = self.components(histories, state, set(self.rerank))
            return combine(parts, self.rerank).masked_fill(~keep, NEG_INF).log_softmax(dim=1)
        if self.weights == {"code": 1.0}:
            return self.code_scores(state)
        if self.mode != "exact":
            raise ValueError(f"hybrid scoring {self.weights} scores the full catalog: use predict.scoring=exact")
        parts = self.components(histories, state, {c for c, w in self.weights.items() if w})
        return combine(parts, self.weights).log_softmax(dim=1)

    @torch.no_grad()
    def top_k(self, histories: Sequence[Sequence[int]], k: int, exclude: Optional[Sequence[Sequence[int]]] = None):
        """(values Float[B, k'], rows Long[B, k']): the k best entries of `log_probs(histories)` per history with the
        `exclude` rows masked, best first, ties to the smaller row (-inf entries included; the caller drops them).

        Mode exact scores `chunk_items` catalog items at a time and never holds a [B, N] matrix: a hybrid score takes
        two passes (each component's mean and spread over the catalog, then the standardized sum, whose log-softmax
        normaliser is accumulated on the way). Other modes score the whole catalog for as many histories at a time
        as keep that [rows, N] matrix under SCORE_BYTES."""
        users = histories_per_pass(self.n_items)
        if self.mode != "exact" and len(histories) > users:
            parts = [self.top_k(histories[lo:lo + users], k, None if exclude is None else exclude[lo:lo + users])
                     for lo in range(0, len(histories), users)]
            return torch.cat([v for v, _ in parts]), torch.cat([r for _, r in parts])
        state, n = self.state(histories), self.n_items
        spans = [slice(lo, min(lo + self.chunk_items, n)) for lo in range(0, n, self.chunk_items)]
        pairs = [(b, r) for b, rows in enumerate(exclude or []) for r in set(int(r) for r in rows)]
        excluded = torch.as_tensor(pairs, dtype=torch.long).view(-1, 2).to(state.device)
        hybrid = self.mode == "exact" and self.weights != {"code": 1.0}
        if self.mode != "exact":
            full = self.scores_of(histories, state).float()
        elif hybrid:
            names, acc, memo = {c for c, w in self.weights.items() if w}, {}, {}
            for span in spans:  # pass 1: each component's mean and spread over the whole catalog
                for c, v in self.components(histories, state, names, span, memo).items():
                    acc[c] = add_moments(acc.get(c), v)
            moments = {c: row_moments(a) for c, a in acc.items()}
        best, norm = None, torch.full((len(histories), 1), NEG_INF, device=state.device)
        for span in spans:
            if self.mode != "exact":
                x = full[:, span]
            elif hybrid:
                parts = self.components(histories, state, names, span, memo)
                x = weighted_sum({c: standardize(v, *moments[c]) for c, v in parts.items()}, self.weights)
                norm = torch.logaddexp(norm, torch.logsumexp(x, dim=1, keepdim=True))
            else:
                x = self.code_scores(state, span)
            inside = excluded[(excluded[:, 1] >= span.start) & (excluded[:, 1] < span.stop)]
            if len(inside):
                x = x.clone()
                x[inside[:, 0], inside[:, 1] - span.start] = NEG_INF
            best = merge_top_k(best, x, span.start, k)
        return (best[0] - norm if hybrid else best[0]), best[1]

    @torch.no_grad()
    def components(self, histories, state: torch.Tensor, names, items: slice = slice(None),
                   memo: Optional[dict] = None) -> dict:
        """{component: Float[B, n] raw scores of the catalog items `items`} for the named components
        (recgpt.predict.hybrid). `memo`: a dict kept over the chunks of one call, holding what depends on the
        histories only (the dense head's history rows, content kNN's user vectors), computed at the first chunk."""
        from recgpt.predict.baselines import cosines, normalize_rows, user_vectors

        if set(names) & {"dense", "knn"} and self.catalog_emb is None:
            raise ValueError(f"scoring components {sorted(names)} need the catalog's item text embeddings: "
                             "set a catalog from item texts (set_catalog / set_catalog_from_prepared)")
        out, emb = {}, self.catalog_emb
        if "code" in names:
            out["code"] = self.code_scores(state, items)
        if "pop" in names and self.log_popularity is None:
            raise ValueError("the pop component needs the catalog's popularity (its interaction log): pass "
                             "popularity= to set_catalog, or a prepared folder with interactions.parquet")
        memo = {} if memo is None else memo
        if "dense" in names:
            if "last" not in memo:
                memo["last"] = self.last_rows(histories)
            pop = None if self.log_popularity is None else self.log_popularity[items]
            out["dense"] = self.model.dense_scores(state, emb.rows(items), memo["last"], pop).float()
        if "knn" in names:
            if "knn" not in memo:
                memo["knn"] = normalize_rows(user_vectors(histories, emb, self.knn.last, self.knn.decay))
            out["knn"] = cosines(memo["knn"], emb, items).to(self.device)
        if "pop" in names:
            out["pop"] = self.log_popularity[items].to(self.device)[None].expand(len(histories), -1)
        return out


    def last_rows(self, histories) -> torch.Tensor:
        """The dense head's history text rows: Float[B, D] the last item's, or [B, K, D] the last K (pool K > 1),
        most recent first, zero rows where a history is shorter."""
        emb, pool = self.catalog_emb, self.model.config.dense.pool
        if pool == 1:
            return emb[torch.as_tensor([h[-1] for h in histories], device=emb.device)]
        rows = torch.full((len(histories), pool), -1, dtype=torch.long)
        for i, h in enumerate(histories):
            rows[i, : min(pool, len(h))] = torch.as_tensor(list(h[::-1][:pool]))
        rows = rows.to(emb.device)
        return emb[rows.clamp(min=0)] * (rows >= 0)[..., None]


class ItemVectors:
    """A catalog's item text embeddings as scoring reads them: stored once in their own dtype (fp16 from the
    embedding cache), read as float32 rows, centered on the catalog's mean when `center` (label-free: the
    catalog's own items). A [N, D] float32 copy is never made."""

    def __init__(self, vectors: torch.Tensor, center: bool = False, chunk: int = 65536):
        self.vectors, self.chunk = vectors, chunk
        self.mean = None
        if center and len(vectors):
            total = sum(vectors[lo:lo + chunk].float().sum(0).double() for lo in range(0, len(vectors), chunk))
            self.mean = (total / len(vectors)).float()

    def __len__(self) -> int:
        return len(self.vectors)

    @property
    def shape(self):
        return self.vectors.shape

    @property
    def device(self):
        return self.vectors.device

    def __getitem__(self, index) -> torch.Tensor:
        rows = self.vectors[index].float()
        return rows if self.mean is None else rows - self.mean

    def rows(self, items: slice) -> torch.Tensor:
        return self[items]
