"""In-domain comparison: every baseline (and recgpt, where run) on the same splits of each dataset.

Per dataset, each model is trained twice through `recgpt baseline` (recgpt.baselines.run): once on the
leave-one-out training split (valid = second-to-last, test = last) and once on the long-horizon split of
arXiv 2409.17730 (last 10 items held out as an unordered set, users split 50/50 into valid / test). The
generative models (gpt2, sasrec, markov) then generate the next 10 items with every strategy of
recgpt.predict.horizon; temperatures are chosen on the validation users. One markdown table per dataset:
LOO HR@10 / NDCG@10, next-10 NDCG@10 / Recall@10 per strategy, hit@10 of the first target, training time.

    OMP_NUM_THREADS=1 python bench/in_domain.py --datasets ml-100k amazon_scientific --max-seconds 120 \
        [--models popularity markov ...] [--out outputs/bench/in_domain] [baseline.key=value ...]
        [--recgpt recgpt tiger finetune scratch --foundation ckpt/<run>/best --recgpt-protocols loo horizon]
        [--recgpt-steps 3000 --recgpt-checkpoints 10]  # early stopping: the lowest held-out loss of 10 is scored
        [--recgpt-train-users 0.1]  # scarce data: the --recgpt models train on a seeded 10% of the users
        [--seeds 1]  # a repeat of the whole draw (users, initialisation, order) into another --out
        [--foundation-config configs/foundation_dense.yaml]  # a dense-head foundation: LOO by the hybrid score
        [--table-only]    # the tables of the reports already on disk
"""
import argparse
import json
import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])  # the repo root, not bench/

from recgpt.config import ConfigError, load_config  # noqa: E402
from recgpt.io import claim_until_exit  # noqa: E402

# recgpt trained in-domain (configs/tiny.yaml sizes) on the LOO training split, and TIGER as its configuration.
RECGPT_VARIANTS = {"recgpt": [], "tiger": ["tokenizer.kind=rqvae", "model.recipe=tiger"]}
# With --foundation DIR (an exported model, configs/foundation.yaml): the target catalog encoded with DIR's
# tokenizer, then fine-tuned from DIR's weights at --finetune-lr (finetune) or trained from scratch with the same
# architecture (train.init_weights=random), tokenizer and steps at the configuration's own lr (scratch, the control). A foundation with a
# dense head (configs/foundation_dense.yaml) is scored on LOO by the hybrid, its weights fitted on the split's
# validation users (recgpt.baselines.exported_hybrid), its components and the priors alone beside it.
FOUNDATION_VARIANTS = {"finetune": "recgpt_ft", "scratch": "recgpt_scratch"}
ROWS = ["popularity", "markov", "itemknn", "content_knn", "bpr", "sasrec", "bert4rec", "gpt2", "tiger", "recgpt",
        "recgpt_scratch_codeonly", "recgpt_ft_codeonly", "recgpt_scratch", "recgpt_ft"]  # codeonly: configs/foundation.yaml
TRAINED = ROWS[:8]  # trained by `recgpt baseline`; the others by the recgpt CLI (--recgpt)
GENERATIVE = ("gpt2", "sasrec", "markov")
# Chosen on validation NDCG@10: at lr 1e-3 BERT4Rec's masked-item loss plateaus within the CPU budget (best
# valid NDCG@10 .036 on ml-100k), at 3e-3 it reaches .086 in five epochs.
MODEL_OVERRIDES = {"bert4rec": ["baseline.lr=3e-3"]}
# MFGAN (its own table: against its pretrained generator, per seed), also under the papers' 100 sampled negatives.
ADVERSARIAL = ["mfgan"]
MODEL_OVERRIDES["mfgan"] = ["baseline.sampled_negatives=100"]
STRATEGIES = ("exact", "greedy", "beam", "sample", "rra", "ra")


