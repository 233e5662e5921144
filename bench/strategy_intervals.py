"""Multi-sequence strategies against greedy on the same test users: next-10 NDCG@10 of rra / ra over greedy,
with a paired 95% bootstrap interval over users, for baselines trained by bench/in_domain.py's horizon protocol.

The saved model of each report is reloaded and re-ranked with the temperature its report chose on the
validation half (never on the test half), so the figures equal the report's and the users are paired.

    python bench/strategy_intervals.py --out outputs/bench/in_domain --datasets ml-100k amazon_scientific \
        --models markov sasrec gpt2
"""
import argparse
import json
import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])  # the repo root, not bench/

import torch  # noqa: E402

from recgpt.baselines.base import load_baseline  # noqa: E402
from recgpt.baselines.data import load_split, subset  # noqa: E402
from recgpt.baselines.run import SAMPLED, rank_cases  # noqa: E402
from recgpt.config import load_config  # noqa: E402
from recgpt.predict.metrics import bootstrap_ratio, per_user  # noqa: E402


def strategy_rows(folder: Path, dataset: str, name: str, strategies=("greedy", "rra", "ra")) -> list:
    """Markdown rows: each strategy's NDCG@10 and, for those after the first, its ratio to the first."""
    report = json.loads((folder / "metrics.json").read_text())
    config = report["config"]  # the report's baseline config: the same split, users and sampling draws
    kept = ("seed", "horizon", "cold_fraction", "n_samples", "max_test_users", "allow_history", "eval_batch")
    cfg = load_config(None, [f"baseline.name={name}", f"baseline.dataset={dataset}", "baseline.protocol=horizon",
                             "baseline.threads=1", *(f"baseline.{k}={config[k]}" for k in kept
                                                    if config.get(k) is not None)])
    b = cfg.baseline
    model, split = load_baseline(folder / "model"), load_split(b, cfg.data)
    test = subset(split.test, b.max_test_users, b.seed)
    ndcg, rows = {}, []
    for strategy in strategies:
        temperature = report["temperatures"].get(f"{name}-{strategy}", {}).get("chosen", 1.0)
        recs, _ = rank_cases(model, test, 10, strategy, b, temperature)
        shown = temperature if strategy in SAMPLED else "-"
        ndcg[strategy] = per_user(recs, test.targets, 10)["NDCG"]
        ratio = "1"
        if strategy != strategies[0]:
            r, lo, hi = bootstrap_ratio(ndcg[strategy], ndcg[strategies[0]])
            ratio = f"{r:.3f} [{lo:.3f}, {hi:.3f}]"
        rows.append(f"| {dataset} | {name} | {strategy} | {shown} | {ndcg[strategy].mean():.4f} | {ratio} | {len(test)} |")
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("outputs/bench/in_domain"), help="bench/in_domain.py --out")
    parser.add_argument("--datasets", nargs="+", default=["ml-100k", "amazon_scientific"])
    parser.add_argument("--models", nargs="+", default=["markov", "sasrec", "gpt2"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    lines = ["| dataset | model | strategy | temperature | next-10 NDCG@10 | / greedy [95% paired CI] | users |",
             "|---|---|---|---|---|---|---|"]
    print("\n".join(lines))
    for dataset in args.datasets:
        for name in args.models:
            folder = args.out / f"{dataset}-horizon" / name
            if not (folder / "model").is_dir():
                lines.append(f"| {dataset} | {name} | no saved model under {folder} | | | | |")
                print(lines[-1])
                continue
            for row in strategy_rows(folder, dataset, name):
                lines.append(row)
                print(row, flush=True)
    from bench.report import write_table

    write_table(f"strategy_intervals/{args.out.name}", "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
