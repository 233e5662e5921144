"""The product's re-ranker on the four held-out targets, through recgpt's own commands.

Per largest pretraining mix of the scaling bench (recgpt.data.mixes: never a target it serves, its fit domains or a
near-duplicate), `recgpt rerank` trains one re-ranker on the mix's domains but one and chooses its step on that one
(a held-out source: amazon14_health for the Amazon targets, foodcom for steam and yelp, fixed before any result);
then `recgpt predict predict.reranker=<it>` scores each target the mix serves with that target's export of the
scaling bench, LOO and cold, 1,000 seeded users, history excluded, twice: the priors row (content kNN + popularity
weighted from the export's fit, no model) per user (predict.weights=self, what the report shows by default) and
fitted (the fit's best point for every user: the issue's bar). The table: NDCG@10 of the re-ranker (model), both
priors, the re-ranker's base rule without its learned part
(priors+cooc: the per-user content kNN + popularity rule + 0.5 z(co-occurrence)), content kNN and popularity, and
model / row with the report's paired 95% bootstrap interval. A rerun resumes (a trained re-ranker, a written report).

The curve (--curve-steps N): the same command on the scaling plan's smallest mix (mix01, 1 domain) and the largest,
each without the family's fit domain, N steps each (the largest: the table's re-ranker when N is --steps); every
re-ranker and the untrained base rule scored in-process on the same users (recgpt.predict.rerank.train.evaluate),
paired 95% intervals of largest / mix01; with --against DIR (another run's --out), each against that run's on the
same users. --curve-mixes mix01 mix03 ...: the plan's mixes between too, each paired with mix01; --curve-png PATH
draws NDCG@10 against the sources' interactions.

Fine-tuning (--finetune D ...): on each dataset D, `recgpt rerank rerank.sources=[D] rerank.valid_users=V` trains
the re-ranker on D's own log (each user's last transition before the LOO test, counted without it; V seeded users
held out choose the step) from its foundation (rerank.init_from: the largest mix's re-ranker of a target, for
ml-100k one trained here on every domain but it, its near-duplicates and amazon14_health) and from scratch (the
architecture's own start, the base rule), the same seed and steps; both, the foundation itself and the base rule
scored in-process on D's seeded LOO test users, paired 95% intervals of fine-tuned / scratch. --mixes with no name
leaves the mix table out (the foundations are still trained, the curve covers both mixes; the scaling bench's
exports are then not read). --rerank-set KEY=VALUE ...: config keys for every re-ranker the bench trains (a rerun
resumes only with the keys its --out was begun with).

The moonshot (--in-domain DIR: bench/in_domain.py's folder of SASRec+ trained to convergence on each target): the
re-ranker's LOO lists (its recgpt predict report) against SASRec+'s on the same users (those it lists for), NDCG@10,
paired 95% bootstrap interval; both exclude the history's own items.

    python bench/rerank.py                    # outputs/rerank; the table docs/benchmarks/rerank.md
    python bench/rerank.py --curve-steps 1000 # and the curve
    python bench/rerank.py --mixes --steps 1000 --curve-steps 1000 --curve-mixes mix01 mix03 mix06 mix09  # all of it
    python bench/rerank.py --finetune ml-100k amazon_scientific steam yelp  # and fine-tuned against scratch
    python bench/rerank.py --in-domain outputs/bench/moonshot               # and against SASRec+ in-domain
    python bench/rerank.py --seed 1 --out outputs/rerank_seed1              # another draw of the re-rankers
    python bench/rerank.py --mixes --steps 1000 --finetune steam --out outputs/small  # no mix table
"""
import argparse
import functools
import json
import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])  # the repo, not bench/

MIXES = {"mix12": ("mix12-amazon_scientific+amazon14_beauty", "amazon14_health"),
         "mix11": ("mix11-steam+yelp", "foodcom")}
FOUNDATIONS = {"amazon_scientific": "mix12", "amazon14_beauty": "mix12", "steam": "mix11", "yelp": "mix11"}
VALID_USERS = {"ml-100k": 200}  # held-out users choosing a fine-tuning's step (1,000 elsewhere)
ROWS = ("model", "priors", "priors+cooc", "content_knn", "popularity")


