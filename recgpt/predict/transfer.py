"""Zero-shot evaluation on a domain the model never saw, against the baselines, with bootstrap intervals.

`zero_shot_eval(rec, folder, protocol)` builds the catalog from the folder's items.parquet, the test cases
from its interactions (the only read of them: the histories scored and their targets), and returns HR@K /
NDCG@K per method with per-user values, so that `bootstrap_ratio` can put a 95% interval on model / content
kNN by resampling users. History items are excluded from every list (allow_history=False).
"""
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd
import torch

from recgpt.predict import baselines
from recgpt.predict.metrics import bootstrap_ratio, per_user
from recgpt.predict.scoring import ItemVectors


def read_interactions(folder) -> pd.DataFrame:
    path = Path(folder) / "interactions.parquet"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no interactions to evaluate on")
    return pd.read_parquet(path)


def zero_shot_eval(rec, folder, protocol: str = "loo", max_users: Optional[int] = 2000, k: int = 10,
                   seed: int = 0, catalog_set: bool = False, alone: Sequence[str] = (),
                   weighted: Optional[dict] = None, given: Optional[dict] = None, liger: bool = False) -> dict:
    """{"methods": {name: {"HR@k", "NDCG@k"}}, "per_user": {name: {...}}, "users": U} for the model, the model
    scored by each component of `alone` by itself ("model[code]", "model[dense]"), by each {row name: score
    weights} of `weighted` (e.g. the fitted priors without the model's components), the baselines recency,
    popularity, content_knn and content_knn_centered (kNN on catalog-centered embeddings), and each {row name:
    {user id: [item ids, best first]}} of `given` (lists made elsewhere, e.g. an in-domain model's; a user
    without one counts as a miss there, and "given_covered" marks the users that have one: see `restrict`);
    with `liger`, the model's `liger_lists`."""
    from recgpt.data.popularity import ranking
    from recgpt.predict.protocols import build_test_cases, popularity_before_targets

    if not catalog_set:
        rec.set_catalog_from_prepared(folder, popularity=None)
    interactions = read_interactions(folder)
    rec.set_popularity(popularity_before_targets(interactions, rec.catalog, protocol, 1, seed))
    catalog = rec.catalog
    cases = build_test_cases(interactions, catalog, protocol, 1, seed, max_users)
    if len(cases) == 0:
        raise ValueError(f"{folder}: no test case for protocol {protocol}: {cases.counts}")
    k_list = min(k, catalog.n_items)
    recs, _ = rec.recommend_rows(cases.histories, k_list, 1, "exact", allow_history=False, seed=seed)
    lists = {"model": recs}
    config, stored = rec.model.config, rec.model.config.score_weights
    rows = {**{f"model[{name}]": {name: 1.0} for name in alone}, **(weighted or {})}
    try:  # the model's own components without the priors, the priors without the model: what each brings
        for row, weights in rows.items():
            config.score_weights = dict(weights)
            rec.use_catalog(catalog)
            lists[row] = rec.recommend_rows(cases.histories, k_list, 1, "exact", allow_history=False, seed=seed)[0]
    finally:
        config.score_weights = stored
        rec.use_catalog(catalog)
    if liger:
        lists.update(liger_lists(rec, cases.histories, k_list, seed))
    for method in baselines.BASELINES:
        lists[method] = baselines.baseline_lists(method, cases.histories, k_list, False, catalog.text_emb, rec.knn,
                                                 ranking(catalog.popularity))
    centered = ItemVectors(catalog.text_emb, center=True)
    knn = rec.knn or baselines.KNN
    lists["content_knn_centered"] = baselines.content_knn(cases.histories, centered, k_list, False, knn.last, knn.decay)
    covered = {}
    for name, by_user in (given or {}).items():  # a list's first k ids, those the catalog has, as rows
        lists[name] = [catalog.rows(by_user.get(str(u), [])[:k])[0] for u in cases.user_ids]
        covered[name] = np.array([str(u) in by_user for u in cases.user_ids])
    users = {name: per_user(r, cases.targets, k) for name, r in lists.items()}
    methods = {name: {f"{m}@{k}": float(v.mean()) for m, v in u.items()} for name, u in users.items()}
    return {"protocol": protocol, "users": len(cases), "counts": cases.counts, "methods": methods, "per_user": users,
            "catalog_items": catalog.n_items, "given_covered": covered, "user_ids": [str(u) for u in cases.user_ids]}


def liger_lists(rec, histories, k: int, seed: int = 0) -> dict:
    """A code + dense model's rows of LIGER's hybrid (predict.scoring=liger) on the catalog set: "model[liger]"
    (the trie beam's items plus every catalog item unseen in pretraining, re-ranked by the score without codes;
    on a held-out domain every item is unseen) and "model[beam]" (the beam's items alone, re-ranked: what the
    code beam retrieves)."""
    catalog, scoring = rec.catalog, rec.scoring
    rec.scoring = "liger"
    try:
        rec.use_catalog(catalog)
        out = {"model[liger]": rec.recommend_rows(histories, k, 1, "exact", allow_history=False, seed=seed)[0]}
        rec.scorer.unseen = torch.zeros_like(rec.scorer.unseen)
        out["model[beam]"] = rec.recommend_rows(histories, k, 1, "exact", allow_history=False, seed=seed)[0]
    finally:
        rec.scoring = scoring
        rec.use_catalog(catalog)
    return out