def run_one(name, dataset, protocol, args, out: Path, seed: int = 0) -> dict:
    from recgpt.baselines.run import run_baseline

    folder = out / f"{dataset}-{protocol}" / (name if seed == 0 else f"{name}-seed{seed}")
    if (folder / "metrics.json").is_file() and not args.rerun:
        return json.loads((folder / "metrics.json").read_text())
    strategies = list(STRATEGIES) if protocol == "horizon" and name in GENERATIVE else ["exact"]
    ks = "[1,5,10]" if protocol == "horizon" else "[1,5,10,20]"
    temps = "[" + ",".join(str(t) for t in args.temperatures) + "]"
    cfg = load_config(args.config, [f"baseline.name={name}", f"baseline.dataset={dataset}",
                                    f"baseline.protocol={protocol}", f"baseline.output_dir={folder}",
                                    f"baseline.max_seconds={args.max_seconds}", f"baseline.threads={args.threads}",
                                    f"baseline.strategies=[{','.join(strategies)}]", f"baseline.ks={ks}",
                                    f"baseline.temperatures={temps}", f"baseline.seed={seed}",
                                    f"embed.cache_dir={args.embed_cache}", *MODEL_OVERRIDES.get(name, []),
                                    *args.overrides])
    run_baseline(cfg)
    return json.loads((folder / "metrics.json").read_text())


