"""`recgpt baseline NAME`: split -> fit (early stopping on validation) -> rank the test users with each strategy
-> the same metrics.json / metrics.md / recommendations.parquet report as `recgpt predict`, plus the model.

Strategies other than exact roll out the model's next-item distribution with recgpt.predict.horizon; the
temperature of sample / rra / ra is chosen on the validation users, never on the test users.
"""
import time
from contextlib import ExitStack
from pathlib import Path

from tqdm.auto import tqdm

from recgpt.baselines import get_model
from recgpt.baselines.data import load_split, subset
from recgpt.baselines.resume import remove_resume_folder, written_here
from recgpt.config import config_to_dict
from recgpt.io import guarded_output, manifest_kind, staged_folder, write_manifest
from recgpt.logging import print0
from recgpt.predict import baselines as floors
from recgpt.predict.horizon import recommend_lists
from recgpt.predict.metrics import ranking_metrics, sampled_negative_metrics
from recgpt.predict.report import recommendations_frame, write_report
from recgpt.predict.run import evaluate

SAMPLED = ("sample", "rra", "ra")


def rank_cases(model, cases, k: int, strategy: str, cfg, temperature: float = 1.0):
    """(rows, scores) per case, in batches of cfg.eval_batch; each case keeps its own sampling key."""
    recs, scores = [], []
    for start in tqdm(range(0, len(cases), cfg.eval_batch), desc=f"{model.name} {strategy}", leave=False):
        stop = start + cfg.eval_batch
        histories, users = cases.histories[start:stop], cases.user_ids[start:stop]
        if strategy == "exact":
            rows, sc = model.recommend(histories, k, users, cfg.allow_history)
        else:
            rows, sc = recommend_lists(model, histories, k, strategy, allow_history=cfg.allow_history,
                                       beam_size=cfg.beam_size, n_samples=cfg.n_samples, temperature=temperature,
                                       seed=cfg.seed, keys=range(start, min(stop, len(cases))))
        recs += rows
        scores += sc
    return recs, scores


def sampled_negatives(model, cases, cfg) -> dict:
    """HR/NDCG@k of each test target among cfg.sampled_negatives random unseen items (same draws per case)."""
    import torch

    sums = {}
    for start in range(0, len(cases), cfg.eval_batch):
        histories, targets = cases.histories[start:start + cfg.eval_batch], cases.targets[start:start + cfg.eval_batch]
        with torch.no_grad():
            scores = model.scores(histories, cases.user_ids[start:start + cfg.eval_batch]).float().numpy()
        part = sampled_negative_metrics(scores, histories, targets, cfg.sampled_negatives, cfg.ks, cfg.seed, start)
        sums = {k: sums.get(k, 0.0) + v for k, v in part.items()}
    return {k: v / max(len(cases), 1) for k, v in sums.items()}


def choose_temperature(model, valid, strategy: str, cfg) -> tuple[float, dict]:
    """The temperature of cfg.temperatures with the best validation NDCG@10 (the first one when only one)."""
    if strategy not in SAMPLED or len(cfg.temperatures) == 1:
        return cfg.temperatures[0], {}
    tried = {t: ranking_metrics(rank_cases(model, valid, 10, strategy, cfg, t)[0], valid.targets, [10])["NDCG@10"]
             for t in cfg.temperatures}
    return max(tried, key=tried.get), tried


def output_dir(cfg) -> Path:
    b = cfg.baseline
    if b.output_dir:
        return Path(b.output_dir)
    return Path("outputs/baselines") / f"{Path(b.dataset).name}-{b.protocol}" / b.name


def is_baseline_folder(folder: Path) -> bool:
    """A folder `recgpt baseline` wrote: its report (manifest stage baseline) and/or the resume folder of a killed
    fit, with nothing in `resume/` that the fit's checkpoints did not write."""
    resume = folder / "resume"
    if resume.exists() and not written_here(resume):
        return False
    return manifest_kind(folder) == "baseline" or {p.name for p in folder.iterdir()} == {"resume"}


def run_baseline(cfg) -> Path:
    """Fit, rank and report; the output folder is held (refused unless a baseline's, locked) from the first
    check to the report, which is built beside it and swapped in."""
    with ExitStack() as held:
        return baseline_held(cfg, held)


