"""The product's re-ranker on the four held-out targets, through recgpt's own commands.

Per largest pretraining mix of the scaling bench (recgpt.data.mixes: never a target it serves, its fit domains or a
near-duplicate), `recgpt rerank` trains one re-ranker on the mix's domains but one and chooses its step on that one
(a held-out source: amazon14_health for the Amazon targets, foodcom for steam and yelp, fixed before any result);
then `recgpt predict predict.reranker=<it>` scores each target the mix serves with that target's export of the
scaling bench (the priors row: its fitted weights, per user), LOO and cold, 1,000 seeded users, history excluded.
The table: NDCG@10 of the re-ranker (model), the priors, the re-ranker's base rule without its learned part
(priors+cooc: the per-user content kNN + popularity rule + 0.5 z(co-occurrence)), content kNN and popularity, and
model / row with the report's paired 95% bootstrap interval. A rerun resumes (a trained re-ranker, a written report).

    python bench/rerank.py          # outputs/rerank; the table docs/benchmarks/rerank.md
"""
import argparse
import json
import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])  # the repo, not bench/

MIXES = {"mix12": ("mix12-amazon_scientific+amazon14_beauty", "amazon14_health"),
         "mix11": ("mix11-steam+yelp", "foodcom")}
ROWS = ("model", "priors", "priors+cooc", "content_knn", "popularity")


def run(argv: list) -> None:
    from recgpt.cli import main

    if main(argv) != 0:
        raise SystemExit(f"failed: recgpt {' '.join(argv)}")


def report(results: dict, command: str) -> str:
    lines = ["<!-- written by bench/rerank.py: rerun it to change this file -->",
             "# The re-ranker of `recgpt predict` (predict.reranker) on held-out targets", "", f"command: `{command}`",
             "", " ".join(__doc__.split("\n\n")[1].split()), "",
             "| target | protocol | users | re-ranker (step, fit domain) | " + " | ".join(ROWS[1:]) +
             " | model / priors | model / priors+cooc | model / content kNN |", "|---" * 10 + "|"]
    for (target, protocol), (r, config) in results.items():
        ndcg = {name: r["methods"][name]["NDCG@10"] for name in ROWS if name in r["methods"]}
        cells = [f"{ndcg[n]:.4f}" if n in ndcg else "" for n in ROWS]
        cells[0] += f" ({config['step']}, {', '.join(config['fit_domains'])})"
        ratios = [r["model_vs"].get(n) for n in ("priors", "priors+cooc", "content_knn")]
        lines.append(f"| {target} | {protocol} | {r['counts']['evaluated']} | " + " | ".join(cells) + " | " + " | ".join(
            f"{v['ratio']:.3f} [{v['lo']:.3f}, {v['hi']:.3f}]" if v else "" for v in ratios) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scaling", default="outputs/scaling", help="the scaling bench's folder (prepared/, mixes/)")
    parser.add_argument("--run", default="s3000st", help="the scaling run whose target exports give the priors row")
    parser.add_argument("--embed-cache", default="outputs/embed_cache")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--mixes", nargs="+", default=list(MIXES))
    parser.add_argument("--out", default="outputs/rerank")
    parser.add_argument("--report", default="docs/benchmarks/rerank.md")
    args = parser.parse_args(argv)
    scaling, out, cache = Path(args.scaling), Path(args.out), f"embed.cache_dir={args.embed_cache}"
    results = {}
    for short in args.mixes:
        mix, fit = MIXES[short]
        plan = json.loads((scaling / "mixes" / mix / "mix.json").read_text())
        ranker = out / short
        if not (ranker / "manifest.json").is_file():
            sources = ",".join(str(scaling / "prepared" / d) for d in plan["datasets"] if d != fit)
            run(["rerank", f"rerank.sources=[{sources}]", f"rerank.fit_domains=[{scaling / 'prepared' / fit}]",
                 f"rerank.steps={args.steps}", f"rerank.out={ranker}", cache])
        config = json.loads((ranker / "config.json").read_text())
        for target in plan["serves"]:
            for protocol in ("loo", "cold"):
                report_dir = out / "predict" / f"{target}-{protocol}"
                if not (report_dir / "metrics.json").is_file():
                    run(["predict", "--dataset", str(scaling / "prepared" / target), f"predict.protocol={protocol}",
                         f"predict.model_dir={scaling / 'mixes' / mix / 'targets' / target / 'ckpt' / args.run}",
                         f"predict.reranker={ranker}", f"predict.max_users={args.users}",
                         f"predict.output_dir={report_dir}", cache])
                results[target, protocol] = json.loads((report_dir / "metrics.json").read_text()), config
    command = "python bench/rerank.py" + "".join(" " + a for a in (sys.argv[1:] if argv is None else argv))
    text = report(results, command)
    Path(args.report).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
