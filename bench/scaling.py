"""Zero-shot quality as a function of the pretraining data: nested mixes x held-out targets.

For each mix of recgpt.data.mixes (nested, growing in size and variety; none holds a target it is reported on,
the target's fit domains or a near-duplicate of either): prepare, build the corpus, embed the item texts
(through embed.cache_dir: each text once for every mix), fit the tokenizer on the mix only and pretrain once
for the same budget. Then, for every target the mix leaves out: select the checkpoint and fit the score weights
on the target's fit domains (held-out *source* domains), and score the target zero-shot (LOO and cold,
history excluded) beside content kNN and the priors (kNN + popularity, the same fit without the model), with
95% bootstrap intervals over users. Each (mix, target) result is cached as json: a second call resumes where
the first stopped and prints the same tables.

    python bench/scaling.py --config configs/text_dense.yaml [--steps 400 | --tokens 819200] [--mixes mix01,mix03]
        [--targets steam] [--name VARIANT] [--plan plan.json] [--fit dense,knn,pop] [key=value ...]
    # a second model size on the largest mixes (its own run folders and cached results):
    python bench/scaling.py --name d256 --mixes mix12-amazon_scientific+amazon14_beauty,mix11-steam+yelp \
        model.d_model=256 model.d_ff=512
    # another selection or score fit on a variant's pretraining (linked, not retrained):
    python bench/scaling.py --name s3000fit --pretrained-variant s3000 --fit-users 5000 --steps 3000 ...

The budget is the same for every mix (steps, or tokens per mix): the curve changes the data, not the compute.
A wall-clock cap is not offered, as the steps it allowed would follow the load of the machine; the table
states each pretraining's steps, tokens and seconds.

Outputs: <out>/mixes/<mix>/mix.json (what the mix holds, leaves out and why), <out>/mixes/<mix>/ckpt/<name>
(the pretraining), <out>/mixes/<mix>/targets/<target> (selection and export for one target), <out>/results/
<name>/<mix>/<target>.json; the tables go to --report (with the command and the git commit) and the curve
(NDCG@10 against pretraining interactions per target) to --png.
"""
import argparse
import json
import math
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]  # first on the path, and not bench/ (whose modules shadow packages)
sys.path = [str(REPO)] + [p for p in sys.path if Path(p or ".").resolve() != REPO / "bench"]

from bench.zero_shot import (build_inputs, in_domain_lists, link_pretraining, link_run, pretrain_once,  # noqa: E402
                             score_held_out, stage)

# methods whose per-user NDCG@10 the cache keeps (the code rows only with a code head: LIGER's, bench/zero_shot.py)
PER_USER = ("model", "model[dense]", "model[code]", "model[beam]", "model[liger]", "priors", "content_knn", "popularity")


def mix_paths(args, mix, root: Path) -> list:
    return [f"data.datasets=[{','.join(mix.datasets)}]", f"data.prepared_root={args.out}/prepared",
            f"data.corpus_dir={root}/corpus", f"tokenizer.output_dir={root}/tokenizer",
            f"run.output_root={root}/ckpt", f"run.name={args.name}"]


def budget(args, cfg) -> list:
    """train.max_steps from --steps or --tokens (tokens per optimizer step: tokens_per_batch x grad_accum)."""
    if args.tokens:
        return [f"train.max_steps={math.ceil(args.tokens / (cfg.train.tokens_per_batch * cfg.train.grad_accum))}"]
    return [f"train.max_steps={args.steps}"] if args.steps else []


def pretrain_mix(args, plan, mix) -> Path:
    """The mix's manifest, corpus, embeddings, tokenizer and pretraining (each resumed or skipped when done)."""
    from recgpt.config import load_config
    from recgpt.data.corpus import prepared_folder
    from recgpt.data.mixes import mix_manifest, write_mix_manifest
    from recgpt.io import read_manifest

    root = Path(args.out) / "mixes" / mix.name
    overrides = [*args.overrides, *mix_paths(args, mix, root)]
    cfg = load_config(args.config, overrides)
    counts = {d: read_manifest(prepared_folder(d, cfg.data))["counts"]["interactions"] for d in mix.datasets}
    write_mix_manifest(root, mix_manifest(plan, mix, counts))
    overrides += budget(args, cfg)
    cfg = load_config(args.config, overrides)
    build_inputs(["--config", args.config, *overrides], cfg)
    if args.pretrained_variant:
        share_pretraining(root / "ckpt", args.pretrained_variant, args.name)
    pretrain_once(Path(cfg.run_dir), cfg)
    return root