def run(argv: list) -> None:
    from recgpt.cli import main

    if main(argv) != 0:
        raise SystemExit(f"failed: recgpt {' '.join(argv)}")


def train(args, folder: Path, *keys: str) -> None:
    """`recgpt rerank` into `folder` with the bench's seed, embedding cache and --rerank-set keys, unless a resumed
    run trained it before."""
    if not (folder / "manifest.json").is_file():
        run(["rerank", *keys, f"rerank.seed={args.seed}", f"rerank.out={folder}",
             f"embed.cache_dir={args.embed_cache}", *args.rerank_set])


def same_keys(out: Path, keys: list) -> None:
    """A run resumes only with the --rerank-set keys its --out was begun with (out/rerank_set.json), else refused."""
    stamp = out / "rerank_set.json"
    if not stamp.is_file():
        out.mkdir(parents=True, exist_ok=True)
        stamp.write_text(json.dumps(keys))
    elif (begun := json.loads(stamp.read_text())) != keys:
        raise SystemExit(f"{out} was begun with --rerank-set {' '.join(begun) or '(none)'}, this run gives "
                         f"{' '.join(keys) or '(none)'}: give another --out")


def curve_scores(out: Path, short: str, name: str, target: str, protocol: str) -> Path:
    """Where a run's curve keeps a re-ranker's per-user NDCG@10 on a target (name: "base rule", "mix01", "mix12")."""
    return out / "curve" / "scores" / f"{short}-{name}-{target}-{protocol}.json"


def curve(args, scaling: Path, out: Path) -> dict:
    """{(target, protocol): {"base rule" | mix name: (sources, chosen step, per-user NDCG@10, user ids, the sources'
    interactions)}} of the curve's re-rankers."""
    import numpy as np

    from recgpt.config import EmbedConfig
    from recgpt.data.mixes import Plan, plan_mixes
    from recgpt.io import read_manifest
    from recgpt.predict.rerank import Reranker
    from recgpt.predict.rerank.train import Domain

    mixes, rows = {m.name: m for m in plan_mixes(Plan())}, {}
    domain = functools.cache(lambda target, protocol: Domain(scaling / "prepared" / target,
                                                             EmbedConfig(cache_dir=args.embed_cache), protocol))
    wrong = [m for m in args.curve_mixes if m not in mixes or m.startswith("mix1")]
    if wrong or "mix01" not in args.curve_mixes or len(set(args.curve_mixes)) < len(args.curve_mixes):
        raise SystemExit(f"--curve-mixes: give mix01 and smaller mixes of the plan ({', '.join(mixes)}), got "
                         f"{' '.join(args.curve_mixes)}")
    for short in args.mixes or list(MIXES):
        largest, fit = MIXES[short]
        for name in ("base rule", *args.curve_mixes, largest):
            sources = [d for d in mixes[name].datasets if d != fit] if name in mixes else []
            interactions = sum(read_manifest(scaling / "prepared" / d)["counts"]["interactions"] for d in sources)
            ranker = Reranker()
            if name == largest and args.curve_steps == args.steps:  # the same command as the table's re-ranker
                ranker = Reranker.load(mix_reranker(args, scaling, out, short))
            elif sources:
                folder = out / "curve" / f"{short}-{name.split('-')[0]}"
                train(args, folder, f"rerank.sources=[{','.join(str(scaling / 'prepared' / d) for d in sources)}]",
                      f"rerank.fit_domains=[{scaling / 'prepared' / fit}]", f"rerank.steps={args.curve_steps}")
                ranker = Reranker.load(folder)
            for target in mixes[largest].serves:
                for protocol in ("loo", "cold"):
                    scores = scored(curve_scores(out, short, name.split("-")[0], target, protocol), lambda: ranker,
                                    lambda: domain(target, protocol), args.users)
                    rows.setdefault((target, protocol), {})[name.split("-")[0]] = (
                        len(sources), scores["step"], np.asarray(scores["ndcg"]), scores["users"], interactions)
    return rows


