"""Paired bootstrap of bench/in_domain.py's LOO rows: recgpt_ft against SASRec+ and against recgpt_scratch, and
recgpt_scratch against SASRec+, NDCG@10 per test user with a 95% interval over users resampled in pairs.

The recgpt exports are re-ranked with the hybrid weights stored in their config.json (fitted on validation
users by bench/in_domain.py), and by their dense head alone (the `[dense]` rows: what the fit may leave out);
SASRec+'s lists are read from its report. The figures equal the table's.

    python bench/in_domain_intervals.py --out outputs/bench/in_domain --datasets ml-100k amazon_scientific
    python bench/in_domain_intervals.py --out OUT --against OUT2 --datasets yelp   # OUT's rows / OUT2's, paired
    python bench/in_domain_intervals.py --out OUT --draws OUT1 OUT2 --datasets yelp  # OUTn: in_domain.py --seeds n
    python bench/in_domain_intervals.py --out OUT --fit-bound --datasets yelp  # the weight fit's upper bound
    python bench/in_domain_intervals.py --out OUT --self-weights --datasets yelp  # per-user weights

With --draws, each pair is given per draw (OUT, then each OUTn: the same rows trained on another seed's users,
initialisation and order) and for their mean: each user's NDCG@10 averaged over the draws, the interval over
users (it leaves out the spread between draws, which the per-draw rows show).

With --fit-bound, each recgpt row is also ranked with the grid point of hybrid weights that is best on the test
users themselves (`<row>[best on test]`, the grid cached as <row>/fit_bound.json), and with the best such point
without the model (`<row>[knn+pop best on test]`): what no weight fit can beat, so a diagnostic of whether the
fit or the model holds a ratio back, never a figure of the model.

With --self-weights, each recgpt row is also ranked with per-user weights (recgpt.predict.self_weights): the
point of the validation fit's grid (cached as <row>/valid_grid.json) that ranks each test user's own last history
item best, the validation fit as the prior (`<row>[self]`) or, as `recgpt predict` scores when it has the
domain's log, the log's prior (`<row>[self log]`: the split's training sequences, never a validation or test
target).
"""
import argparse
import json
import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])  # the repo root, not bench/

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from recgpt.baselines.data import load_split  # noqa: E402
from recgpt.baselines.exported import split_rows  # noqa: E402
from recgpt.baselines.exported_hybrid import model_components, rank_with, split_recommender  # noqa: E402
from recgpt.config import load_config  # noqa: E402
from recgpt.data import load_prepared  # noqa: E402
from recgpt.predict.run import resolve_dataset  # noqa: E402
from recgpt.predict.hybrid import best_model_free, grid_ndcg  # noqa: E402
from recgpt.predict.protocols import TestCases  # noqa: E402
from recgpt.predict.self_weights import (LOG_STRENGTH, STRENGTH, log_prior, log_rows,  # noqa: E402
                                         rank_self_weighted, self_weights)
from recgpt.predict.metrics import bootstrap_ratio, per_user  # noqa: E402

PAIRS = (("recgpt_ft", "sasrec"), ("recgpt_ft", "recgpt_scratch"), ("recgpt_scratch", "sasrec"),
         ("recgpt_ft[dense]", "recgpt_scratch[dense]"))
BOUND, PRIORS_BOUND = "[best on test]", "[knn+pop best on test]"
SELF, SELF_LOG = "[self]", "[self log]"
SELF_PAIRS = tuple(pair for tag in (SELF, SELF_LOG) for pair in (
    (f"recgpt_ft{tag}", f"recgpt_scratch{tag}"), (f"recgpt_ft{tag}", "recgpt_ft"),
    (f"recgpt_scratch{tag}", "recgpt_scratch")))
BOUND_PAIRS = ((f"recgpt_ft{BOUND}", f"recgpt_scratch{BOUND}"), (f"recgpt_ft{BOUND}", f"recgpt_ft{PRIORS_BOUND}"),
               (f"recgpt_scratch{BOUND}", f"recgpt_scratch{PRIORS_BOUND}"), ("sasrec", f"recgpt_scratch{PRIORS_BOUND}"))