def baseline_held(cfg, held: ExitStack) -> Path:
    import torch
    from recgpt.predict.run import resolve_dataset

    b = cfg.baseline
    torch.set_num_threads(b.threads)
    out, source = output_dir(cfg), [resolve_dataset(b.dataset, cfg.data)]
    held.enter_context(guarded_output(out, "baseline report", "baseline.output_dir", is_baseline_folder, source))
    split = load_split(b, cfg.data)
    print0(f"baseline {b.name}: {split.dataset} / {b.protocol}: {split.counts}")
    start = time.time()
    model = get_model(b.name)(b, split.n_items)
    model.resume_dir = out / "resume"  # epoch checkpoints of the torch models: a rerun continues a killed fit
    model.embed_cfg = cfg.embed  # item text embeddings (content_knn), through the embedding cache
    model.knn = cfg.predict.knn  # the user's last items, weighted as content kNN weights them
    model.fit(split)
    train_seconds = time.time() - start
    test, valid = subset(split.test, b.max_test_users, b.seed), subset(split.valid, b.max_valid_users, b.seed)
    horizon = b.horizon if b.protocol == "horizon" else 1
    k, ks, notes = max(b.ks), sorted(set(b.ks)), []
    methods, by_position, temperatures, seconds, first = {}, {}, {}, {}, None
    for strategy in b.strategies:
        if strategy != "exact" and not model.generative:
            notes.append(f"{b.name} has no next-item distribution: strategy {strategy} skipped")
            continue
        temperature, tried = choose_temperature(model, valid, strategy, b)
        t0 = time.time()
        recs, scores = rank_cases(model, test, k, strategy, b, temperature)
        method = b.name if strategy == "exact" else f"{b.name}-{strategy}"
        seconds[method] = round(time.time() - t0, 2)
        methods[method], by_position[method] = evaluate(recs, test.targets, split.n_items, ks, horizon)
        if tried:
            temperatures[method] = {"chosen": temperature, "valid_ndcg@10": tried}
        first = first or (recs, scores)
    variants = model.variants() if hasattr(model, "variants") else {}  # e.g. MFGAN's pretrained generator
    for method, variant in variants.items():
        recs, _ = rank_cases(variant, test, k, "exact", b)
        methods[method], by_position[method] = evaluate(recs, test.targets, split.n_items, ks, horizon)
    sampled = {}
    if b.sampled_negatives and horizon == 1:
        sampled = {"negatives": b.sampled_negatives, "methods": {
            name: sampled_negatives(m, test, b) for name, m in {b.name: model, **variants}.items()}}
    ranking = floors.item_popularity(split.train)
    pop = floors.popularity(test.histories, k, b.allow_history, ranking)
    methods["popularity"], by_position["popularity"] = evaluate(pop, test.targets, split.n_items, ks, horizon)
    result = {
        "dataset": split.dataset, "protocol": b.protocol, "horizon": horizon, "strategy": ",".join(b.strategies),
        "scoring": "exact", "allow_history": b.allow_history, "ks": ks,
        "counts": {**split.counts, "evaluated": len(test)}, "methods": methods,
        "by_position": by_position if horizon > 1 else None, "temperatures": temperatures,
        "fit": getattr(model, "fit_log", {}), "sampled_negatives": sampled,
        "seconds": {"train": round(train_seconds, 2), "rank": seconds, "total": round(time.time() - start, 2)},
        "notes": notes, "config": config_to_dict(b),
    }
    recs, scores = first or ([[] for _ in test.user_ids], [[] for _ in test.user_ids])
    with staged_folder(out, "baseline report", "baseline.output_dir", is_baseline_folder, inputs=source) as tmp:
        model.save(tmp / "model")
        write_report(tmp, result, recommendations_frame(test.user_ids, recs, scores, split.item_ids))
        write_manifest(tmp, {"stage": "baseline", "name": b.name, "counts": result["counts"],
                             "config": config_to_dict(cfg)})
    remove_resume_folder(model.resume_dir)  # carried over with the rest of the old folder; removed when ours alone
    summary = ", ".join(f"{m} {v['NDCG@10']:.4f}" for m, v in methods.items() if "NDCG@10" in v)
    print0(f"baseline {b.name}: NDCG@10 {summary}; trained in {train_seconds:.1f}s; report in {out}")
    return out
