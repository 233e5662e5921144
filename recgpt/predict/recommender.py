"""Python API: `Recommender.from_pretrained(path).recommend(histories, k=10, horizon=1, strategy="exact")`.

`path` is an exported model folder (`ckpt/<run>/best`: config.json + model.safetensors + tokenizer/ +
codes.safetensors + item_ids.json) or a run folder holding `best/`. The catalog defaults to the exported
item codes; `set_catalog(item_ids, texts, popularity=...)` or `set_catalog_from_prepared(dir)` switch to a
downstream dataset's items, encoded by the model's own tokenizer (zero-shot). Popularity belongs to the catalog:
counts of its items in its own interaction log (a prepared folder's interactions.parquet, or given), so a user's
list never depends on the other users of the call.
"""
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from recgpt.io import ArtifactError, sha256_file
from recgpt.config.args import check_baseline_args, check_recommend_args, short_lists_note
from recgpt.model.files import load_decoder, resolve_model_dir
from recgpt.predict.catalog import Catalog, build_catalog, catalog_from_prepared
from recgpt.predict import repeats
from recgpt.predict.horizon import recommend_lists
from recgpt.predict.scoring import ItemScorer
from recgpt.predict.self_weights import (LOG_STRENGTH, STRENGTH, log_prior, log_rows, own_ranks, plan,
                                         rank_self_weighted, read_fit_domains, read_prior, self_weights)


@dataclass
class Recommendations:
    item_ids: list[list[str]]  # best first, per history
    scores: list[list[float]]
    unknown_history_items: int = 0  # history items not in the catalog (dropped)
    empty_histories: list[int] = field(default_factory=list)  # histories with no known item (empty lists)
    notes: list[str] = field(default_factory=list)  # how these were scored: no popularity log, short lists

NO_LOG_NOTE = ("the catalog has no interaction log (no popularity given): scored without the model's popularity "
               "term; pass popularity= to set_catalog or use a prepared folder with interactions.parquet")


RERANK_NOTE = "the re-ranker lists items outside each history only (allow_history applies without it)"


def check_tokenizer(model, tokenizer, model_dir: Optional[Path] = None, tokenizer_dir: Optional[Path] = None) -> None:
    """A model only understands codes from the tokenizer it was trained with: refuse any other."""
    model_sizes = list(model.config.slot_vocab_sizes)
    if model_sizes != list(tokenizer.slot_vocab_sizes):
        raise ValueError(f"tokenizer mismatch: the model at {model_dir} expects slot vocab sizes {model_sizes} but "
                         f"the tokenizer at {tokenizer_dir} gives {list(tokenizer.slot_vocab_sizes)}")
    bundled = model_dir / "tokenizer" / "model.safetensors" if model_dir else None
    given = tokenizer_dir / "model.safetensors" if tokenizer_dir else None
    if bundled and given and bundled.is_file() and given.is_file() and bundled.resolve() != given.resolve():
        if sha256_file(bundled) != sha256_file(given):
            raise ValueError(f"tokenizer mismatch: the model at {model_dir} was trained with {bundled.parent}, "
                             f"whose weights differ from the tokenizer given at {tokenizer_dir}")


def check_trained_with(model_dir: Path, tokenizer_dir: Path) -> None:
    """An export records the hash of the tokenizer + item codes the model was trained with (source.json):
    the tokenizer about to encode the catalog must hash the same."""
    from recgpt.io import read_json
    from recgpt.tokenizer.base import tokenizer_hash

    source, codes = model_dir / "source.json", model_dir / "codes.safetensors"
    if not (codes.is_file() and (tokenizer_dir / "config.json").is_file()):
        return
    if not source.is_file():  # without it a swapped tokenizer would be used unchecked
        raise ArtifactError(f"{source} is missing: the tokenizer at {tokenizer_dir} cannot be checked against the one "
                            "the model was trained with; export the model with `recgpt eval` (it writes source.json)")
    expected = read_json(source).get("tokenizer_hash")
    if expected and tokenizer_hash(tokenizer_dir, codes) != expected:
        raise ValueError(f"tokenizer mismatch: the model at {model_dir} was trained with tokenizer hash {expected} "
                         f"({source}); the tokenizer at {tokenizer_dir} with {codes} hashes differently")