def best_on_test(cache: Path, model_dir: Path, rec, test) -> tuple:
    """(weights, knn + pop weights): the weight grid points with the highest NDCG@10 on the test cases of the
    export at `model_dir` (`rec`), of all and of those without the model's components (ties: the first); the
    grid is cached in the json file `cache` for these test users and this model (its weights file's size and
    time)."""
    found = json.loads(cache.read_text()) if cache.is_file() else {}
    stat = (Path(model_dir) / "model.safetensors").stat()
    model = [stat.st_size, stat.st_mtime_ns]
    if found.get("test_users") != len(test) or found.get("model") != model:
        _, table = grid_ndcg(rec, test, model_components(rec.model.config))
        found = {"test_users": len(test), "model": model, "table": table}
        cache.write_text(json.dumps(found))
    grid, values = [w for w, _ in found["table"]], [v for _, v in found["table"]]
    return grid[max(range(len(grid)), key=lambda i: (values[i], -i))], grid[best_model_free(grid, values)]


def valid_grid(cache: Path, model_dir: Path, rec, split, cfg) -> tuple:
    """(grid, NDCG@10 per point) of the export's weight fit on the split's validation users, as bench/in_domain.py
    fitted it (exported_hybrid.fit_and_store: their first target), cached in `cache` for this model."""
    found = json.loads(cache.read_text()) if cache.is_file() else {}
    stat = (Path(model_dir) / "model.safetensors").stat()
    if found.get("model") != [stat.st_size, stat.st_mtime_ns]:
        valid = split_rows(split, cfg.baseline, rec.catalog, "fit")
        first = TestCases(valid.protocol, valid.user_ids, valid.histories, [t[:1] for t in valid.targets], valid.counts)
        _, table = grid_ndcg(rec, first, model_components(rec.model.config))
        found = {"model": [stat.st_size, stat.st_mtime_ns], "valid_users": len(first), "table": table}
        cache.write_text(json.dumps(found))
    return [w for w, _ in found["table"]], [v for _, v in found["table"]]


def per_user_ndcg(root: Path, dataset: str, embed_cache: str, bound: bool = False, own: bool = False) -> dict:
    """{row: Float[U]} NDCG@10 of every LOO test user, in the split's order (sasrec only where it was run); the
    recgpt rows also by their dense head alone (`<row>[dense]`) and, with `bound`, by the weights best on the
    test users (`<row>[best on test]`)."""
    cfg = load_config(None, [f"baseline.dataset={dataset}", f"embed.cache_dir={embed_cache}"])
    split = load_split(cfg.baseline, cfg.data)
    prepared = load_prepared(resolve_dataset(dataset, cfg.data))
    out, catalog_ids, test = {}, None, None
    for row in ("recgpt_ft", "recgpt_scratch"):  # the catalog, popularity and test users of in_domain.py's table
        if not (root / row / "ckpt/run/best").is_dir():  # not run (--recgpt without it)
            continue
        rec = split_recommender(root / row / "ckpt/run/best", prepared, split, cfg.embed)
        catalog = rec.catalog
        if catalog_ids is not None and list(catalog.item_ids) != catalog_ids:
            raise ValueError(f"{root}: {row}'s catalog orders the items differently from recgpt_ft's")
        catalog_ids = list(catalog.item_ids)
        if test is None:  # one catalog order (checked above), so one set of test rows
            test = split_rows(split, cfg.baseline, catalog, "test")
        weights = {row: dict(rec.model.config.score_weights), f"{row}[dense]": {"dense": 1.0}}
        if bound:
            weights[f"{row}{BOUND}"], weights[f"{row}{PRIORS_BOUND}"] = best_on_test(
                root / row / "fit_bound.json", root / row / "ckpt/run/best", rec, test)
            print(f"{root}: {row} fitted {weights[row]}, best on test {weights[row + BOUND]}", flush=True)
        for name, lists in rank_with(rec, test.histories, weights, 10).items():
            out[name] = per_user(lists, test.targets, 10)["NDCG"]
        if own:
            grid, prior = valid_grid(root / row / "valid_grid.json", root / row / "ckpt/run/best", rec, split, cfg)
            log = log_prior(rec, log_rows([[split.item_ids[i] for i in s] for s in split.train], catalog), grid)
            for tag, curve, strength in ((SELF, prior, STRENGTH), (SELF_LOG, log, LOG_STRENGTH)):
                points = self_weights(rec, test.histories, grid, curve, strength)
                lists, _ = rank_self_weighted(rec, test.histories, grid, points, 10)
                out[f"{row}{tag}"] = per_user(lists, test.targets, 10)["NDCG"]
    if test is None or not (root / "sasrec/recommendations.parquet").is_file():  # not run (--models without sasrec)
        return out
    row_of = {str(item): r for r, item in enumerate(catalog_ids)}
    sasrec = pd.read_parquet(root / "sasrec/recommendations.parquet").sort_values(["user_id", "rank"])
    lists = sasrec.groupby(sasrec["user_id"].astype(str))["item_id"].agg(list)
    rows = [[row_of[str(i)] for i in lists.get(str(u), [])] for u in test.user_ids]
    out["sasrec"] = per_user(rows, test.targets, 10)["NDCG"]
    return out