def scored(cached: Path, ranker, domain, users: int) -> dict:
    """{"users", "ndcg", "step"}: the per-user NDCG@10 of the re-ranker `ranker()` on the seeded users of `domain()`
    (recgpt.predict.rerank.train.evaluate), kept in `cached` and read back from it (neither built then)."""
    from recgpt.predict.rerank.train import evaluate

    if not cached.is_file():
        ranker = ranker()
        users, ndcg = evaluate(ranker, domain(), users)
        cached.parent.mkdir(parents=True, exist_ok=True)
        cached.write_text(json.dumps({"users": list(map(str, users)), "ndcg": ndcg.tolist(),
                                      "step": ranker.meta.get("step")}))
    return json.loads(cached.read_text())


def plan_mix(short: str):
    """The scaling plan's mix (recgpt.data.mixes) of a MIXES entry."""
    from recgpt.data.mixes import Plan, plan_mixes

    return next(m for m in plan_mixes(Plan()) if m.name == MIXES[short][0])


def mix_reranker(args, scaling: Path, out: Path, short: str) -> Path:
    """The largest mix's re-ranker (`recgpt rerank` on its domains but its fit domain, the step chosen there)."""
    fit, ranker = MIXES[short][1], out / short
    sources = ",".join(str(scaling / "prepared" / d) for d in plan_mix(short).datasets if d != fit)
    train(args, ranker, f"rerank.sources=[{sources}]", f"rerank.fit_domains=[{scaling / 'prepared' / fit}]",
          f"rerank.steps={args.steps}")
    return ranker


def foundation(args, scaling: Path, out: Path, dataset: str) -> Path:
    """The re-ranker a dataset's fine-tuning starts from: the largest mix's for a target, else one trained on every
    domain of the scaling plan but the dataset, its near-duplicates and amazon14_health (its fit domain)."""
    from recgpt.data.mixes import Plan, pairs

    if dataset in FOUNDATIONS:
        return mix_reranker(args, scaling, out, FOUNDATIONS[dataset])
    folder, plan, fit = out / f"foundation-{dataset}", Plan(), "amazon14_health"
    left_out = {dataset, fit, *pairs(plan.near, dataset)}
    sources = ",".join(str(scaling / "prepared" / d) for d in plan.domains if d not in left_out)
    train(args, folder, f"rerank.sources=[{sources}]", f"rerank.fit_domains=[{scaling / 'prepared' / fit}]",
          f"rerank.steps={args.foundation_steps}")
    return folder


def finetune(args, scaling: Path, out: Path) -> list:
    """The fine-tuning table's lines: per dataset the base rule, the foundation zero-shot, scratch and fine-tuned
    re-rankers (NDCG@10 of the same seeded LOO test users) and fine-tuned / scratch, foundation."""
    import numpy as np

    from recgpt.config import EmbedConfig
    from recgpt.predict.metrics import bootstrap_ratio
    from recgpt.predict.rerank import Reranker
    from recgpt.predict.rerank.train import Domain

    tuned = out / "finetune"
    lines = ["", f"Fine-tuned against trained from scratch on the dataset's own log ({args.finetune_steps} steps each, "
             "the step chosen on held-out users of it): NDCG@10 (chosen step) of its seeded LOO test users, "
             "paired 95% bootstrap intervals.", "",
             "| dataset | users | base rule | foundation, zero-shot | scratch | fine-tuned | fine-tuned / scratch | "
             "fine-tuned / foundation |", "|---" * 8 + "|"]
    for dataset in args.finetune:
        start, prepared = foundation(args, scaling, out, dataset), scaling / "prepared" / dataset
        rankers = {"base rule": None, "foundation": start}
        for arm in ("scratch", "fine-tuned"):
            rankers[arm] = tuned / f"{dataset}-{arm}"
            init = [] if arm == "scratch" else [f"rerank.init_from={start}"]
            train(args, rankers[arm], f"rerank.sources=[{prepared}]",
                  f"rerank.valid_users={VALID_USERS.get(dataset, 1000)}", f"rerank.steps={args.finetune_steps}",
                  "rerank.every=100", *init)
        domain = functools.cache(lambda: Domain(prepared, EmbedConfig(cache_dir=args.embed_cache), "loo"))
        scores = {name: scored(tuned / "scores" / f"{dataset}-{name.replace(' ', '_')}.json",
                               lambda: Reranker() if folder is None else Reranker.load(folder), domain,
                               args.finetune_users) for name, folder in rankers.items()}
        ndcg = {name: np.asarray(s["ndcg"]) for name, s in scores.items()}
        cells = [f"{ndcg[n].mean():.4f}" + ("" if scores[n]["step"] is None else f" ({scores[n]['step']})")
                 for n in rankers]
        ratios = [bootstrap_ratio(ndcg["fine-tuned"], ndcg[n]) for n in ("scratch", "foundation")]
        lines.append(f"| {dataset} | {len(ndcg['scratch'])} | " + " | ".join(cells) + f" | {interval_cells(ratios)} |")
    return lines


