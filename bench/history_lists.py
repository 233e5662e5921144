"""History items in `recgpt predict`'s lists: excluded, scored like any item, or placed as often as the catalog's log
repeats one (predict.allow_history=false / true / auto, recgpt/predict/repeats.py), on the held-out targets of
bench/scaling.py with its exports of the largest mix. Model NDCG@10 per setting and auto against the other two,
95% paired intervals over the users of the reports' recommendations; the priors row under auto and the history items
auto put in each top 10; with --against-fitted, auto with the per-user weights (recgpt predict's default) against
auto with the fitted ones. Each report is kept under --out and reused (the bench resumes).

    python bench/history_lists.py embed.cache_dir=outputs/embed_cache
    # the horizon protocol (the last H items a target set) on the two targets whose logs repeat an item (steam's
    # users are too short for H = 10):
    python bench/history_lists.py --protocols horizon --targets yelp --table history_lists_horizon \
        embed.cache_dir=outputs/embed_cache
    python bench/history_lists.py --protocols horizon --horizon 3 --targets yelp,steam \
        --table history_lists_horizon3 embed.cache_dir=outputs/embed_cache
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path[0] = str(REPO)  # the repo, not bench/ (whose tokenizers.py would shadow the package)
from bench.report import write_table  # noqa: E402

MODES = ("false", "true", "auto")
TARGETS = ("yelp", "steam", "amazon_scientific", "amazon14_beauty")


def export(root: Path, target: str, name: str) -> Path:
    """The target's export of the largest mix that leaves it out (mixes are numbered by size)."""
    found = sorted(root.glob(f"mixes/*/targets/{target}/ckpt/{name}/best"))
    if not found:
        raise SystemExit(f"{root}/mixes/*/targets/{target}/ckpt/{name}/best: no export (run bench/scaling.py first)")
    return found[-1]


def report(out: Path, args, target: str, protocol: str, mode: str, overrides) -> Path:
    from recgpt.cli import main

    folder = out / f"{target}-{label(protocol, args.horizon, '')}-{mode}"
    if not (folder / "metrics.json").is_file():
        how = {"cold": ["--cold"], "horizon": ["--horizon", str(args.horizon)]}.get(protocol, [])
        allow, _, weights = mode.partition("-")  # auto-fitted: allow_history=auto with the fitted weights
        argv = ["predict", "--dataset", str(args.root / "prepared" / target), *how,
                f"predict.model_dir={export(args.root, target, args.name)}", f"predict.max_users={args.users}",
                f"predict.allow_history={allow}", f"predict.output_dir={folder}", *overrides,
                *([f"predict.weights={weights}"] if weights else [])]
        if main(argv) != 0:
            raise SystemExit(f"recgpt {' '.join(argv)} failed")
    return folder


def label(protocol: str, horizon: int, space: str = " ") -> str:
    return f"{protocol}{space}{horizon}" if protocol == "horizon" else protocol


def per_user(folder: Path, cases, rows: dict, k: int = 10) -> np.ndarray:
    """NDCG@k of each case from the report's recommendations.parquet (`rows`: item id -> catalog row)."""
    from recgpt.predict.metrics import per_user as metrics_per_user

    frame = pd.read_parquet(folder / "recommendations.parquet")
    lists = frame.groupby("user_id")["item_id"].agg(list).to_dict()
    recs = [[rows[i] for i in lists.get(str(user), [])] for user in cases.user_ids]
    return metrics_per_user(recs, cases.targets, k)["NDCG"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=REPO / "outputs" / "scaling", help="bench/scaling.py's --out")
    ap.add_argument("--name", default="s3000st", help="the scaling run whose exports predict")
    ap.add_argument("--targets", default=",".join(TARGETS))
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--protocols", default="loo,cold", help="of loo, cold, horizon")
    ap.add_argument("--horizon", type=int, default=10, help="the horizon protocol's target set size")
    ap.add_argument("--against-fitted", action="store_true",
                    help="also auto with predict.weights=fitted, and auto (the default weights) against it")
    ap.add_argument("--out", type=Path, default=REPO / "outputs" / "history_lists")
    ap.add_argument("--table", default="history_lists", help="docs/benchmarks/<table>.md")
    args, overrides = ap.parse_known_args(argv)
    unknown = sorted(set(args.protocols.split(",")) - {"loo", "cold", "horizon"})
    if unknown or args.horizon < 2:
        ap.error(f"--protocols: unknown {', '.join(unknown)} (of loo, cold, horizon)" if unknown else
                 f"--horizon: a target set of 2 items or more, got {args.horizon}")
    command = list(sys.argv) if argv is None else ["bench/history_lists.py", *argv]  # recgpt's CLI rewrites sys.argv
    from recgpt.data import load_prepared
    from recgpt.predict.protocols import build_test_cases
    from recgpt.predict.metrics import bootstrap_ratio
    from recgpt.predict.transfer import ItemRows

    modes = MODES + (("auto-fitted",) if args.against_fitted else ())
    extra = " auto, fitted weights | auto / auto fitted |" if args.against_fitted else ""
    lines = ["| target | protocol | false | true | auto | auto / false | auto / true | priors, auto | "
             "history items in the top 10 |" + extra, "|" + "---|" * (9 + 2 * args.against_fitted)]
    for target in args.targets.split(","):
        prepared = load_prepared(args.root / "prepared" / target)
        item_ids = prepared.items["item_id"].astype(str).tolist()
        for protocol in args.protocols.split(","):
            folders = {m: report(args.out, args, target, protocol, m, overrides) for m in modes}
            results = {m: json.loads((folders[m] / "metrics.json").read_text()) for m in modes}
            horizon = args.horizon if protocol == "horizon" else 1
            cases = build_test_cases(prepared.interactions, ItemRows(item_ids), protocol, horizon, 0, args.users)
            rows = {item: row for row, item in enumerate(item_ids)}
            ndcg = {m: per_user(folders[m], cases, rows) for m in modes}
            for m in modes:  # the same users and targets as the report's own figure
                assert abs(ndcg[m].mean() - results[m]["methods"]["model"]["NDCG@10"]) < 1e-9, (target, protocol, m)
            cells = [f"{ndcg[m].mean():.4f}" for m in MODES]
            for other in ("false", "true"):
                r = bootstrap_ratio(ndcg["auto"], ndcg[other])
                cells.append(f"{r[0]:.3f} [{r[1]:.3f}, {r[2]:.3f}]")
            auto = results["auto"]
            cells += [f"{auto['methods']['priors']['NDCG@10']:.4f}" if "priors" in auto["methods"] else "",
                      f"{(auto['repeats'] or {}).get('history_items_per_top10', 0):.2f}"]
            if args.against_fitted:
                r = bootstrap_ratio(ndcg["auto"], ndcg["auto-fitted"])
                cells += [f"{ndcg['auto-fitted'].mean():.4f}", f"{r[0]:.3f} [{r[1]:.3f}, {r[2]:.3f}]"]
            lines.append(f"| {target} | {label(protocol, args.horizon)} | " + " | ".join(cells) + " |")
            print(lines[-1], flush=True)
    table = "\n".join(lines) + "\n"
    print(table)
    write_table(args.table, table, command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
