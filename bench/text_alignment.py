"""Content kNN with collaboratively aligned text vectors against content kNN, on domains never trained on.

For each held-out target of recgpt.data.mixes.Plan, the adapter of recgpt.tokenizer.align is trained on the
target's largest pretraining mix (every shared domain outside `excluded(plan, target)`: never the target, its
fit domains or a near-duplicate of either); targets with the same mix share one training. After every epoch
(epoch 0 = the untrained adapter, content kNN itself) content kNN NDCG@10 is measured on the target's fit domains
(held-out *source* domains) and the epoch with the best mean is chosen there. Only then is the target read:
content kNN with the MiniLM vectors and with the aligned ones, and popularity, leave-one-out and cold, history
excluded, with the aligned / content kNN ratio and its 95% bootstrap interval over users. Every catalog is centered
on its own mean (label-free) before the adapter and for content kNN, as recgpt's recipes and their content kNN read
item text (AlignConfig.center); the tables of commits before that compared plain, uncentered vectors.

    python bench/text_alignment.py [--prepared outputs/scaling/prepared] [--plan plan.json] [--targets steam,yelp]
        [--max-users 2000] [--hidden 512] [--epochs 4] [--temperature 0.05] [--lr 1e-3] [--name default]
        [--embed-cache outputs/embed_cache]

Every domain must be prepared under --prepared (`recgpt prepare`); item texts are embedded through the embedding
cache, each text once. Each mix's chosen adapters are written to <out>/<name>/<mix>/for-<target>/ (an
artefact: TextAdapter.load), its epochs and fit-domain figures to <out>/<name>/<mix>/train.json; the table goes
to --report.
"""
import argparse
import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path = [str(REPO)] + [p for p in sys.path if Path(p or ".").resolve() != REPO / "bench"]


def knn_ndcg(folder, item_ids, vectors: dict, max_users: int, protocol: str = "loo") -> dict:
    from recgpt.predict.transfer import baselines_eval

    return baselines_eval(folder, item_ids, vectors, protocol, max_users)


def catalog(args, name: str) -> tuple:
    """(item ids, MiniLM unit vectors as float16 [N, D], interactions) of a prepared domain, through the cache."""
    from bench.balance import load_domain

    ids, interactions, _, vectors = load_domain(Path(args.prepared) / name, args.embed_cache, center=False)
    return ids, vectors.numpy().astype("float16"), interactions


def train_mix(args, plan, mix, cfg) -> dict:
    """Train on the mix; per epoch the fit domains' kNN NDCG@10; the adapters of every epoch (state dicts)."""
    import copy

    from recgpt.tokenizer.align import domain_of, train_adapter

    domains = [domain_of(d, *catalog(args, d)) for d in mix.datasets]
    fits = sorted({f for t in mix.serves for f in plan.fit_domains[t]})
    fit_emb = {f: catalog(args, f) for f in fits}
    states, epochs = [], []

    def on_epoch(epoch, adapter, loss):
        scores = {}
        for f, (ids, vectors, _) in fit_emb.items():
            result = knn_ndcg(Path(args.prepared) / f, ids, {"knn": adapter.transform(vectors)}, args.max_users)
            scores[f] = result["methods"]["knn"]["NDCG@10"]
        states.append(copy.deepcopy(adapter.state_dict()))
        epochs.append({"epoch": epoch, "loss": round(loss, 4), "fit_ndcg": scores})
        print(f"  {mix.name} epoch {epoch}: loss {loss:.4f} fit-domain kNN NDCG@10 {scores}", flush=True)

    train_adapter(domains, cfg, on_epoch)
    pairs = {d.name: int(len(d.pairs)) for d in domains}
    return {"mix": mix.name, "datasets": list(mix.datasets), "pairs": pairs, "epochs": epochs, "states": states}