def run_recgpt(variant, dataset, protocol, args, out: Path) -> dict:
    """corpus (data.train_split=protocol) -> embed -> tokenizer -> pretrain -> eval, by the CLI; then LOO by
    `recgpt predict`, next-10 on the baselines' test half with their strategies (recgpt.baselines.exported)."""
    import subprocess
    import time

    from recgpt.evaluate import SELECTION

    row = FOUNDATION_VARIANTS.get(variant, variant)
    root = out / f"{dataset}-{protocol}" / row
    if (root / "result.json").is_file() and not (args.rerun or args.rerank):
        return json.loads((root / "result.json").read_text())
    embeddings = root / "corpus" / "embeddings"
    every = -(-args.recgpt_steps // args.recgpt_checkpoints)  # the last checkpoint is always step recgpt_steps
    common = [f"data.datasets=[{dataset}]", f"data.train_split={protocol}",
              "data.prepared_root=outputs/prepared", f"data.corpus_dir={root / 'corpus'}", "data.heldout_users=0.05",
              f"data.train_users={args.recgpt_train_users}", f"data.seed={args.seeds[0]}",
              f"train.seed={args.seeds[0]}",
              f"embed.cache_dir={args.embed_cache}", f"embed.output_dir={embeddings}",
              f"run.output_root={root / 'ckpt'}", "run.name=run",
              f"train.max_steps={args.recgpt_steps}", f"train.eval_every={every}", f"train.save_every={every}",
              f"train.keep_last={args.recgpt_checkpoints}", "eval.select_by=loss"]  # chosen in-domain, held-out loss
    if variant in FOUNDATION_VARIANTS:
        if not args.foundation:
            raise SystemExit(f"in_domain: --recgpt {variant} needs --foundation DIR (an exported model)")
        foundation = Path(args.foundation)
        common = ["--config", args.foundation_config, *common, f"tokenizer.output_dir={foundation / 'tokenizer'}",
                  f"train.codes_path={embeddings / 'codes.safetensors'}",
                  f"train.warmup_steps={max(1, args.recgpt_steps // 10)}"]
        common += [f"train.init_from={foundation}"]  # scratch: the foundation's architecture, fresh weights
        common += [f"train.lr={args.finetune_lr}"] if variant == "finetune" else ["train.init_weights=random"]
        codes = (["tokenize", "assign"], ["--embeddings", str(embeddings)])
    else:
        common = ["--config", "configs/tiny.yaml", *common, f"tokenizer.output_dir={root / 'tokenizer'}",
                  *RECGPT_VARIANTS[variant]]
        codes = (["tokenize", "fit"], [])
    best = root / "ckpt" / "run" / "best"
    stages = [(["corpus"], []), (["tokenize", "embed"], []), codes, (["pretrain"], []),
              (["eval"], ["--ckpt", str(best.parent)])]
    # a foundation with a dense head: hybrid weights fitted on the split's validation users, then the test users
    hybrid = variant in FOUNDATION_VARIANTS and json.loads((foundation / "config.json").read_text())["model"]["dense"]
    if protocol == "loo" and not hybrid:
        stages.append((["predict"], ["--dataset", dataset, f"predict.model_dir={best}", "predict.max_users=null",
                                     f"predict.output_dir={root / 'predict'}", "predict.allow_history=false",
                                     "predict.ks=[1,5,10,20]"]))
    trained = root / "train.json"  # the trained model survives an interrupted ranking
    seconds = json.loads(trained.read_text()) if trained.is_file() and not args.rerun else {}
    for words, extra in stages:
        if " ".join(words) in seconds:
            continue
        start = time.time()
        subprocess.run([sys.executable, "-m", "recgpt.cli", *words, *common, *extra], check=True)
        seconds[" ".join(words)] = round(time.time() - start, 1)
        if words == ["eval"]:
            trained.write_text(json.dumps(seconds, indent=2))
    if protocol == "loo" and hybrid:
        start = time.time()
        result = rank_on_split(row, best, dataset, "loo", args)
        seconds["rank"] = round(time.time() - start, 1)
    elif protocol == "loo":
        result = {"methods": {row: json.loads((root / "predict" / "metrics.json").read_text())["methods"]["model"]}}
    else:
        start = time.time()
        result = rank_on_split(row, best, dataset, "horizon", args, bool(hybrid))
        seconds["rank"] = round(time.time() - start, 1)
    chosen = json.loads((best.parent / SELECTION).read_text())["best"]  # recgpt eval's choice
    result.update({"seconds": {"train": seconds["pretrain"]}, "stage_seconds": seconds, "checkpoint": chosen})
    (root / "result.json").write_text(json.dumps(result, indent=2))
    return result


def rank_on_split(row, best: Path, dataset, protocol, args, hybrid=False) -> dict:
    """The exported model on the baselines' split. next-10: the test half, temperatures chosen on the valid half
    (a dense-head model: hybrid weights first fitted on the valid half's next items); LOO (a dense-head model):
    hybrid weights fitted on the validation users, then the test users."""
    from recgpt.baselines.data import load_split
    from recgpt.baselines.exported import evaluate_exported
    from recgpt.baselines.exported_hybrid import evaluate_hybrid_loo, fit_and_store
    from recgpt.data import load_prepared
    from recgpt.predict.run import resolve_dataset

    strategies = args.recgpt_strategies
    temps = "[" + ",".join(str(t) for t in args.temperatures) + "]"
    ks = "[1,5,10]" if protocol == "horizon" else "[1,5,10,20]"
    cfg = load_config(args.config, [f"baseline.dataset={dataset}", f"baseline.protocol={protocol}", f"baseline.ks={ks}",
                                    f"baseline.strategies=[{','.join(strategies)}]", f"baseline.temperatures={temps}",
                                    f"embed.cache_dir={args.embed_cache}", *args.overrides])
    split = load_split(cfg.baseline, cfg.data)
    prepared = load_prepared(resolve_dataset(dataset, cfg.data))
    if protocol == "loo":
        return evaluate_hybrid_loo(row, best, prepared, split, cfg.baseline, cfg.embed)
    fit = fit_and_store(best, prepared, split, cfg.baseline, cfg.embed)[1] if hybrid else None
    return {**evaluate_exported(row, best, prepared, split, cfg.baseline, cfg.embed), "score_fit": fit}


def on_disk(dataset, out: Path) -> dict:
    """{(row, protocol): result} of every report already under <out>/<dataset>-<protocol>/<row>/."""
    results = {}
    for name in ROWS:
        for protocol in ("loo", "horizon"):
            folder = out / f"{dataset}-{protocol}" / name
            for report in (folder / "result.json", folder / "metrics.json"):
                if report.is_file():
                    results[(name, protocol)] = json.loads(report.read_text())
                    break
    return results


def cell(value) -> str:
    return "" if value is None else f"{value:.4f}"


def table(dataset: str, results: dict) -> str:
    head = ["model", "LOO HR@10", "LOO NDCG@10"] + [f"next-10 {s} NDCG@10 / R@10" for s in STRATEGIES] + \
        ["next-10 exact hit@10 of 1st target", "train s (LOO / next-10)"]
    lines = [f"### {dataset}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in ROWS:
        loo, hor = results.get((name, "loo")), results.get((name, "horizon"))
        if loo is None and hor is None:
            lines.append(f"| {name} | not run |" + " |" * (len(head) - 2))
            continue
        row = [name]
        m = loo["methods"][name] if loo else {}
        row += [cell(m.get("HR@10")), cell(m.get("NDCG@10"))]
        for s in STRATEGIES:
            key = name if s == "exact" else f"{name}-{s}"
            hm = hor["methods"].get(key) if hor else None
            row.append(f"{hm['NDCG@10']:.4f} / {hm['Recall@10']:.4f}" if hm else "")
        first = hor["by_position"][name]["10"][0] if hor and hor.get("by_position") else None
        row.append(cell(first))
        row.append(" / ".join(f"{r['seconds']['train']:.0f}" if r else "-" for r in (loo, hor)))
        lines.append("| " + " | ".join(row) + " |")
        for part, pm in loo["methods"].items() if loo else ():  # a hybrid model's components, scored alone (LOO)
            if part.startswith(f"{name}["):
                lines.append(f"| {part} | {cell(pm.get('HR@10'))} | {cell(pm.get('NDCG@10'))} |" + " |" * (len(head) - 3))
    return "\n".join(lines) + "\n"


def mean_sd(values) -> str:
    import numpy as np

    return f"{np.mean(values):.4f} ± {np.std(values, ddof=1) if len(values) > 1 else 0.0:.4f}"


def mfgan_table(dataset: str, runs: list) -> str:
    """MFGAN against its own pretrained generator (same state before the adversarial rounds), mean ± sd over
    seeds: full-ranking LOO and the 100-sampled-negatives protocol (history excluded from both)."""
    head = ["model", "full HR@10", "full NDCG@10", "100-neg HR@10", "100-neg NDCG@10", "valid NDCG@10"]
    lines = [f"### {dataset}: mfgan vs its generator ({len(runs)} seeds, mean ± sd)", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    ablations = [m for m in runs[0]["methods"] if m.startswith("mfgan-") and m != "mfgan-generator"]
    for method in ["mfgan-generator", "mfgan", *ablations]:
        present = [r for r in runs if method in r["methods"]]  # ablations may run on some seeds only
        full = [r["methods"][method] for r in present]
        sampled = [r["sampled_negatives"]["methods"][method] for r in present]
        fit = [r["fit"]["adversarial"] if method == "mfgan" else r["fit"]["ablations"].get(method[6:]) for r in present]
        valid = [r["fit"]["adversarial"]["pretrained_valid_ndcg@10"] for r in present] if method == "mfgan-generator" \
            else [f["best_valid_ndcg@10"] for f in fit]
        label = f"{method} ({fit[0]['reward']}{', pg_weight 0' if method == 'mfgan-mle' else ''})" if fit[0] else method
        lines.append("| " + " | ".join([f"{label}, {len(present)} seeds"] + [mean_sd([m[key] for m in ms]) for ms, key in (
            (full, "HR@10"), (full, "NDCG@10"), (sampled, "HR@10"), (sampled, "NDCG@10"))] + [mean_sd(valid)]) + " |")
    delta = [r["methods"]["mfgan"]["NDCG@10"] - r["methods"]["mfgan-generator"]["NDCG@10"] for r in runs]
    lines.append(f"\nfull-ranking NDCG@10 of mfgan minus its generator per seed: "
                 f"{', '.join(f'{d:+.4f}' for d in delta)} (mean {mean_sd(delta)})")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["ml-100k", "amazon_scientific", "yelp", "steam"])
    parser.add_argument("--models", nargs="+", default=TRAINED, choices=TRAINED + ADVERSARIAL)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0],
                        help="mfgan: one run per seed; the others the first (recgpt's: its user draw, held-out users, "
                             "initialisation and order: data.seed and train.seed)")
    parser.add_argument("--protocols", nargs="+", default=["loo", "horizon"], choices=["loo", "horizon", "cold"])
    parser.add_argument("--max-seconds", type=float, default=120.0, help="training wall-clock cap per model and split")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--temperatures", type=float, nargs="+", default=[0.7, 1.0])
    parser.add_argument("--recgpt", nargs="*", default=[], choices=[*RECGPT_VARIANTS, *FOUNDATION_VARIANTS],
                        help="also train recgpt / TIGER / fine-tuned recgpt in-domain with the recgpt CLI")
    parser.add_argument("--foundation", help="exported foundation model (ckpt/<run>/best) for finetune / scratch")
    parser.add_argument("--foundation-config", default="configs/foundation.yaml",
                        help="config of finetune / scratch (training settings and scratch's lr; both take the foundation's architecture)")
    # 3e-3 over 1e-3: lower held-out-user loss on both ml-100k and amazon_scientific at 120 / 80 steps
    parser.add_argument("--finetune-lr", type=float, default=3e-3, help="train.lr of finetune")
    parser.add_argument("--recgpt-steps", type=int, default=300)
    parser.add_argument("--recgpt-checkpoints", type=int, default=1,
                        help="checkpoints kept over --recgpt-steps; the one with the lowest held-out loss is scored")
    parser.add_argument("--recgpt-train-users", type=float, default=1.0,
                        help="seeded share of the split's users the --recgpt models train on (data.train_users)")
    parser.add_argument("--recgpt-protocols", nargs="+", default=["loo"], choices=["loo", "horizon"],
                        help="splits the --recgpt models are trained on (next-10 ranked like the baselines)")
    parser.add_argument("--recgpt-strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    parser.add_argument("--embed-cache", default="outputs/embed_cache", help="embed.cache_dir (shared MiniLM cache)")
    parser.add_argument("--config", default=None)
    parser.add_argument("--out", default="outputs/bench/in_domain")
    parser.add_argument("--rerun", action="store_true", help="retrain models whose report already exists")
    parser.add_argument("--rerank", action="store_true",
                        help="score the recgpt models already trained again (a new fit and ranking), no retraining")
    parser.add_argument("--table-only", action="store_true", help="tables of the reports on disk; train nothing")
    parser.add_argument("overrides", nargs="*", help="baseline.key=value for every model")
    args = parser.parse_args(argv)
    if args.recgpt_checkpoints < 1:
        parser.error(f"--recgpt-checkpoints must be >= 1, got {args.recgpt_checkpoints}")
    try:  # the config's own check of data.train_users, before the folder is claimed
        load_config(None, [f"data.train_users={args.recgpt_train_users}"])
    except ConfigError as err:
        parser.error(f"--recgpt-train-users: {err}")
    out = Path(args.out)
    if not args.table_only:
        claim_until_exit(out)  # a folder of this bench's (or a new one), one run at a time
    tables = []
    for dataset in args.datasets:
        if args.table_only:
            results = on_disk(dataset, out)
        else:  # the reports already in the folder stay in its table beside the ones this run adds
            results = {**on_disk(dataset, out), **{(n, p): run_one(n, dataset, p, args, out, args.seeds[0])
                                                   for n in args.models for p in args.protocols}}
            for variant in args.recgpt:
                for protocol in args.recgpt_protocols:
                    results[(FOUNDATION_VARIANTS.get(variant, variant), protocol)] = \
                        run_recgpt(variant, dataset, protocol, args, out)
        tables.append(table(dataset, results))
        if "mfgan" in args.models:
            tables.append(mfgan_table(dataset, [run_one("mfgan", dataset, "loo", args, out, s) for s in args.seeds]))
        (out / "in_domain.md").write_text("\n".join(tables))
        print(tables[-1], flush=True)
    from bench.report import write_table

    write_table(f"{out.name}/{'+'.join(args.datasets)}", "\n".join(tables))
    return 0


if __name__ == "__main__":
    sys.exit(main())
