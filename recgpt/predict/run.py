"""The predict stage: model + downstream dataset -> test cases -> recommendations -> metrics and report.

build (model, catalog, test cases) -> recommend (model, recency, popularity, content kNN) -> evaluate -> write_report.
"""
import json
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

from recgpt.config import ConfigError, config_to_dict, known_dataset_specs
from recgpt.config.errors import check, check_device
from recgpt.io import guarded_output, is_kind, manifest_hash, staged_folder, write_manifest
from recgpt.logging import print0, warn
from recgpt.predict import baselines, repeats, self_weights
from recgpt.config.args import short_lists_note
from recgpt.predict.metrics import coverage, position_hit_rates, ranking_metrics
from recgpt.data.popularity import ranking
from recgpt.predict.hybrid import best_model_free
from recgpt.predict.protocols import build_test_cases, popularity_before_targets, sequences_before_targets
from recgpt.model.files import resolve_model_dir
from recgpt.predict.recommender import RERANK_NOTE, Recommender
from recgpt.predict.metrics import bootstrap_ratio, per_user
from recgpt.predict.rerank import catalog_context, fallback_note
from recgpt.predict.rerank.model import top_rows
from recgpt.predict.report import recommendations_frame, write_report


def check_dataset(name, data_cfg, key: str = "predict.dataset") -> str:
    """'folder', 'spec' or 'prepared' for a usable dataset name; a ConfigError naming `key` and listing the
    known names otherwise."""
    if name is None:
        raise ConfigError(f"{key}: give a dataset name ({', '.join(known_dataset_specs())}) "
                          "or a prepared folder")
    if (Path(name) / "interactions.parquet").is_file():
        return "folder"
    if name in known_dataset_specs():
        return "spec"
    if (Path(data_cfg.prepared_root) / name / "interactions.parquet").is_file():
        return "prepared"
    raise ConfigError(f"{key}: unknown dataset {name!r} (neither a prepared folder nor a name under "
                      f"configs/datasets/); known: {', '.join(known_dataset_specs())}")


def resolve_dataset(name: str, data_cfg, key: str = "predict.dataset") -> Path:
    """A prepared folder, or a name under configs/datasets/ (prepared on demand into data.prepared_root)."""
    kind = check_dataset(name, data_cfg, key)
    if kind == "folder":
        return Path(name)
    if kind == "spec":
        from recgpt.data.corpus import prepared_folder

        return prepared_folder(name, data_cfg)
    return Path(data_cfg.prepared_root) / name


def output_dir(cfg, model_dir: Path, dataset: str) -> Path:
    if cfg.predict.output_dir:
        return Path(cfg.predict.output_dir)
    run_dir = model_dir.parent if model_dir.name == "best" else model_dir
    return run_dir / "predict" / f"{dataset}-{cfg.predict.protocol}"


def pretraining_note(model_dir: Path, dataset: str):
    """A note when `dataset` is one the model was pretrained on (source.json, written by `recgpt eval`): its
    targets were (part of) the training data, so the report is not a zero-shot one."""
    from recgpt.io import read_json

    source = model_dir / "source.json"
    info = read_json(source) if source.is_file() else {}
    if dataset not in (info.get("pretrained_on") or []):
        return None
    split = info.get("train_split") or "all"
    seen = ("its test targets were training data" if split == "all" else
            f"it was trained on its {split} training split, so the histories were training data")
    return (f"{dataset} is one of the datasets the model was pretrained on ({source}: pretrained_on): {seen}; "
            "this is not a zero-shot result")


def evaluate(recs, targets, n_items: int, ks, horizon: int) -> tuple[dict, dict]:
    metrics = {**ranking_metrics(recs, targets, ks), **coverage(recs, n_items, ks)}
    by_position = {str(k): v for k, v in position_hit_rates(recs, targets, ks).items()} if horizon > 1 else None
    return metrics, by_position


def run_predict(cfg) -> Path:
    """Run one prediction (cfg.predict) and write its report; returns the output folder."""
    with ExitStack() as held:  # the output folder, held from the first check to the report
        return predict_held(cfg, held)


