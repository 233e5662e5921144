"""An exported recgpt model's hybrid score weights fitted on an in-domain split's *validation* users, then its
leave-one-out test users ranked with them.

The components (code, dense, knn, pop: recgpt.predict.hybrid; dense only when the model has a dense head) are
scored on the split's validation cases (history items[:-2], target items[-2]: what `data.train_split=loo`
never trains on) and the weight simplex is searched there with recgpt.predict.hybrid.fit_score_weights. The
test cases are built only once the weights are fixed; the winner is stored in the model's config.json and the
fit with its grid in score_fit.json, so `recgpt predict` scores the same way (predict.weights=fitted, or self:
per-user points of that grid). The test users are ranked with the fitted weights, with each of the
model's own components alone, with the best priors-only weights (knn + pop, chosen on validation too), so
the table shows what the model adds over the text and popularity priors, and with per-user weights (`[self]`,
recgpt.predict.self_weights: the validation grid, stored as score_fit.json, as the prior).
"""
import json
from pathlib import Path
from typing import Optional

from recgpt.baselines.data import InDomainSplit
from recgpt.baselines.exported import set_split_catalog, split_rows
from recgpt.predict.hybrid import PRIOR_COMPONENTS as PRIORS, SCORE_FIT, best_model_free, grid_ndcg
from recgpt.predict.ranking import top_k_items
from recgpt.predict.scoring import combine
from recgpt.predict.self_weights import read_fit_domains, read_prior


def model_components(config) -> list:
    return [*(["code"] if config.codes is not None else []), *(["dense"] if config.dense is not None else []), *PRIORS]


def fit_on_valid(rec, valid, names, k: int = 10, step: float = 0.1) -> dict:
    """{"weights", "valid_ndcg@k", "priors" (the best knn + pop weights), "single" ({component: valid NDCG@k}),
    "table" (every grid point's weights and NDCG@k relative to the best: the prior of predict.weights=self)}."""
    weights, table = grid_ndcg(rec, valid, names, k, step)
    ndcg = {json.dumps(w, sort_keys=True): v for w, v in table}
    best_priors = best_model_free([w for w, _ in table], [v for _, v in table])
    single = {n: next(v for w, v in table if w[n] == 1.0) for n in names}
    top = max(max(v for _, v in table), 1e-12)
    return {"weights": weights, f"valid_ndcg@{k}": ndcg[json.dumps(weights, sort_keys=True)],
            "priors": table[best_priors][0], f"priors_valid_ndcg@{k}": table[best_priors][1], "single": single,
            "valid_users": len(valid), "table": [{"weights": w, "relative": v / top} for w, v in table]}


def rank_with(rec, histories, weight_sets: dict, k: int, batch_size: int = 256) -> dict:
    """{method: top-k catalog rows per history} for each {method: weights}, history items excluded; the
    popularity is the catalog's (the split's training counts)."""
    scorer = rec.scorer
    names = {n for w in weight_sets.values() for n, v in w.items() if v}
    out = {method: [] for method in weight_sets}
    for start in range(0, len(histories), batch_size):
        part = histories[start:start + batch_size]
        parts = scorer.components(part, scorer.state(part), names)
        for method, weights in weight_sets.items():
            rows, _ = top_k_items(combine(parts, weights), k, part)
            out[method] += [[int(r) for r in row if r >= 0] for row in rows.tolist()]
    return out


def store_weights(model_dir: Path, weights: dict, fit: Optional[dict] = None) -> None:
    """The weights into the export's config.json (what from_pretrained scores with) and the fit, with its grid,
    as score_fit.json (the prior of predict.weights=self)."""
    from recgpt.io import write_json

    path = Path(model_dir) / "config.json"
    config = json.loads(path.read_text())
    write_json(path, {**config, "score_weights": weights})
    if fit is not None:
        write_json(Path(model_dir) / SCORE_FIT, fit)


def split_recommender(model_dir, prepared, split: InDomainSplit, embed_cfg):
    """The exported model on the split's catalog, its popularity counted over the split's training sequences."""
    from recgpt.predict.recommender import Recommender

    rec = Recommender.from_pretrained(Path(model_dir), embed_cfg=embed_cfg, scoring="exact")
    set_split_catalog(rec, prepared, split)
    return rec


def fit_and_store(model_dir, prepared, split: InDomainSplit, cfg, embed_cfg) -> tuple:
    """(Recommender on the split's catalog, fit): weights fitted on the split's validation users (at most
    cfg.max_fit_users; next-10: on their first target, the next item) and stored in the export's config.json.
    No test case is read."""
    from recgpt.predict.protocols import TestCases

    rec = split_recommender(model_dir, prepared, split, embed_cfg)
    valid = split_rows(split, cfg, rec.catalog, "fit")
    first = TestCases(valid.protocol, valid.user_ids, valid.histories, [t[:1] for t in valid.targets], valid.counts)
    fit = {**fit_on_valid(rec, first, model_components(rec.model.config)), "domains": [split.dataset]}
    store_weights(model_dir, fit["weights"], fit)
    rec.weight_prior, rec.fit_domains = read_prior(model_dir), read_fit_domains(model_dir)
    return rec, fit


def evaluate_hybrid_loo(name: str, model_dir, prepared, split: InDomainSplit, cfg, embed_cfg) -> dict:
    """metrics.json-like result of the exported model on the LOO `split` (cfg: a BaselineConfig): methods
    `name` (fitted weights), `name[code]`, `name[dense]`, `name[knn+pop]`; the fit under "score_fit"."""
    from recgpt.predict.run import evaluate

    if split.protocol != "loo":
        raise ValueError(f"evaluate_hybrid_loo: a leave-one-out split, got {split.protocol!r}")
    rec, fit = fit_and_store(model_dir, prepared, split, cfg, embed_cfg)
    catalog, names = rec.catalog, model_components(rec.model.config)
    test = split_rows(split, cfg, catalog, "test")
    weight_sets = {name: fit["weights"], **{f"{name}[{n}]": {n: 1.0} for n in names if n not in PRIORS},
                   f"{name}[knn+pop]": fit["priors"]}
    ks = sorted(set(cfg.ks))
    recs = rank_with(rec, test.histories, weight_sets, max(ks))
    recs[f"{name}[self]"] = rec.recommend_rows(test.histories, max(ks), allow_history=False, weights="self")[0]
    methods = {method: evaluate(r, test.targets, catalog.n_items, ks, 1)[0] for method, r in recs.items()}
    return {"dataset": split.dataset, "protocol": "loo", "horizon": 1, "model_dir": str(model_dir),
            "counts": {**split.counts, "evaluated": len(test)}, "methods": methods,
            "score_fit": {key: value for key, value in fit.items() if key != "table"},
            "weight_sets": weight_sets}