def share_pretraining(runs: Path, source: str, name: str) -> None:
    """Variant `name` scored on variant `source`'s pretraining: its step folders linked, its stats copied."""
    if not (runs / source / "pretrain_stats.json").is_file():
        raise SystemExit(f"scaling: --pretrained-variant {source}: no finished pretraining in {runs / source}")
    link_run(runs / source, runs / name)


def score_target(args, plan, mix, mix_root: Path, target: str) -> dict:
    """Checkpoint and score weights chosen on the target's fit domains, then the target scored zero-shot."""
    from recgpt.config import load_config
    from recgpt.data.corpus import prepared_folder
    from recgpt.data.mixes import excluded
    from recgpt.evaluate import SELECTION
    from recgpt.predict import Recommender
    from recgpt.predict.hybrid import SCORE_FIT

    fit_domains = list(plan.fit_domains[target])
    root = mix_root / "targets" / target
    corpus_dir, tokenizer_dir = link_pretraining(mix_root, root, args.name, list(mix.datasets),
                                                 set(excluded(plan, target)))
    paths = [*mix_paths(args, mix, mix_root)[:2], f"data.corpus_dir={corpus_dir}",
             f"tokenizer.output_dir={tokenizer_dir}", f"run.output_root={root}/ckpt", f"run.name={args.name}",
             "eval.select_by=zero_shot", f"eval.zero_shot_domain={fit_domains[0]}"]
    fitting = [f"eval.score_fit=[{args.fit}]", f"eval.score_fit_domains=[{','.join(fit_domains)}]",
               f"eval.score_fit_users={args.fit_users}"] if args.fit else []
    cfg = load_config(args.config, [*args.overrides, *paths])
    argv = ["--config", args.config, *args.overrides, *paths]
    run_dir = Path(cfg.run_dir)
    stage(["eval", "--ckpt", str(run_dir), *argv, *fitting])
    fit = json.loads((run_dir / "best" / SCORE_FIT).read_text()) if args.fit else {}
    rec = Recommender.from_pretrained(run_dir / "best", embed_cfg=cfg.embed, knn=cfg.predict.knn)
    given = in_domain_lists(args.in_domain, target) if args.in_domain else None
    tables, raw = score_held_out(rec, prepared_folder(target, cfg.data), fit, args.max_users, given, PER_USER)
    manifest = json.loads((mix_root / "mix.json").read_text())
    return {"mix": mix.name, "target": target, "variant": args.name, "datasets": list(mix.datasets),
            "interactions": manifest["interactions"], "fit_domains": fit_domains,
            "pretrain": json.loads((run_dir / "pretrain_stats.json").read_text()),
            "best": json.loads((run_dir / SELECTION).read_text())["best"],
            "fit": {k: v for k, v in fit.items() if k != "table"}, "tables": tables, "results": raw}


def settings(args) -> dict:
    """What a cached result depends on: a result made with other settings is never reused silently."""
    return {"config": args.config, "overrides": args.overrides, "steps": args.steps, "tokens": args.tokens,
            "fit": args.fit, "max_users": args.max_users, "fit_users": args.fit_users,
            **({"in_domain": args.in_domain} if args.in_domain else {}),
            **({"pretrained_variant": args.pretrained_variant} if args.pretrained_variant else {})}


def cached_result(args, plan, mix, mix_root, target) -> dict:
    path = Path(args.out) / "results" / args.name / mix.name / f"{target}.json"
    if path.is_file():
        record = json.loads(path.read_text())
        if record.get("settings") != settings(args) or record.get("datasets") != list(mix.datasets):
            raise SystemExit(f"scaling: {path} was made with other settings {record.get('settings')}: use another "
                             "--name or --out, or remove that file")
        return record
    record = {**score_target(args, plan, mix, mix_root, target), "settings": settings(args)}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1))
    tmp.replace(path)
    return record