def predict_held(cfg, held: ExitStack) -> Path:
    from recgpt.data import load_prepared

    p, start = cfg.predict, time.time()
    horizon = p.horizon if p.protocol == "horizon" else 1
    check_dataset(p.dataset, cfg.data)  # cheap checks first: a wrong name or path fails at once
    check_device(p.device, "predict.device")
    check(not p.reranker or Path(p.reranker).exists(), "predict.reranker",
          f"{p.reranker} does not exist: train the re-ranker first (`recgpt rerank` with the same --config writes "
          "rerank.out), or set predict.reranker=null for the model's own list")
    model_dir = resolve_model_dir(p.model_dir)
    dataset_dir = resolve_dataset(p.dataset, cfg.data)
    prepared = load_prepared(dataset_dir)
    out = output_dir(cfg, model_dir, prepared.name)
    inputs = [model_dir / "model.safetensors", model_dir / "config.json", dataset_dir]  # a report may sit in model_dir
    inputs += [Path(p.reranker)] if p.reranker else []
    held.enter_context(guarded_output(out, "prediction report", "predict.output_dir", is_kind("predict"), inputs))
    rec = Recommender.from_pretrained(model_dir, tokenizer_dir=p.tokenizer_dir, embed_cfg=cfg.embed, knn=p.knn,
                                      device=p.device, scoring=p.scoring, beam_size=p.beam_size,
                                      batch_size=p.batch_size)
    if p.reranker:
        rec.set_reranker(p.reranker)
    print0(f"predict: encoding the {len(prepared.items)} items of {prepared.name} with the model's tokenizer")
    catalog = rec.set_catalog_from_prepared(prepared, popularity=None)
    # the catalog's popularity: its log before each user's targets (never a target, whoever is scored)
    rec.set_popularity(popularity_before_targets(prepared.interactions, catalog, p.protocol, horizon, p.seed))
    rec.set_log(sequences_before_targets(prepared.interactions, p.protocol, horizon, p.seed))  # the same part of it
    catalog = rec.catalog
    cases = build_test_cases(prepared.interactions, catalog, p.protocol, horizon, p.seed, p.max_users)
    enough = min(p.min_users, p.max_users or p.min_users)
    if len(cases) < enough:
        what = f"protocol {p.protocol}" + (f" (the last {horizon} items held out)" if p.protocol == "horizon" else "")
        raise ConfigError(f"{dataset_dir}: {what} leaves {len(cases)} evaluable users of {cases.counts['users']} "
                          f"({cases.counts['too_short']} too short), under predict.min_users={p.min_users}: no "
                          "figure from so few; use a shorter predict.horizon, another dataset, or lower predict.min_users")
    k_max, notes = max(p.ks), []
    auto, allow = p.allow_history == "auto", p.allow_history is True
    skipped = fallback_note(rec, p.strategy, horizon)  # a re-ranker that cannot score this call
    reranking = rec.reranker is not None and not skipped
    if skipped or (reranking and p.allow_history is not False):
        notes.append(skipped or RERANK_NOTE)
        warn(notes[-1])
    if reranking:  # its list never holds a history item: no row does, so that they compare
        auto = allow = False
    excluded = auto and repeats.fallback_note(rec, p.strategy, horizon)
    if excluded:
        notes.append(excluded)
        warn(excluded)
        auto = False
    if not (allow or auto) and cases.counts["targets_in_history"]:
        notes.append(f"{cases.counts['targets_in_history']} of the {len(cases)} users have a target among their own "
                     f"history items: with them excluded (predict.allow_history={p.allow_history}) every row but recency "
                     "misses them (recency lists history items only)")
        warn(notes[-1])
    if reranking and prepared.name in rec.reranker.meta.get("sources", []):
        notes.append(f"the re-ranker was trained on {prepared.name} (its log before the LOO targets): an in-domain "
                     "figure, not zero-shot" + ("" if p.protocol == "loo" else
                                                f"; under {p.protocol} its trained transitions may be targets here"))
        warn(notes[-1])
    seen = pretraining_note(model_dir, prepared.name)
    if seen:
        notes.append(seen)
        warn(seen)
    ks = sorted(set(p.ks))
    if k_max > catalog.n_items:
        notes.append(f"K up to {k_max} exceeds the catalog ({catalog.n_items} items): lists hold at most "
                     f"{catalog.n_items} items")
        warn(notes[-1])
    prior, fallback = rec.weights_plan(p.weights, p.strategy)
    if fallback and not reranking:  # the model row is the re-ranker's; the priors row still reads `prior`
        notes.append(fallback)
        warn(fallback)
    print0(f"predict: {len(cases)} users, protocol {p.protocol}, strategy {p.strategy}, scoring {rec.scorer.mode}, "
           f"weights {'reranker' if reranking else 'self' if prior else 'fitted'}")
    t0 = time.time()
    own = self_weights.own_ranks(rec, cases.histories, prior[0]) if prior else None
    if reranking:
        recs, scores = rec.recommend_rows(cases.histories, min(k_max, catalog.n_items), 1, "exact", False)
        used = {"reranker": len(cases)}
    elif prior:
        points = self_weights.choose(own[1], own[0], len(cases), *prior[1:])
        recs, scores = self_weights.rank_self_weighted(rec, cases.histories, prior[0], points,
                                                       min(k_max, catalog.n_items), allow, p.batch_size)
        used = {json.dumps(prior[0][g], sort_keys=True): n for g, n in Counter(points.tolist()).most_common()}
    else:
        recs, scores = rec.recommend_rows(cases.histories, min(k_max, catalog.n_items), horizon, p.strategy,
                                          allow, p.n_samples, p.temperature, p.seed)
        used = {json.dumps(rec.scorer.weights, sort_keys=True): len(cases)}
    repeat = None
    if auto:
        recs, scores, repeat = repeats.place(rec, recs, scores, cases.histories, repeats.list_weights(rec, prior),
                                             k_max, horizon)
    model_seconds = time.time() - t0
    short = short_lists_note(recs, min(k_max, catalog.n_items), p.strategy)  # e.g. rra / ra: horizon x n_samples
    if short:
        notes.append(short)
        warn(short)
    lists = {"model": recs}
    priors = self_weights.priors_points(rec, cases.histories, prior, own)  # the bar: kNN + popularity, no model
    if priors is not None:
        lists["priors"], values = self_weights.rank_self_weighted(rec, cases.histories, *priors,
                                                                  min(k_max, catalog.n_items), allow, p.batch_size)
        if auto:
            best = best_model_free(priors[0], prior[1] if prior else rec.weight_prior[1])
            lists["priors"] = repeats.place(rec, lists["priors"], values, cases.histories, priors[0][best], k_max,
                                             horizon)[0]
    if reranking:  # the re-ranker's base rule: the per-user priors + the log's co-occurrence, no learned part
        lists["priors+cooc"] = top_rows(catalog_context(rec).rule, cases.histories, min(k_max, catalog.n_items))[0]
    for method in baselines.BASELINES:
        lists[method] = baselines.baseline_lists(method, cases.histories, k_max, allow, catalog.text_emb, p.knn,
                                                 ranking(catalog.popularity))
    methods, by_position = {}, {}
    for name, method_recs in lists.items():
        methods[name], by_position[name] = evaluate(method_recs, cases.targets, catalog.n_items, ks, horizon)
    k_report = 10 if 10 in ks else ks[-1]
    key = f"NDCG@{k_report}"
    ndcg = {name: per_user(r, cases.targets, k_report)["NDCG"] for name, r in lists.items()}
    versus = {name: dict(zip(("ratio", "lo", "hi"), bootstrap_ratio(ndcg["model"], values)))  # paired over users
              for name, values in ndcg.items() if name != "model"}
    result = {
        "dataset": prepared.name, "protocol": p.protocol, "horizon": horizon, "strategy": p.strategy,
        "scoring": rec.scorer.mode, "allow_history": p.allow_history, "ks": ks,
        "weights": {"mode": "reranker" if reranking else "self" if prior else "fitted", "users_per_weights": used,
                    "priors_users_per_weights": None if priors is None else {json.dumps(
                        priors[0][g], sort_keys=True): n for g, n in Counter(priors[1].tolist()).most_common()},
                    "prior": None if not prior else "log" if rec.log_prior is not None else "fit"},
        "repeats": repeat, "counts": cases.counts, "catalog": catalog.stats, "methods": methods,
        "model_vs": {"metric": key, "interval": "95% bootstrap over users, pairs kept", **versus},
        "by_position": by_position if horizon > 1 else None,
        "model_dir": str(model_dir), "dataset_dir": str(dataset_dir),
        "seconds": {"model": round(model_seconds, 3), "total": round(time.time() - start, 3),
                    "users_per_s": round(len(cases) / max(model_seconds, 1e-9), 2)},
        "notes": notes, "config": config_to_dict(p),
    }
    with staged_folder(out, "prediction report", "predict.output_dir", is_kind("predict"), carry_over=False,
                       inputs=inputs) as tmp:
        write_report(tmp, result, recommendations_frame(cases.user_ids, recs, scores, catalog.item_ids))
        write_manifest(tmp, {"stage": "predict", "model_dir": str(model_dir), "dataset_dir": str(dataset_dir),
                             "dataset_manifest_hash": manifest_hash(dataset_dir), "counts": cases.counts,
                             "config": config_to_dict(cfg)})
    print0(f"predict: {key} " + ", ".join(f"{name} {values[key]:.4f}" for name, values in methods.items())
           + f"; report in {out}")
    return out
