"""An exported recgpt model (ckpt/<run>/best) ranked on a baseline's in-domain split with the baselines' code.

`recgpt predict --horizon N` evaluates every user with more than N items; the baselines' horizon protocol
evaluates the test half and picks sample / rra / ra temperatures on the validation half. To sit in the same
table, the model is scored here on exactly those cases: the split's item rows are translated into the
model's catalog rows (the prepared items encoded with the model's tokenizer), and `rank_cases` /
`choose_temperature` of recgpt.baselines.run do the rest, so strategies, seeds and metrics are the same.
"""
import time
from pathlib import Path

from recgpt.baselines.data import InDomainSplit, subset
from recgpt.predict.protocols import TestCases


class ExportedModel:
    """The baseline interface over a Recommender's ItemScorer: catalog rows in, catalog rows out."""

    generative = True

    def __init__(self, name: str, recommender):
        self.name, self.scorer = name, recommender.scorer

    @property
    def n_items(self) -> int:
        return self.scorer.n_items

    def log_probs(self, histories):
        return self.scorer.log_probs(histories)

    def recommend(self, histories, k, users=None, allow_history=False):
        from recgpt.predict.horizon import recommend_lists

        return recommend_lists(self.scorer, histories, k, "exact", allow_history=allow_history)


def to_catalog_rows(cases: TestCases, split_ids: list, catalog) -> TestCases:
    """The same cases with split rows replaced by catalog rows; a ValueError naming an item the catalog lacks."""
    def rows(items):
        found, missing = catalog.rows([split_ids[i] for i in items])
        if missing:  # name the first one
            absent = next(split_ids[i] for i in items if not catalog.rows([split_ids[i]])[0])
            raise ValueError(f"item {absent!r} of the split is not in the model's catalog")
        return found

    return TestCases(cases.protocol, list(cases.user_ids), [rows(h) for h in cases.histories],
                     [rows(t) for t in cases.targets], dict(cases.counts))


def split_popularity(split: InDomainSplit, catalog):
    """The catalog's popularity in an in-domain evaluation: counts over the split's training sequences (never a
    validation or test target)."""
    from recgpt.data.popularity import counts_of_ids

    return counts_of_ids(catalog.item_ids, [split.item_ids[i] for sequence in split.train for i in sequence])


def split_rows(split: InDomainSplit, cfg, catalog, part: str):
    """The split's seeded `test`, `valid` or `fit` (validation users for the hybrid fit) cases, at most
    cfg.max_<part>_users of them, in catalog rows."""
    cases, limit = {"test": (split.test, cfg.max_test_users), "valid": (split.valid, cfg.max_valid_users),
                    "fit": (split.valid, cfg.max_fit_users)}[part]
    return to_catalog_rows(subset(cases, limit, cfg.seed), split.item_ids, catalog)


def set_split_catalog(rec, prepared, split: InDomainSplit):
    """The prepared dataset as `rec`'s catalog, its popularity counted over the split's training sequences."""
    rec.set_popularity(split_popularity(split, rec.set_catalog_from_prepared(prepared, popularity=None)))
    return rec.catalog


def evaluate_exported(name: str, model_dir, prepared, split: InDomainSplit, cfg, embed_cfg) -> dict:
    """metrics.json-like result of the exported model at `model_dir` on `split` (cfg: a BaselineConfig)."""
    from recgpt.baselines.run import choose_temperature, rank_cases
    from recgpt.predict.recommender import Recommender
    from recgpt.predict.run import evaluate

    rec = Recommender.from_pretrained(Path(model_dir), embed_cfg=embed_cfg, beam_size=cfg.beam_size)
    catalog = set_split_catalog(rec, prepared, split)
    test, valid = split_rows(split, cfg, catalog, "test"), split_rows(split, cfg, catalog, "valid")
    model, horizon = ExportedModel(name, rec), cfg.horizon if split.protocol == "horizon" else 1
    ks, k = sorted(set(cfg.ks)), max(cfg.ks)
    methods, by_position, temperatures, seconds = {}, {}, {}, {}
    for strategy in cfg.strategies:
        temperature, tried = choose_temperature(model, valid, strategy, cfg)
        start = time.time()
        recs, _ = rank_cases(model, test, k, strategy, cfg, temperature)
        method = name if strategy == "exact" else f"{name}-{strategy}"
        seconds[method] = round(time.time() - start, 2)
        methods[method], by_position[method] = evaluate(recs, test.targets, catalog.n_items, ks, horizon)
        if tried:
            temperatures[method] = {"chosen": temperature, "valid_ndcg@10": tried}
    return {"dataset": split.dataset, "protocol": split.protocol, "horizon": horizon, "model_dir": str(model_dir),
            "counts": {**split.counts, "evaluated": len(test)}, "methods": methods,
            "by_position": by_position if horizon > 1 else None, "temperatures": temperatures,
            "seconds": {"rank": seconds}}