def moonshot(args, scaling: Path, out: Path, targets) -> list:
    """The moonshot table's lines: per target, the re-ranker / SASRec+ trained on the target, LOO users of both."""
    import numpy as np

    from bench.zero_shot import in_domain_lists, user_lists
    from recgpt.predict.catalog import read_catalog_items
    from recgpt.predict.metrics import bootstrap_ratio, per_user
    from recgpt.predict.protocols import build_test_cases
    from recgpt.predict.transfer import ItemRows, read_interactions

    lines = ["", "The moonshot: the re-ranker zero-shot against SASRec+ trained to convergence on the target itself "
             "(early stopped on validation), NDCG@10 of the same LOO users, paired 95% bootstrap interval; where "
             "--finetune ran on the target, its fine-tuned re-ranker (in-domain too) on those users.", "",
             "| target | users | re-ranker, zero-shot | SASRec+, in-domain | re-ranker / SASRec+ | fine-tuned re-ranker "
             "/ SASRec+ |", "|---" * 6 + "|"]
    for target in targets:
        folder = scaling / "prepared" / target
        catalog = ItemRows(read_catalog_items(folder)["item_id"].astype(str).tolist())
        cases = build_test_cases(read_interactions(folder), catalog, "loo", 1, 0, args.users)
        mine = user_lists(out / "predict" / f"{target}-loo" / "recommendations.parquet")
        if set(mine) != set(map(str, cases.user_ids)):
            raise SystemExit(f"{target}: the predict report's users are not the seeded {args.users} LOO users")
        theirs = in_domain_lists(args.in_domain, target)["sasrec_in_domain"]
        users = [i for i, u in enumerate(cases.user_ids) if str(u) in theirs]
        ndcg = [per_user([catalog.rows(lists[str(cases.user_ids[i])][:10])[0] for i in users],
                         [cases.targets[i] for i in users], 10)["NDCG"] for lists in (mine, theirs)]
        ratios = [bootstrap_ratio(*ndcg)]
        tuned = out / "finetune" / "scores" / f"{target}-fine-tuned.json"
        if tuned.is_file():  # its seeded test users hold these (the same seeded order, more of them)
            scores = json.loads(tuned.read_text())
            by_user = dict(zip(scores["users"], scores["ndcg"]))
            ratios.append(bootstrap_ratio(np.array([by_user[str(cases.user_ids[i])] for i in users]), ndcg[1]))
        lines.append(f"| {target} | {len(users)} | {ndcg[0].mean():.4f} | {ndcg[1].mean():.4f} | "
                     + interval_cells(ratios) + " |" + ("" if tuned.is_file() else " |"))
    return lines


def curve_table(rows: dict) -> list:
    from recgpt.predict.metrics import bootstrap_ratio

    names = sorted(n for n in next(iter(rows.values())) if n != "base rule" and not n.startswith("mix1"))
    lines = ["", "The curve: NDCG@10 (sources, chosen step) of re-rankers trained on nested mixes; largest / mix01 and "
             "largest / base rule paired over users, 95% bootstrap interval.", "",
             "| target | protocol | base rule | " + " | ".join(names) + " | largest | largest / mix01 | largest / base "
             "rule |", "|---" * (len(names) + 6) + "|"]
    steps = []
    for (target, protocol), r in rows.items():
        largest = next(n for n in r if n.startswith("mix1"))
        cells = [f"{r[n][2].mean():.4f}" + ("" if n == "base rule" else f" ({r[n][0]}, {r[n][1]})")
                 for n in ["base rule", *names, largest]]
        ratios = [bootstrap_ratio(r[largest][2], r[n][2]) for n in ("mix01", "base rule")]
        lines.append(f"| {target} | {protocol} | " + " | ".join(cells) + " | " + interval_cells(ratios) + " |")
        steps.append(f"| {target} | {protocol} | " + interval_cells(
            [bootstrap_ratio(r[n][2], r["mix01"][2]) for n in [*names[1:], largest]]) + " |")
    if len(names) > 1:  # the mixes between: each against mix01, paired
        lines += ["", "Each mix / mix01, paired over the same users, 95% bootstrap interval.", "",
                  "| target | protocol | " + " | ".join(f"{n} / mix01" for n in [*names[1:], "largest"]) + " |",
                  "|---" * (len(names) + 2) + "|", *steps]
    return lines