class ItemRows:
    """What test cases need of a catalog (its item ids and their rows) for a bare list of item ids."""

    def __init__(self, item_ids: Sequence[str]):
        from recgpt.data.ids import ItemLookup

        self.item_ids = [str(i) for i in item_ids]
        self.rows = ItemLookup.of(self.item_ids).rows


def baselines_eval(folder, item_ids: Sequence[str], vectors: dict, protocol: str = "loo",
                   max_users: Optional[int] = 2000, knn=None, k: int = 10, seed: int = 0) -> dict:
    """The label-free rows without a model: content kNN over each {name: float [N, D] item vectors aligned with
    item_ids} of `vectors` (e.g. plain and aligned text embeddings) and popularity (the dataset's log before
    each target), on the same seeded users as zero_shot_eval, history excluded. Same result layout."""
    from recgpt.data.popularity import ranking
    from recgpt.predict.protocols import build_test_cases, popularity_before_targets

    interactions = read_interactions(folder)
    catalog = ItemRows(item_ids)
    cases = build_test_cases(interactions, catalog, protocol, 1, seed, max_users)
    if len(cases) == 0:
        raise ValueError(f"{folder}: no test case for protocol {protocol}: {cases.counts}")
    knn = knn or baselines.KNN
    counts = popularity_before_targets(interactions, catalog, protocol, 1, seed)
    lists = {"popularity": baselines.popularity(cases.histories, k, False, ranking(counts))}
    for name, emb in vectors.items():
        lists[name] = baselines.content_knn(cases.histories, emb, k, False, knn.last, knn.decay)
    users = {name: per_user(r, cases.targets, k) for name, r in lists.items()}
    methods = {name: {f"{m}@{k}": float(v.mean()) for m, v in u.items()} for name, u in users.items()}
    return {"protocol": protocol, "users": len(cases), "counts": cases.counts, "methods": methods, "per_user": users,
            "catalog_items": len(catalog.item_ids), "user_ids": [str(u) for u in cases.user_ids]}


def restrict(result: dict, keep: np.ndarray, k: int = 10) -> dict:
    """The result on the users where `keep` (Bool[U]) is true: per-user values and their means."""
    users = {name: {m: v[keep] for m, v in u.items()} for name, u in result["per_user"].items()}
    methods = {name: {f"{m}@{k}": float(v.mean()) for m, v in u.items()} for name, u in users.items()}
    return {**result, "users": int(keep.sum()), "methods": methods, "per_user": users}


def ratio_rows(result: dict, k: int = 10, reference: str = "content_knn", n_boot: int = 1000, seed: int = 0) -> list:
    """Table rows: method, HR@k, NDCG@k, NDCG ratio to the reference and its 95% bootstrap interval."""
    ref = result["per_user"][reference]["NDCG"]
    rows = []
    for name, values in result["methods"].items():
        ratio, lo, hi = bootstrap_ratio(result["per_user"][name]["NDCG"], ref, n_boot, seed)
        rows.append({"method": name, f"HR@{k}": values[f"HR@{k}"], f"NDCG@{k}": values[f"NDCG@{k}"],
                     "ratio": ratio, "lo": lo, "hi": hi})
    return rows


class TransferProbe:
    """Zero-shot NDCG@k of checkpoints on one held-out source domain (checkpoint selection by transfer).
    The catalog and test cases are built once: they depend on the tokenizer only, not on the checkpoint."""

    def __init__(self, cfg, tokenizer_dir, k: int = 10):
        from recgpt.predict.catalog import catalog_from_prepared, read_catalog_items
        from recgpt.predict.protocols import build_test_cases, popularity_before_targets
        from recgpt.predict.run import resolve_dataset
        from recgpt.tokenizer import load_tokenizer

        folder = resolve_dataset(cfg.eval.zero_shot_domain, cfg.data, "eval.zero_shot_domain")
        catalog = catalog_from_prepared(read_catalog_items(folder), load_tokenizer(tokenizer_dir), cfg.embed)
        interactions = read_interactions(folder)
        self.catalog = catalog.with_popularity(
            popularity_before_targets(interactions, catalog, "loo", 1, cfg.predict.seed))
        self.cases = build_test_cases(interactions, self.catalog, "loo", 1, cfg.predict.seed, cfg.eval.zero_shot_users)
        self.knn = cfg.predict.knn
        self.k, self.folder = k, folder

    def ndcg(self, model) -> float:
        from recgpt.predict.recommender import Recommender

        rec = Recommender(model, catalog=self.catalog, knn=self.knn)
        recs, _ = rec.recommend_rows(self.cases.histories, self.k, 1, "exact", allow_history=False)
        return float(per_user(recs, self.cases.targets, self.k)["NDCG"].mean())
