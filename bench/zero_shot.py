"""Leave-one-domain-out zero-shot benchmark: does the model beat content kNN on a domain it never saw?

For the held-out domain D: the tokenizer is fitted and the model pretrained on the other shared datasets
except D and a fit domain V (both never touched before prediction); hybrid score weights (--fit) are chosen
on V's users by `recgpt eval` (eval.score_fit: stored in the exported model, the fit in best/score_fit.json);
then D is scored zero-shot (leave-one-out and cold-start, history excluded) beside content kNN, popularity
and recency. One table: HR@10, NDCG@10, NDCG ratio to content kNN with a 95% bootstrap interval over users;
plus pretraining time and tokens/s.

    python bench/zero_shot.py --domain steam --config configs/text_dense.yaml [--fit code,dense,knn,pop]
        [--name VARIANT] [--max-users 2000] [key=value ...]     # dotted overrides select the model variant

Corpus and tokenizer are shared by the variants of one (D, sources) pair (<out>/<D>/<sources>/); each variant
is a run <out>/<D>/<sources>/ckpt/<name>, its checkpoint chosen by zero-shot NDCG@10 on the fit domain.
`--pretrained <out>/<D'>/<sources>` reuses the corpus, tokenizer and pretrained steps of another held-out
domain's run when its sources leave out D and the fit domains too: the run folder for D then holds links to
those steps, and only checkpoint selection, the weight fit and the evaluation run for D. The row `priors` is
the same fit with the model's components (code, dense) at 0: what the label-free priors give without the model.
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])  # the repo, not bench/ (whose modules shadow packages)
from recgpt.io import claim_until_exit  # noqa: E402

SHARED = ["ml-100k", "amazon_games", "yelp", "lastfm", "amazon_scientific", "steam"]
FIT_DOMAIN = {"amazon_scientific": "steam", "steam": "yelp", "yelp": "amazon_scientific"}


def stage(argv: list) -> None:
    from recgpt.cli import main

    code = main(argv)
    if code:
        raise SystemExit(f"zero_shot: `recgpt {' '.join(argv[:2])}` failed with exit code {code}")


def build_inputs(argv: list, cfg) -> None:
    """Corpus, item embeddings (through embed.cache_dir) and the tokenizer fitted on them, each once."""
    if not (Path(cfg.data.corpus_dir) / "manifest.json").is_file():
        stage(["corpus", *argv])
    if not (Path(cfg.data.corpus_dir) / "embeddings").is_dir():
        stage(["tokenize", "embed", *argv])
    if not (Path(cfg.tokenizer.output_dir) / "codes.safetensors").is_file():
        stage(["tokenize", "fit", *argv])


def pretrain_once(run_dir: Path, cfg) -> dict:
    """Pretrain (resuming) and record wall time and tokens/s of the steps run here."""
    stats_path = run_dir / "pretrain_stats.json"
    if stats_path.is_file() and json.loads(stats_path.read_text()).get("max_steps") == cfg.train.max_steps:
        return json.loads(stats_path.read_text())
    from recgpt.train.trainer import pretrain

    started = time.time()
    summary = pretrain(cfg)
    seconds = time.time() - started
    stats = {"max_steps": cfg.train.max_steps, "seconds": round(seconds, 1), "tokens_seen": summary["tokens_seen"],
             "tokens_per_s": round(summary["tokens_seen"] / max(seconds, 1e-9), 1), "heldout_loss": summary["heldout_loss"]}
    stats_path.write_text(json.dumps(stats, indent=2))
    return stats


def link_pretraining(pretrained: Path, root: Path, name: str, sources: list, excluded: set) -> tuple:
    """(corpus dir, tokenizer dir) of an earlier pretraining under `pretrained`; its step folders and stats
    are linked into root/ckpt/<name> (selection and export write there, never into the shared run)."""
    shared_run = pretrained / "ckpt" / name
    manifest = pretrained / "corpus" / "manifest.json"
    if not (shared_run / "pretrain_stats.json").is_file() or not manifest.is_file():
        raise SystemExit(f"zero_shot: --pretrained {pretrained}: no corpus manifest or finished run {shared_run}")
    saved = [d["name"] for d in json.loads(manifest.read_text())["datasets"]]
    if saved != sources or set(saved) & excluded:
        raise SystemExit(f"zero_shot: --pretrained {pretrained} was not pretrained on exactly --sources "
                         f"{','.join(sources)} without {', '.join(sorted(excluded))}")
    link_run(shared_run, root / "ckpt" / name)
    return pretrained / "corpus", pretrained / "tokenizer"


def link_run(src: Path, dst: Path) -> None:
    """Run folder `dst` made of finished run `src`: its step folders linked, its stats and config copied."""
    import shutil

    from recgpt.train import checkpoint as ckpt

    dst.mkdir(parents=True, exist_ok=True)
    for step in sorted(src.iterdir()):
        if ckpt.STEP_DIR.match(step.name) and not (dst / step.name).exists():
            (dst / step.name).symlink_to(step.resolve(), target_is_directory=True)
    for file in ("pretrain_stats.json", "config.yaml"):
        shutil.copy2(src / file, dst / file)


def in_domain_lists(root, domain: str) -> dict:
    """{"sasrec_in_domain": {user id: [item ids]}}: the LOO lists of SASRec+ trained on the domain itself
    (bench/in_domain.py's report under root), to score on the zero-shot users as the in-domain target."""
    path = Path(root) / f"{domain}-loo" / "sasrec" / "recommendations.parquet"
    if not path.is_file():
        raise SystemExit(f"zero_shot: --in-domain {root}: no {path} (bench/in_domain.py --models sasrec --protocols loo)")
    return {"sasrec_in_domain": user_lists(path)}


def user_lists(path) -> dict:
    """{user id: [item ids], best first} of a recommendations.parquet (recgpt predict's or a baseline's)."""
    import pandas as pd

    recs = pd.read_parquet(path).sort_values(["user_id", "rank"])
    return recs.groupby(recs["user_id"].astype(str))["item_id"].agg(list).to_dict()


MODEL_ROWS = ("model", "model[dense]", "model[code]", "model[liger]", "model[beam]")  # the model's rows


def score_held_out(rec, folder, fit: dict, max_users: int, given=None, per_user=()) -> tuple[dict, dict]:
    """(table rows, raw results) per protocol on the held-out domain's folder (the first read of anything of
    it): the fitted hybrid, the model's own components alone, the priors row and the baselines; with `given`
    (in_domain_lists), its rows on the LOO users and every row's ratio to them; the raw results keep the
    per-user NDCG@10 of the methods named in `per_user` (ndcg_per_user, in the order of user_ids)."""
    from recgpt.predict.transfer import ratio_rows, restrict, zero_shot_eval

    mcfg = rec.model.config
    alone = [c for c, on in (("code", mcfg.codes is not None), ("dense", mcfg.dense is not None)) if on]
    weighted = {"priors": fit["priors"]["weights"]} if fit.get("priors") else {}
    liger = len(alone) == 2 and rec.pretrained_items is not None  # both heads: LIGER's rows too
    results, raw = {}, {}
    for i, protocol in enumerate(("loo", "cold")):
        result = zero_shot_eval(rec, folder, protocol, max_users, catalog_set=i > 0, alone=alone, weighted=weighted,
                                given=given if protocol == "loo" else None, liger=liger)
        covered = result["given_covered"]
        results[protocol] = [r for r in ratio_rows(result) if r["method"] not in covered]
        for name, keep in covered.items():  # how far the zero-shot rows are from a model trained on D itself,
            rows = ratio_rows(restrict(result, keep), reference=name)  # on the users it has lists for
            results[f"{protocol} vs {name} ({int(keep.sum())} users)"] = [
                r for r in rows if r["method"] in ("model", "model[dense]", "priors", "content_knn", name)]
        if "priors" in result["per_user"]:  # what the model adds over the priors, on the same users
            over = ratio_rows(result, reference="priors")
            results[protocol + " vs priors"] = [r for r in over if r["method"] in MODEL_ROWS]
        raw[protocol] = {k: v for k, v in result.items() if k not in ("per_user", "user_ids", "given_covered")}
        raw[protocol]["given_covered"] = {name: int(keep.sum()) for name, keep in covered.items()}  # users with a list
        if per_user:
            raw[protocol].update(user_ids=result["user_ids"], ndcg_per_user={
                m: [round(float(v), 6) for v in result["per_user"][m]["NDCG"]] for m in per_user if m in result["per_user"]})
    return results, raw


def format_table(results: dict, stats: dict, fit: dict) -> str:
    lines = [f"pretraining: {stats['seconds']:.0f} s, {stats['tokens_seen']} tokens, {stats['tokens_per_s']:.0f} tokens/s",
             f"score weights: {fit.get('weights')} (fitted on {fit.get('dataset')}, NDCG@10 {fit.get('ndcg')})"
             if fit else "score weights: model default",
             *([f"priors weights: {fit['priors']['weights']} (same fit, model components at 0; NDCG@10 "
                f"{fit['priors']['ndcg']})"] if fit.get("priors") else []), "",
             "| protocol | method | HR@10 | NDCG@10 | NDCG / content kNN [95% CI] |", "|---|---|---|---|---|"]
    for protocol, rows in results.items():
        for r in rows:
            lines.append(f"| {protocol} | {r['method']} | {r['HR@10']:.4f} | {r['NDCG@10']:.4f} | "
                         f"{r['ratio']:.3f} [{r['lo']:.3f}, {r['hi']:.3f}] |")
    if any(p.endswith(" vs priors") for p in results):
        lines += ["", "Rows `<protocol> vs priors`: the ratio column is NDCG / priors (the same fit without the model)."]
    if any(" vs sasrec_in_domain" in p for p in results):
        lines += ["Rows `loo vs sasrec_in_domain`: NDCG / that of SASRec+ trained on the domain itself, on the "
                  "users it has lists for."]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--domain", required=True, choices=sorted(FIT_DOMAIN))
    parser.add_argument("--config", default="configs/text_dense.yaml")
    parser.add_argument("--fit-domain", help="held-out source domain(s), comma-separated: the first selects the "
                                             "checkpoint, all fit the score weights (default: a fixed rotation)")
    parser.add_argument("--sources", help="pretraining datasets, comma-separated (default: every shared one but "
                                          "the domain and the fit domain)")
    parser.add_argument("--fit", default="", help="components to weigh on the fit domain: code,dense,knn,pop")
    parser.add_argument("--name", default="default", help="variant name (run folder)")
    parser.add_argument("--out", default="outputs/zero_shot")
    parser.add_argument("--pretrained", help="reuse <out>/<other domain>/<sources> (corpus, tokenizer, run --name)")
    parser.add_argument("--max-users", type=int, default=2000, help="seeded users of D per protocol")
    parser.add_argument("--fit-users", type=int, default=1000)
    parser.add_argument("--in-domain", help="bench/in_domain.py's output folder: score its SASRec+ LOO lists, "
                                            "trained on the domain itself, on the same users")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    from recgpt.config import load_config
    from recgpt.data.corpus import prepared_folder
    from recgpt.predict import Recommender
    from recgpt.predict.hybrid import SCORE_FIT

    held = args.domain
    fit_domains = (args.fit_domain or FIT_DOMAIN[held]).split(",")
    fit_domain = fit_domains[0]  # checkpoint selection; the score weights use all of them
    sources = args.sources.split(",") if args.sources else [d for d in SHARED if d not in (held, *fit_domains)]
    if set(sources) & {held, *fit_domains} or held in fit_domains:
        raise SystemExit(f"zero_shot: --sources and --fit-domain must leave out {held}, --sources the fit domains")
    claim_until_exit(args.out)  # a folder of this bench's (or a new one), one run at a time
    root = Path(args.out) / held / "+".join(sources)
    corpus_dir, tokenizer_dir = root / "corpus", root / "tokenizer"
    if args.pretrained:
        corpus_dir, tokenizer_dir = link_pretraining(Path(args.pretrained), root, args.name, sources,
                                                     {held, *fit_domains})
    paths = [f"data.datasets=[{','.join(sources)}]", f"data.corpus_dir={corpus_dir}",
             f"tokenizer.output_dir={tokenizer_dir}", f"run.output_root={root}/ckpt", f"run.name={args.name}",
             "eval.select_by=zero_shot", f"eval.zero_shot_domain={fit_domain}"]
    argv = ["--config", args.config, *args.overrides, *paths]
    cfg = load_config(args.config, [*args.overrides, *paths])
    build_inputs(argv, cfg)
    run_dir = Path(cfg.run_dir)
    stats = pretrain_once(run_dir, cfg)
    fitting = [f"eval.score_fit=[{args.fit}]", f"eval.score_fit_domains=[{','.join(fit_domains)}]",
               f"eval.score_fit_users={args.fit_users}"] if args.fit else []
    stage(["eval", "--ckpt", str(run_dir), *argv, *fitting])  # exports best/ with the fitted weights in it
    fit = json.loads((run_dir / "best" / SCORE_FIT).read_text()) if args.fit else {}
    rec = Recommender.from_pretrained(run_dir / "best", embed_cfg=cfg.embed, knn=cfg.predict.knn)
    given = in_domain_lists(args.in_domain, held) if args.in_domain else None
    results, raw = score_held_out(rec, prepared_folder(held, cfg.data), fit, args.max_users, given)
    table = format_table(results, stats, fit)
    out = root / "results" / (args.name + ("" if fit_domains == [FIT_DOMAIN[held]] else "-fit-" + "+".join(fit_domains)))
    out.mkdir(parents=True, exist_ok=True)
    (out / "zero_shot.md").write_text(f"# zero-shot on {held} (variant {args.name})\n\n{table}")
    (out / "zero_shot.json").write_text(json.dumps({
        "domain": held, "fit_domains": fit_domains, "sources": sources, "variant": args.name,
        "overrides": args.overrides, "pretrained": args.pretrained, "pretrain": stats, "fit": {k: v for k, v in fit.items() if k != "table"},
        "tables": results, "results": raw}, indent=2))
    print(table)
    from bench.report import write_table

    write_table(f"zero_shot/{held}-{out.name}", f"# zero-shot on {held} (variant {args.name})\n\n{table}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