def interval_cells(ratios: list) -> str:
    return " | ".join(f"{x:.3f} [{lo:.3f}, {hi:.3f}]" for x, lo, hi in ratios)


def plot_curve(rows: dict, path: Path) -> None:
    """NDCG@10 (95% bootstrap interval) against the sources' interactions, a panel per target and protocol; the
    untrained base rule as a horizontal line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from recgpt.predict.metrics import bootstrap_mean

    fig, axes = plt.subplots(2, len(rows) // 2, figsize=(2 * len(rows), 6.5), squeeze=False)
    for i, ((target, protocol), r) in enumerate(rows.items()):
        ax = axes[i % 2][i // 2]
        points = sorted((v[4], *bootstrap_mean(v[2])) for n, v in r.items() if n != "base rule")
        x, y, lo, hi = (np.array(v) for v in zip(*points))
        ax.errorbar(x, y, yerr=[y - lo, hi - y], marker="o", capsize=3, label="re-ranker")
        ax.axhline(float(r["base rule"][2].mean()), linestyle=":", color="gray", label="base rule (untrained)")
        ax.set(xscale="log", title=f"{target} ({protocol})", xlabel="source interactions", ylabel="NDCG@10")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def against_table(rows: dict, other: Path) -> list:
    """The curve's re-rankers against another run's (--against: its --out, the same mixes, steps and users), paired."""
    import numpy as np

    from recgpt.predict.metrics import bootstrap_ratio

    lines = ["", f"This run's curve re-rankers against {other}'s, NDCG@10 of the same users, paired 95% bootstrap "
             "interval.", "", "| target | protocol | largest | its other | largest / other | mix01 | its other | "
             "mix01 / other |", "|---" * 8 + "|"]
    for (target, protocol), r in rows.items():
        cells = []
        for name in (next(n for n in r if n.startswith("mix1")), "mix01"):
            path = curve_scores(other, FOUNDATIONS[target], name, target, protocol)
            if not path.is_file():
                raise SystemExit(f"{path}: not in {other} (run its curve with the same mixes and --curve-steps)")
            theirs = json.loads(path.read_text())
            if theirs["users"] != r[name][3]:
                raise SystemExit(f"{other}: {target} {protocol} scored on other users than this run's")
            cells += [f"{r[name][2].mean():.4f}", f"{np.mean(theirs['ndcg']):.4f}",
                      interval_cells([bootstrap_ratio(r[name][2], np.asarray(theirs["ndcg"]))])]
        lines.append(f"| {target} | {protocol} | " + " | ".join(cells) + " |")
    return lines


def report(results: dict, argv, table: bool = True) -> str:
    from bench.report import header

    lines = ["<!-- written by bench/rerank.py: rerun it to change this file -->",
             "# The re-ranker of `recgpt predict` (predict.reranker) on held-out targets", "", header(argv)]
    if not table:
        return "\n".join(lines) + "\n"
    lines += [" ".join(__doc__.split("\n\n")[1].split()), "",
             "| target | protocol | users | re-ranker (step, fit domain) | priors, per user | priors, fitted | "
             + " | ".join(ROWS[2:]) + " | model / priors, per user | model / priors, fitted | model / priors+cooc | "
             "model / content kNN |", "|---" * 13 + "|"]
    for (target, protocol), (r, fitted, config) in results.items():
        if fitted["methods"]["model"] != r["methods"]["model"]:
            raise SystemExit(f"{target} {protocol}: the re-ranker's row differs between the two reports")
        ndcg = {name: r["methods"][name]["NDCG@10"] for name in ROWS if name in r["methods"]}
        ndcg["priors, fitted"] = fitted["methods"].get("priors", {}).get("NDCG@10")
        cells = [f"{ndcg[n]:.4f}" if ndcg.get(n) is not None else "" for n in (ROWS[:2] + ("priors, fitted",) + ROWS[2:])]
        cells[0] += f" ({config['step']}, {', '.join(config['fit_domains'])})"
        ratios = [r["model_vs"].get("priors"), fitted["model_vs"].get("priors"), r["model_vs"].get("priors+cooc"),
                  r["model_vs"].get("content_knn")]
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
    parser.add_argument("--seed", type=int, default=0, help="the re-rankers' seed (initial weights and draws)")
    parser.add_argument("--mixes", nargs="*", default=list(MIXES), help="the largest mixes whose re-rankers the "
                        "table scores (none: no table; --finetune still trains the foundations it needs)")
    parser.add_argument("--curve-steps", type=int, default=0, help="the curve's steps per re-ranker (0: no curve)")
    parser.add_argument("--curve-mixes", nargs="+", default=["mix01"], help="the plan's smaller mixes on the curve "
                        "(mix01 among them, the smallest its ratio is taken against)")
    parser.add_argument("--curve-png", help="a PNG of the curve: NDCG@10 against the sources' interactions")
    parser.add_argument("--finetune", nargs="*", default=[], help="datasets to fine-tune on (none: no fine-tuning)")
    parser.add_argument("--finetune-steps", type=int, default=500)
    parser.add_argument("--finetune-users", type=int, default=2000, help="seeded LOO test users per dataset")
    parser.add_argument("--foundation-steps", type=int, default=1000, help="a non-target's own foundation's steps")
    parser.add_argument("--in-domain", help="bench/in_domain.py's folder of SASRec+ per target: the moonshot table")
    parser.add_argument("--rerank-set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="config keys for every recgpt rerank the bench runs (e.g. rerank.hidden=128)")
    parser.add_argument("--against", help="another run's --out: this curve's re-rankers paired with its (same users)")
    parser.add_argument("--out", default="outputs/rerank")
    parser.add_argument("--report", default="docs/benchmarks/rerank.md")
    args = parser.parse_args(argv)
    scaling, out, cache = Path(args.scaling), Path(args.out), f"embed.cache_dir={args.embed_cache}"
    same_keys(out, args.rerank_set)
    results = {}
    for short in args.mixes:
        mix, ranker = MIXES[short][0], mix_reranker(args, scaling, out, short)
        config = json.loads((ranker / "config.json").read_text())
        for target in plan_mix(short).serves:
            for protocol in ("loo", "cold"):
                reports = []
                for weights, suffix in (("self", ""), ("fitted", "-fitted")):  # the priors row's two forms
                    report_dir = out / "predict" / f"{target}-{protocol}{suffix}"
                    if not (report_dir / "metrics.json").is_file():
                        run(["predict", "--dataset", str(scaling / "prepared" / target), f"predict.protocol={protocol}",
                             f"predict.model_dir={scaling / 'mixes' / mix / 'targets' / target / 'ckpt' / args.run}",
                             f"predict.reranker={ranker}", f"predict.max_users={args.users}",
                             f"predict.weights={weights}", f"predict.output_dir={report_dir}", cache])
                    reports.append(json.loads((report_dir / "metrics.json").read_text()))
                results[target, protocol] = (*reports, config)
    text = report(results, None if argv is None else [__file__, *argv], bool(args.mixes))
    if args.curve_steps:
        rows = curve(args, scaling, out)
        lines = curve_table(rows) + (against_table(rows, Path(args.against)) if args.against else [])
        if args.curve_png:
            plot_curve(rows, Path(args.curve_png))
        text += "\n".join(lines) + "\n"
    if args.finetune:  # before the moonshot, which reads its fine-tuned scores
        text += "\n".join(finetune(args, scaling, out)) + "\n"
    if args.in_domain:
        text += "\n".join(moonshot(args, scaling, out, [t for t, p in results if p == "loo"])) + "\n"
    Path(args.report).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