def score_target(args, plan, cfg, trained: dict, target: str, root: Path) -> dict:
    from recgpt.predict.metrics import bootstrap_ratio
    from recgpt.tokenizer.align import TextAdapter

    fits = plan.fit_domains[target]
    mean = [sum(e["fit_ndcg"][f] for f in fits) / len(fits) for e in trained["epochs"]]
    best = max(range(len(mean)), key=lambda i: (mean[i], -i))  # ties: the earlier epoch (epoch 0: content kNN)
    adapter, untrained = TextAdapter(args.dim, args.hidden, cfg.center), TextAdapter(args.dim, args.hidden, cfg.center)
    adapter.load_state_dict(trained["states"][best])
    adapter.eval().save(root / f"for-{target}", {"trained_on": trained["datasets"], "epoch": best,
                                                 "chosen_on": fits, "settings": vars(args)})
    last = TextAdapter(args.dim, args.hidden, cfg.center)  # the fully trained adapter, shown beside the chosen one
    last.load_state_dict(trained["states"][-1])  # (not chosen on the target: what training alone gives there)
    ids, raw, _ = catalog(args, target)
    vectors = {"content_knn": untrained.eval().transform(raw), "aligned_knn": adapter.transform(raw),
               "last_epoch_knn": last.eval().transform(raw)}  # content kNN: the catalog as the adapter's epoch 0
    out = {"target": target, "mix": trained["mix"], "epoch": best, "chosen_on": fits, "protocols": {}}
    for protocol in ("loo", "cold"):
        result = knn_ndcg(Path(args.prepared) / target, ids, vectors, args.max_users, protocol)
        per = {m: result["per_user"][m]["NDCG"] for m in result["per_user"]}
        out["protocols"][protocol] = {
            "users": result["users"], "ndcg": {m: v["NDCG@10"] for m, v in result["methods"].items()},
            "aligned_over_knn": [round(x, 3) for x in bootstrap_ratio(per["aligned_knn"], per["content_knn"])],
            "last_over_knn": [round(x, 3) for x in bootstrap_ratio(per["last_epoch_knn"], per["content_knn"])]}
    return out


def table(results: list, command: list) -> str:
    from bench.report import header  # the command and the commit, marked when it has uncommitted changes

    lines = ["# Content kNN with collaboratively aligned text vectors (bench/text_alignment.py)", "",
             header(command), "NDCG@10, history excluded; the epoch is "
             "chosen on the fit domains (epoch 0 = content kNN, each catalog centered on its own mean), never on "
             "the target.", "",
             "The last two columns show the adapter after the last epoch on the target, for information only.", "",
             "| target | protocol | users | epoch (chosen on) | content kNN | aligned kNN | aligned / content kNN "
             "[95%] | popularity | last epoch kNN | last / content kNN [95%] |", "|---" * 10 + "|"]
    for r in results:
        for protocol, p in r["protocols"].items():
            (ratio, lo, hi), (last, llo, lhi) = p["aligned_over_knn"], p["last_over_knn"]
            lines.append(f"| {r['target']} | {protocol} | {p['users']} | {r['epoch']} ({', '.join(r['chosen_on'])}) | "
                         f"{p['ndcg']['content_knn']:.4f} | {p['ndcg']['aligned_knn']:.4f} | {ratio:.3f} [{lo:.3f}, "
                         f"{hi:.3f}] | {p['ndcg']['popularity']:.4f} | {p['ndcg']['last_epoch_knn']:.4f} | "
                         f"{last:.3f} [{llo:.3f}, {lhi:.3f}] |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prepared", default="outputs/scaling/prepared")
    parser.add_argument("--plan", help="json with recgpt.data.mixes.Plan fields (default: the shared-data plan)")
    parser.add_argument("--targets", help="comma-separated targets (default: all of the plan)")
    parser.add_argument("--max-users", type=int, default=2000)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--temperature", type=float, default=0.05)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--max-pairs", type=int, default=200_000, help="pairs per domain and epoch")
    parser.add_argument("--name", default="default")
    parser.add_argument("--out", default="outputs/text_alignment")
    parser.add_argument("--report", default="docs/benchmarks/text_alignment.md")
    parser.add_argument("--embed-cache", default="outputs/embed_cache", help="the embedding cache (embed.cache_dir)")
    args = parser.parse_args(argv)
    import torch

    from recgpt.data.mixes import load_plan
    from recgpt.tokenizer.align import AlignConfig

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    asked = args.targets.split(",") if args.targets else []
    try:
        plan, mixes = load_plan(args.plan, targets=asked)
    except ValueError as e:  # exit 2 with one line naming the plan or the unknown targets
        parser.error(str(e))
    targets = asked or list(plan.targets)
    cfg = AlignConfig(hidden=args.hidden, epochs=args.epochs, temperature=args.temperature, lr=args.lr,
                      max_pairs_per_domain=args.max_pairs)
    largest = {}
    for mix in mixes:  # sorted by size: the last mix serving a target is its largest
        for t in mix.serves:
            largest[t] = mix
    results = []
    for mix in dict.fromkeys(largest[t] for t in targets):
        print(f"{mix.name}: {len(mix.datasets)} domains", flush=True)
        trained = train_mix(args, plan, mix, cfg)
        args.dim = int(next(iter(trained["states"][0].values())).shape[1])
        root = Path(args.out) / args.name / mix.name
        root.mkdir(parents=True, exist_ok=True)
        (root / "train.json").write_text(json.dumps({k: v for k, v in trained.items() if k != "states"}, indent=1))
        results += [score_target(args, plan, cfg, trained, t, root) for t in targets if t in mix.serves]
    text = table(results, [__file__, *argv])
    Path(args.report).parent.mkdir(parents=True, exist_ok=True)
    Path(args.report).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