class Recommender:
    def __init__(self, model, tokenizer=None, catalog: Optional[Catalog] = None, embed_cfg=None,
                 scoring: str = "auto", beam_size: int = 20, device="cpu", batch_size: int = 256, knn=None,
                 pretrained_items: Optional[Sequence[str]] = None):
        """`pretrained_items`: the namespaced ids ("<dataset>:<item id>") of the items the model was pretrained
        on (from_pretrained reads them from item_ids.json); scoring="liger" adds every other catalog item to the
        trie beam's candidates."""
        self.model, self.tokenizer, self.embed_cfg = model.eval().to(device), tokenizer, embed_cfg
        self.knn = knn  # content-kNN settings (recgpt.config.predict.ContentKnnConfig; None: the defaults)
        self.pretrained_items = None if pretrained_items is None else frozenset(map(str, pretrained_items))
        self.namespace = None  # the catalog's dataset name, which prefixes its ids in the pretraining corpus
        self.scoring, self.beam_size, self.device, self.batch_size = scoring, beam_size, device, batch_size
        self.catalog, self.scorer = None, None
        self.weight_prior = None  # (grid, relative NDCG) of the export's score fit: the prior of weights="self"
        self.fit_domains = []  # the datasets that fit was made on
        self.log = None  # the catalog's log sequences (catalog rows)
        self.log_sequences = None  # the whole log as set_log was given it (item ids)
        # What is read of the log, until the catalog or the log changes: "grid" (the fit's grid, own_ranks of the
        # log on it), "prior" (log_prior of them), ("windows", horizon), ("shares", weights, k, horizon).
        self.log_cache = {}
        self.source = None  # the exported model folder, when loaded from one
        self.reranker = None  # recgpt.predict.rerank.Reranker: re-orders the top of one exact step (set_reranker)
        if catalog is not None:
            self.use_catalog(catalog)

    @classmethod
    def from_pretrained(cls, path, tokenizer_dir=None, embed_cfg=None, device="cpu", **kwargs) -> "Recommender":
        from recgpt.tokenizer import load_item_codes, load_tokenizer

        model_dir = resolve_model_dir(path)
        model = load_decoder(model_dir)
        tokenizer_dir = Path(tokenizer_dir) if tokenizer_dir else model_dir / "tokenizer"
        tokenizer = load_tokenizer(tokenizer_dir) if (tokenizer_dir / "config.json").is_file() else None
        if tokenizer is not None:
            check_tokenizer(model, tokenizer, model_dir, tokenizer_dir)
            check_trained_with(model_dir, tokenizer_dir)
        if embed_cfg is None:
            from recgpt.config import EmbedConfig
            embed_cfg = EmbedConfig()
        ids_file = model_dir / "item_ids.json"
        if ids_file.is_file() and "pretrained_items" not in kwargs:
            from recgpt.io import read_json
            kwargs["pretrained_items"] = read_json(ids_file)
        rec = cls(model, tokenizer, None, embed_cfg, device=device, **kwargs)
        rec.source, rec.weight_prior, rec.fit_domains = model_dir, read_prior(model_dir), read_fit_domains(model_dir)
        # the exported codes carry no text embeddings: a text-input model needs a catalog built from texts
        if (model_dir / "codes.safetensors").is_file() and not model.config.text_dim:
            ids, codes = load_item_codes(model_dir / "codes.safetensors")
            rec.use_catalog(Catalog.from_codes(ids, codes, model.config.slot_vocab_sizes))
        return rec

    def _need_tokenizer(self):
        if self.tokenizer is None:
            raise ArtifactError("this model has no tokenizer/ folder: a new catalog cannot be encoded")
        return self.tokenizer

    def use_catalog(self, catalog: Catalog) -> None:
        if list(catalog.slot_vocab_sizes) != list(self.model.config.slot_vocab_sizes):
            raise ValueError(f"catalog codes use slot vocab sizes {catalog.slot_vocab_sizes} but the model expects "
                             f"{list(self.model.config.slot_vocab_sizes)}: encode it with the model's tokenizer")
        if self.model.config.text_dim and catalog.text_emb is None:
            raise ValueError("this model takes item text embeddings: build the catalog with its text_emb")
        self.catalog, self.log_cache = catalog, {}
        self.scorer = ItemScorer(self.model, catalog.codes, catalog.trie, catalog.text_emb, self.scoring,
                                 self.beam_size, self.device, catalog.popularity, self.knn,
                                 self.unseen(catalog) if self.scoring == "liger" else None)  # only liger reads it

    def unseen(self, catalog: Catalog):
        """Bool[N]: the catalog items absent from pretraining (by their id, or "<namespace>:<id>"); None when
        the model does not say what it was pretrained on."""
        if self.pretrained_items is None:
            return None
        seen = self.pretrained_items
        prefix = f"{self.namespace}:" if self.namespace else None
        return [not (str(i) in seen or (prefix is not None and prefix + str(i) in seen)) for i in catalog.item_ids]

    def set_popularity(self, popularity) -> None:
        """Replace the catalog's popularity: Int[N] counts aligned with its item ids, {item_id: count}, or None."""
        if self.catalog is None:
            raise ValueError("no catalog: call set_catalog(...) or set_catalog_from_prepared(...) first")
        self.use_catalog(self.catalog.with_popularity(popularity))

    def set_catalog(self, item_ids: Sequence[str], texts: Sequence[str], popularity=None,
                    namespace: Optional[str] = None) -> Catalog:
        """The catalog of a new domain from its item ids and texts; `popularity`: each item's count in the
        domain's interaction log (a list aligned with item_ids or {item_id: count}; None: no log); `namespace`:
        the dataset name its ids had in the pretraining corpus, if any (which items the model has seen)."""
        if isinstance(item_ids, (str, bytes)) or isinstance(texts, (str, bytes)):
            raise TypeError("set_catalog(item_ids, texts): give two lists (one id and one text per item), not strings")
        item_ids, texts = list(item_ids), list(texts)
        if len(item_ids) != len(texts):
            raise ValueError(f"set_catalog: {len(item_ids)} item ids but {len(texts)} texts")
        catalog = build_catalog(item_ids, texts, self._need_tokenizer(), self.embed_cfg)
        self.namespace, self.log, self.log_sequences = namespace, None, None
        self.use_catalog(catalog.with_popularity(popularity))
        return self.catalog

    def set_catalog_from_prepared(self, prepared, popularity="log") -> Catalog:
        """`prepared`: a prepared dataset folder, or one already loaded with recgpt.data.load_prepared. Item
        texts come from items.parquet; popularity="log" counts the items in its interactions.parquet and takes
        its sequences as the log (set_log; none there: no popularity, no log), or give counts / None as in
        set_catalog (evaluation passes the log before its targets, and set_log the sequences before them)."""
        from recgpt.data.popularity import counts_of_ids
        from recgpt.data.splits import user_sequences
        from recgpt.predict.catalog import read_catalog_items, read_log

        items = prepared.items if hasattr(prepared, "items") else read_catalog_items(prepared)
        catalog = catalog_from_prepared(items, self._need_tokenizer(), self.embed_cfg)
        self.namespace = Path(getattr(prepared, "path", prepared)).name  # its ids' prefix in a corpus (folder name)
        log = None
        if isinstance(popularity, str) and popularity == "log":
            log = prepared.interactions if hasattr(prepared, "interactions") else read_log(prepared)
            popularity = None if log is None else counts_of_ids(catalog.item_ids, log["item_id"])
        self.log = self.log_sequences = None
        self.use_catalog(catalog.with_popularity(popularity))
        if log is not None:
            self.set_log(user_sequences(log).tolist())
        return self.catalog

    def set_reranker(self, reranker) -> None:
        """A trained re-ranker (`recgpt rerank`: its folder, or a recgpt.predict.rerank.Reranker; None: none): one exact
        step is then the re-ranker's order of the top of its base rule, content kNN + popularity + the log's
        co-occurrence chosen per user, which reads the catalog's texts and log, not the decoder; the history's own
        items are never listed. It must have been trained on the embeddings this catalog is encoded with."""
        from recgpt.predict.rerank import Reranker

        if reranker is not None and not isinstance(reranker, Reranker):
            reranker = Reranker.load(reranker)
        model = None if reranker is None else reranker.meta.get("embed_model")
        if model is not None and self.embed_cfg is not None and model != self.embed_cfg.model:
            raise ValueError(f"the re-ranker was trained on {model} item embeddings, this catalog is encoded with "
                             f"{self.embed_cfg.model} (embed.model)")
        self.reranker = reranker

    def set_log(self, sequences: Optional[Sequence[Sequence[str]]]) -> None:
        """The catalog's interaction log as item-id sequences, one per user, oldest first (None: no log). Per-user
        weights (weights="self") take their prior from it: each of up to 2,000 seeded sequences' last item ranked
        from the items before it (recgpt.predict.self_weights.log_prior); without a log, from the export's fit."""
        if self.catalog is None:
            raise ValueError("no catalog: call set_catalog(...) or set_catalog_from_prepared(...) first")
        self.log_sequences = None if sequences is None else list(sequences)
        self.log = None if sequences is None else log_rows(self.log_sequences, self.catalog)
        self.log_cache = {}

    @property
    def log_prior(self) -> Optional[list]:
        """The per-user weights' prior read from the catalog's log (log_prior), once weights_plan computed it."""
        return self.log_cache.get("prior")

    def log_windows(self, horizon: int = 1) -> list:
        """Catalog rows of up to 2,000 seeded log sequences with more than `horizon` items in the catalog (horizon
        1: `self.log`): allow_history=auto reads how often their last `horizon` items repeat an earlier one."""
        if horizon == 1 or not self.log_sequences:
            return self.log or []
        if ("windows", horizon) not in self.log_cache:
            self.log_cache["windows", horizon] = log_rows(self.log_sequences, self.catalog, min_items=horizon + 1)
        return self.log_cache["windows", horizon]

    def repeat_shares(self, weights: dict, k: int, horizon: int = 1) -> tuple:
        """recgpt.predict.repeats.curves of the log for a list ranked with `weights` (cached: a call per batch of
        users reads the log once)."""
        key = ("shares", json.dumps(weights, sort_keys=True), k, horizon)
        if key not in self.log_cache:
            self.log_cache[key] = repeats.curves(self, weights, k, horizon)
        return self.log_cache[key]

    def log_ranks(self, weights: dict) -> tuple:
        """(indexes of the log's sequences with an item to rank, Int64 ranks): own_ranks of the log ranked with
        `weights`, read from what the log prior computed when `weights` is a point of its grid."""
        grid = self.log_cache.get("grid")
        if grid is not None and weights in grid[0]:
            users, ranks = grid[1]
            return users, ranks[grid[0].index(weights)]
        users, ranks = own_ranks(self, self.log, [weights])
        return users, ranks[0]

    def weights_plan(self, weights: str, strategy: str = "exact") -> tuple:
        """((grid, prior, strength) when histories are scored with per-user weights, else None; a note when
        weights="self" falls back to the fitted weights or to the fit's prior, else None):
        recgpt.predict.self_weights.plan for this model and catalog, the prior from the catalog's log if any and
        the fit was made on other datasets."""
        fit, note = plan(weights, self.weight_prior, self.source, strategy, self.scorer.mode)
        if fit is None:
            return None, note
        if self.namespace in self.fit_domains:  # fitted on this dataset itself: its own labelled balance
            return (*fit, STRENGTH), None
        if self.log and self.log_cache.get("grid", (None,))[0] != fit[0]:  # once per log and fit grid
            self.log_cache["grid"] = (fit[0], own_ranks(self, self.log, fit[0]))
            self.log_cache["prior"] = log_prior(self, self.log, fit[0], self.log_cache["grid"][1])
        if self.log_prior is None:
            return (*fit, STRENGTH), ("weights=self: the catalog has no interaction log (set_log): the prior of the "
                                      "per-user weights is the fit on the other domain")
        return (fit[0], self.log_prior, LOG_STRENGTH), None

    def recommend_rows(self, histories: Sequence[Sequence[int]], k: int = 10, horizon: int = 1,
                       strategy: str = "exact", allow_history=True, n_samples: int = 8,
                       temperature: float = 1.0, seed: int = 0, keys: Optional[Sequence[int]] = None,
                       weights: str = "fitted"):
        """Catalog rows in, catalog rows out (batched); every history must be non-empty. `weights`: fitted (the
        model's stored score weights) or self (each history scored with the point of the export's fitted weight
        grid its own last item picks, recgpt.predict.self_weights; one exact step, else the fitted weights).
        `allow_history`: True, False, or "auto" (own items placed as often as the catalog's log repeats an item,
        recgpt.predict.repeats; the exact strategy with a log, else excluded)."""
        check_recommend_args(k=k, horizon=horizon, strategy=strategy, n_samples=n_samples, temperature=temperature,
                             allow_history=allow_history, seed=seed, weights=weights)
        if self.scorer is None:
            raise ValueError("no catalog: call set_catalog(...) or set_catalog_from_prepared(...) first")
        from recgpt.predict.rerank import catalog_context, fallback_note

        if self.reranker is not None and not fallback_note(self, strategy, horizon):
            return self.reranker.recommend(catalog_context(self), histories, k)
        prior, _ = self.weights_plan(weights, strategy)
        if allow_history == "auto" and not repeats.fallback_note(self, strategy, horizon):
            recs, scores = self.recommend_rows(histories, k, horizon, strategy, False, n_samples, temperature, seed,
                                               keys, weights)
            return repeats.place(self, recs, scores, histories, repeats.list_weights(self, prior), k, horizon)[:2]
        allow_history = allow_history is True  # auto without a log or for several steps: excluded
        if prior is not None:
            points = self_weights(self, histories, *prior)
            return rank_self_weighted(self, histories, prior[0], points, k, allow_history, self.batch_size)
        keys = list(range(len(histories))) if keys is None else list(keys)
        steps = horizon if strategy in ("rra", "ra") else k
        # A trie beam narrower than k could not fill the list: widen it to k for this call.
        self.scorer.beam_size = max(self.beam_size, k)
        recs, scores = [], []
        for start in range(0, len(histories), self.batch_size):
            part = slice(start, start + self.batch_size)
            r, s = recommend_lists(self.scorer, histories[part], k, strategy, steps, allow_history, self.beam_size,
                                   n_samples, temperature, seed, keys[part])
            recs += r
            scores += s
        return recs, scores

    def recommend(self, histories: Sequence[Sequence[str]], k: int = 10, horizon: int = 1, strategy: str = "exact",
                  allow_history="auto", on_empty: str = "error", **kwargs) -> Recommendations:
        """Top-k item ids and scores per history (item ids, oldest first). Unknown items are dropped and
        counted; a history left empty raises (on_empty="error") or gets an empty list ("skip"). `allow_history`:
        "auto" (own items as often as the catalog's log repeats one; excluded without a log, with a note), True or
        False (recommend_rows). `kwargs`: n_samples, temperature, seed, and weights ("fitted", or "self")."""
        check_recommend_args(k=k, horizon=horizon, strategy=strategy, on_empty=on_empty, allow_history=allow_history,
                             **kwargs)
        if self.scorer is None:
            raise ValueError("no catalog: call set_catalog(...) or set_catalog_from_prepared(...) first")
        if k > self.catalog.n_items:
            raise ValueError(f"k={k} is larger than the catalog ({self.catalog.n_items} items)")
        if not isinstance(histories, (str, bytes)):  # a generator would be spent by the check below
            histories = [h if isinstance(h, (str, bytes)) else list(h) for h in histories]
        if isinstance(histories, (str, bytes)) or any(isinstance(h, (str, bytes)) for h in histories):
            raise TypeError("histories must be a list of item-id lists (one list per user)")
        rows, unknown, empty = [], 0, []
        for i, history in enumerate(histories):
            known, missing = self.catalog.rows(history)
            unknown += missing
            if not known:
                if on_empty == "error":
                    raise ValueError(f"history {i} has no item in the catalog ({len(history)} item(s), "
                                     f"{missing} unknown): nothing to predict from")
                empty.append(i)
            rows.append(known)
        live = [i for i, r in enumerate(rows) if r]
        recs, scores = self.recommend_rows([rows[i] for i in live], k, horizon, strategy, allow_history,
                                           keys=live, **kwargs)
        out_ids, out_scores = [[] for _ in rows], [[] for _ in rows]
        for i, rec, sc in zip(live, recs, scores):
            out_ids[i] = [self.catalog.item_ids[r] for r in rec]
            out_scores[i] = list(sc)
        notes = [NO_LOG_NOTE] if self.scorer.without_popularity else []
        from recgpt.predict.rerank import fallback_note

        skipped = fallback_note(self, strategy, horizon)
        if self.reranker is not None and not skipped:  # its list: history excluded, no per-user weights
            notes += [RERANK_NOTE] if allow_history is not False else []
        else:
            notes += [n for n in (skipped, self.weights_plan(kwargs.get("weights", "fitted"), strategy)[1],
                                  allow_history == "auto" and repeats.fallback_note(self, strategy, horizon)) if n]
        notes += [n for n in [short_lists_note(recs, k, strategy)] if n]
        return Recommendations(out_ids, out_scores, unknown, empty, notes)

    def baseline(self, histories: Sequence[Sequence[str]], method: str = "content_knn", k: int = 10,
                 allow_history: bool = True) -> Recommendations:
        """What a user gets without the model, on the same catalog: `content_knn` (cosine of item text
        embeddings to a decay^age-weighted mean of the last items, as self.knn says), `popularity` (the catalog's
        counts; without a log, counted over these histories, with a note) or `recency`. Unknown items are
        dropped and counted; a history left empty gets an empty list."""
        from recgpt.data.popularity import ranking
        from recgpt.predict.baselines import baseline_lists

        check_baseline_args(method, k, allow_history)
        if self.catalog is None:
            raise ValueError("no catalog: call set_catalog(...) or set_catalog_from_prepared(...) first")
        rows = [self.catalog.rows(history) for history in histories]
        live = [i for i, (known, _) in enumerate(rows) if known]
        counts, notes = self.catalog.popularity, []
        if method == "popularity" and counts is None:
            notes.append("the catalog has no interaction log: popularity counted over the histories of this call")
        lists = baseline_lists(method, [rows[i][0] for i in live], k, allow_history, self.catalog.text_emb,
                               self.knn, ranking(counts) if counts is not None else None)
        out_ids = [[] for _ in rows]
        for i, rec in zip(live, lists):
            out_ids[i] = [self.catalog.item_ids[r] for r in rec]
        return Recommendations(out_ids, [[] for _ in rows], sum(m for _, m in rows),
                               [i for i, (known, _) in enumerate(rows) if not known], notes)