def fit_bound(args, mixes, targets) -> str:
    """--fit-bound: for every (mix, target) of --name already scored, the score weight grid on the target's own
    LOO and cold users (those of its tables) with and without the model's components: the best model and the
    best priors that any weights could give, chosen on the reported users themselves. A diagnostic of whether
    the fit on other domains or the model holds model / priors back; never a zero-shot figure."""
    from bench.scaling_report import PROTOCOLS
    from recgpt.config import load_config
    from recgpt.data import load_prepared
    from recgpt.data.corpus import prepared_folder
    from recgpt.predict import Recommender
    from recgpt.predict.hybrid import best_model_free, domain_table

    cfg = load_config(args.config, [*args.overrides, f"data.prepared_root={args.out}/prepared"])
    lines = ["| target | protocol | mix | model / priors, fitted on the fit domain | model, weights best on the "
             "target | priors, weights best on the target | model / priors, both best on the target |",
             "|---|---|---|---|---|---|---|"]
    for mix, target, record, best in scored(args, mixes, targets):
        rec = Recommender.from_pretrained(best, embed_cfg=cfg.embed, knn=cfg.predict.knn)
        prepared = load_prepared(prepared_folder(target, cfg.data))
        for protocol in PROTOCOLS:  # the users of the record's tables (its max_users, seed 0)
            table = domain_table(rec, prepared, record["settings"]["fit"].split(","),
                                 record["settings"]["max_users"], 10, 0.1, 0, protocol)
            grid, values = [w for w, _ in table], [v for _, v in table]
            model = table[max(range(len(table)), key=lambda i: (values[i], -i))]  # ties: the first
            priors = table[best_model_free(grid, values)]
            fitted = next(r for r in record["tables"][f"{protocol} vs priors"] if r["method"] == "model")
            lines.append(f"| {target} | {protocol} | {mix.name} | {fitted['ratio']:.3f} [{fitted['lo']:.3f}, "
                         f"{fitted['hi']:.3f}] | {model[1]:.4f} {model[0]} | {priors[1]:.4f} {priors[0]} | "
                         f"{model[1] / priors[1]:.3f} |")
            print(lines[-1], flush=True)
    return "\n".join(lines) + "\n"


def scored(args, mixes, targets):
    """(mix, target, its cached result, its exported model folder) for every target of `mixes` scored under --name."""
    for mix in mixes:
        for target in [t for t in mix.serves if targets is None or t in targets]:
            path = Path(args.out) / "results" / args.name / mix.name / f"{target}.json"
            best = Path(args.out) / "mixes" / mix.name / "targets" / target / "ckpt" / args.name / "best"
            if path.is_file() and best.is_dir():
                yield mix, target, json.loads(path.read_text()), best