def with_draws(first: dict, others: list, names: list) -> dict:
    """{'<row> (<draw>)': Float[U]} for every draw, and '<row> (mean)': each user's NDCG@10 averaged over the
    draws that have the row (all of them, or the row is left out of the mean)."""
    draws = [first, *others]
    out = {f"{row} ({name})": v for name, d in zip(names, draws) for row, v in d.items()}
    for row in first:
        if all(row in d for d in draws):
            out[f"{row} (mean)"] = np.mean([d[row] for d in draws], axis=0)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("outputs/bench/in_domain"), help="bench/in_domain.py --out")
    parser.add_argument("--datasets", nargs="+", default=["ml-100k", "amazon_scientific"])
    parser.add_argument("--embed-cache", default="outputs/embed_cache")
    parser.add_argument("--against", type=Path, help="another --out (other foundation or architecture): each recgpt "
                                                         "row here against the same row there, same test users")
    parser.add_argument("--draws", type=Path, nargs="+", default=[],
                        help="--out folders of the same runs on other seeds: each pair per draw and averaged")
    parser.add_argument("--fit-bound", action="store_true",
                        help="also each recgpt row with the hybrid weights best on the test users (a diagnostic)")
    parser.add_argument("--self-weights", action="store_true",
                        help="also each recgpt row with per-user weights chosen on each user's own history")
    args = parser.parse_args()
    if args.against and args.draws:
        parser.error("--against and --draws: one at a time")
    torch.set_num_threads(1)
    lines = ["| dataset | pair | NDCG@10 | ratio [95% paired CI] | users |", "|---|---|---|---|---|"]
    print("\n".join(lines))
    for dataset in args.datasets:
        ndcg = per_user_ndcg(args.out / f"{dataset}-loo", dataset, args.embed_cache, args.fit_bound, args.self_weights)
        pairs = PAIRS + BOUND_PAIRS * args.fit_bound + SELF_PAIRS * args.self_weights
        if args.draws:
            names = [args.out.name, *(d.name for d in args.draws)]
            others = [per_user_ndcg(d / f"{dataset}-loo", dataset, args.embed_cache, args.fit_bound, args.self_weights)
                      for d in args.draws]
            ndcg = with_draws(ndcg, others, names)
            pairs = [(f"{a} ({draw})", f"{b} ({draw})") for draw in ["mean", *names] for a, b in pairs
                     if f"{a} ({draw})" in ndcg and f"{b} ({draw})" in ndcg]  # sasrec: the first draw only
        if args.against:  # the other output's rows, named by its folder
            other = per_user_ndcg(args.against / f"{dataset}-loo", dataset, args.embed_cache, args.fit_bound,
                                  args.self_weights)
            ndcg.update({f"{row} ({args.against.name})": v for row, v in other.items()})
            pairs = [(row, f"{row} ({args.against.name})") for row in other if row in ndcg and row != "sasrec"]
        for a, b in pairs:
            if a not in ndcg:
                print(f"{dataset}: {a} was not run, {a} / {b} left out", flush=True)
                continue
            if b not in ndcg:
                print(f"{dataset}: {b} was not run, {a} / {b} left out", flush=True)
                continue
            ratio, lo, hi = bootstrap_ratio(ndcg[a], ndcg[b])
            lines.append(f"| {dataset} | {a} / {b} | {np.mean(ndcg[a]):.4f} / {np.mean(ndcg[b]):.4f} | "
                         f"{ratio:.3f} [{lo:.3f}, {hi:.3f}] | {len(ndcg[a])} |")
            print(lines[-1], flush=True)
    from bench.report import write_table

    against = f"-vs-{args.against.name}" if args.against else f"-{len(args.draws) + 1}-draws" if args.draws else ""
    against += "-fit-bound" * args.fit_bound + "-self-weights" * args.self_weights
    write_table(f"{args.out.name}/intervals-{'+'.join(args.datasets)}{against}", "\n".join(lines))  # beside its tables
    return 0


if __name__ == "__main__":
    sys.exit(main())