def self_weight_rows(args, mixes, targets) -> str:
    """--self-weights: for every (mix, target) of --name already scored, the model and the priors scored with
    per-user weights (recgpt.predict.self_weights: the grid point that ranks the user's own last history item
    best, the prior from the target's log before its targets as shipped, or from the fit on the fit domain)
    against the fitted weights, same LOO and cold users as the tables (their max_users, seed 0); nothing is
    trained."""
    import numpy as np

    from bench.scaling_report import PROTOCOLS
    from recgpt.config import load_config
    from recgpt.data import load_prepared
    from recgpt.data.corpus import prepared_folder
    from recgpt.predict import Recommender
    from recgpt.predict.hybrid import component_chunks, domain_table, grid_ranks, rank_gains
    from recgpt.predict.protocols import build_test_cases, popularity_before_targets, sequences_before_targets
    from recgpt.predict.self_weights import (LOG_STRENGTH, STRENGTH, choose, log_prior, log_rows, own_ranks,
                                             priors_points)
    from recgpt.predict.metrics import bootstrap_ratio, per_user

    cfg = load_config(args.config, [*args.overrides, f"data.prepared_root={args.out}/prepared"])
    far = ["| target | mix | prior | users | SASRec+ in-domain | model self / SASRec+ | priors self / SASRec+ | "
           "model (fitted) / SASRec+ |", "|" + "---|" * 8]
    rows = ["| target | protocol | mix | prior | priors | model | priors, self weights | model, self weights | "
            "model self / priors | priors self / priors | model self / priors self |", "|" + "---|" * 11]
    by_mix = {}  # (target, protocol, prior) -> [(interactions, mix, {user: model self NDCG@10})]
    for mix, target, record, best in scored(args, mixes, targets):
        names = record["settings"]["fit"].split(",")
        rec = Recommender.from_pretrained(best, embed_cfg=cfg.embed, knn=cfg.predict.knn)
        fit_domain = load_prepared(prepared_folder(record["fit_domains"][0], cfg.data))
        prior_table = domain_table(rec, fit_domain, names, record["settings"]["fit_users"], 10, 0.1, 0)
        grid, prior = [w for w, _ in prior_table], [v for _, v in prior_table]
        fitted = {"model": grid.index(record["fit"]["weights"]),
                  "priors": grid.index({n: record["fit"]["priors"]["weights"].get(n, 0.0) for n in names})}
        prepared = load_prepared(prepared_folder(target, cfg.data))
        catalog = rec.set_catalog_from_prepared(prepared, popularity=None)
        for protocol in PROTOCOLS:
            rec.set_popularity(popularity_before_targets(prepared.interactions, catalog, protocol, 1, 0))
            cases = build_test_cases(prepared.interactions, rec.catalog, protocol, 1, 0,
                                     record["settings"]["max_users"])
            gains = rank_gains(grid_ranks(component_chunks(rec, cases.histories, names),
                                          [t[0] for t in cases.targets], cases.histories, grid,
                                          rec.catalog.n_items), 10).numpy()
            users = np.arange(len(cases))
            own, ranks = own_ranks(rec, cases.histories, grid)  # once: the priors' points are a part of the grid
            log = log_prior(rec, log_rows(sequences_before_targets(prepared.interactions, protocol, 1, 0),
                                          rec.catalog), grid)
            moon = args.in_domain and protocol == "loo"  # the moonshot: SASRec+ trained on the target itself
            if moon:
                by_user = in_domain_lists(args.in_domain, target)["sasrec_in_domain"]
                keep = np.array([str(u) in by_user for u in cases.user_ids])
                lists = [rec.catalog.rows(by_user.get(str(u), [])[:10])[0] for u in cases.user_ids]
                sasrec = per_user(lists, cases.targets, 10)["NDCG"]
            for kind, curve, strength in (("log", log, LOG_STRENGTH), ("fit", prior, STRENGTH)):
                points = {"model": choose(ranks, own, len(cases), curve, strength).numpy()}
                points["priors"] = priors_points(rec, cases.histories, (grid, curve, strength), (own, ranks))[1].numpy()
                ndcg = {**{k: gains[i] for k, i in fitted.items()},
                        **{f"{k} self": gains[np.asarray(p), users] for k, p in points.items()}}
                ratios = [bootstrap_ratio(ndcg[a], ndcg[b]) for a, b in
                          (("model self", "priors"), ("priors self", "priors"), ("model self", "priors self"))]
                rows.append(f"| {target} | {protocol} | {mix.name} | {kind} | " + " | ".join(
                    f"{ndcg[k].mean():.4f}" for k in ("priors", "model", "priors self", "model self")) + " | "
                    + " | ".join(f"{r:.3f} [{lo:.3f}, {hi:.3f}]" for r, lo, hi in ratios) + " |")
                print(rows[-1], flush=True)
                by_mix.setdefault((target, protocol, kind), []).append(
                    (record["interactions"], mix.name, dict(zip(map(str, cases.user_ids), ndcg["model self"]))))
                if moon:
                    far.append(f"| {target} | {mix.name} | {kind} | {int(keep.sum())} | {sasrec[keep].mean():.4f} | "
                               + " | ".join("{:.3f} [{:.3f}, {:.3f}]".format(*bootstrap_ratio(ndcg[k][keep], sasrec[keep]))
                                            for k in ("model self", "priors self", "model")) + " |")
    if len(far) > 2:
        rows += ["", "How far from SASRec+ trained on the target itself (LOO, the users with an in-domain list):", "",
                 *far]
    return "\n".join(rows + self_curve(by_mix)) + "\n"


def self_curve(by_mix: dict) -> list:
    """Lines of the --self-weights curve: per (target, protocol, prior) scored on two mixes or more, the model with
    per-user weights on the largest mix (by pretraining interactions) / on the smallest, paired over the users
    both scored. `by_mix`: (target, protocol, prior) -> [(interactions, mix name, {user id: NDCG@10})]."""
    import numpy as np

    from recgpt.predict.metrics import bootstrap_ratio

    curve = []
    for (target, protocol, kind), group in by_mix.items():
        if len(group) > 1:
            (_, small, a), (_, large, b) = min(group, key=lambda g: g[0]), max(group, key=lambda g: g[0])
            users = [u for u in b if u in a]
            r, lo, hi = bootstrap_ratio(np.asarray([b[u] for u in users]), np.asarray([a[u] for u in users]))
            curve.append(f"| {target} | {protocol} | {kind} | {small} | {large} | {r:.3f} [{lo:.3f}, {hi:.3f}] | "
                         f"{len(users)} |")
    if not curve:
        return []
    return ["", "Does the curve rise with per-user weights? The model, self weights: largest mix / smallest mix "
            "(same users):", "", "| target | protocol | prior | smallest | largest | ratio | users |",
            "|" + "---|" * 7, *curve]


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="configs/text_dense.yaml")
    parser.add_argument("--plan", help="json with recgpt.data.mixes.Plan fields (default: the shared-data plan)")
    parser.add_argument("--mixes", help="comma-separated mix names (default: all of the plan)")
    parser.add_argument("--targets", help="comma-separated targets (default: all of the plan)")
    parser.add_argument("--steps", type=int, help="pretraining steps per mix (default: the config's)")
    parser.add_argument("--tokens", type=int, help="pretraining tokens per mix (sets the steps)")
    parser.add_argument("--fit", default="dense,knn,pop", help="score components weighed on the fit domains")
    parser.add_argument("--name", default="default", help="model variant (run folder)")
    parser.add_argument("--out", default="outputs/scaling")
    parser.add_argument("--max-users", type=int, default=2000, help="seeded users of the target per protocol")
    parser.add_argument("--fit-users", type=int, default=1000)
    parser.add_argument("--pretrained-variant", help="score this variant on that variant's pretraining (linked)")
    parser.add_argument("--in-domain", help="bench/in_domain.py's output folder: SASRec+ trained on each target "
                                            "itself (its LOO lists), scored on the same users")
    parser.add_argument("--report", default="docs/benchmarks/scaling.md")
    parser.add_argument("--png", default="docs/benchmarks/scaling.png")
    parser.add_argument("--fit-bound", action="store_true",
                        help="no training or scoring: the weights best on each scored target's own users "
                             "(a diagnostic), into <report>_fit_bound.md")
    parser.add_argument("--self-weights", action="store_true",
                        help="no training: each scored target's model and priors with per-user weights chosen on "
                             "each user's own history, into <report>_self_weights.md")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    import torch

    from bench.report import header
    from bench.scaling_report import plot_curve, write_report
    from recgpt.data.mixes import load_plan

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    names, targets = (set(v.split(",")) if v else None for v in (args.mixes, args.targets))
    try:
        plan, mixes = load_plan(args.plan, names or (), targets or ())
    except ValueError as e:  # exit 2 with one line naming the plan or the unknown names
        parser.error(str(e))
    if args.fit_bound or args.self_weights:
        suffix, rows = ("_fit_bound", fit_bound) if args.fit_bound else ("_self_weights", self_weight_rows)
        report = Path(args.report).with_name(Path(args.report).stem + suffix + ".md")
        text = rows(args, [m for m in mixes if names is None or m.name in names], targets)
        report.write_text(f"{header([__file__, *argv])}\n{text}")
        return 0
    records = []
    for mix in mixes:
        served = [t for t in mix.serves if targets is None or t in targets]
        if (names is None or mix.name in names) and served:
            mix_root = pretrain_mix(args, plan, mix)
            records += [cached_result(args, plan, mix, mix_root, t) for t in served]
    text = write_report(records, args.report, [__file__, *argv])
    plot_curve(records, args.png)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
