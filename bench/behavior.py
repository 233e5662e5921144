"""Multi-behaviour in-domain comparison (GAMER's SeqRec setting): does multi-behaviour input help next-purchase
prediction? SASRec+ and the item-code decoder, each with purchases-only input, every event as a plain item,
every event with a behaviour embedding, and that plus target-behaviour conditioning (predict "the next item
the user will buy"), against the rule baselines (recgpt.predict.rules), on one split per dataset
(recgpt.baselines.behavior: next purchase, next event of any behaviour, session-wise next purchase, and
RetailRocket's shipped test.csv). History items may be recommended (re-purchase, cart -> buy).

    OMP_NUM_THREADS=1 python bench/behavior.py --datasets taobao_userbehavior retailrocket_mb --max-seconds 90 \
        [--models sasrec code] [--settings buy all all+behavior all+target] [--out outputs/bench/behavior] \
        [baseline.key=value ...]

The code model's item codes are id-only (recgpt.tokenizer.cooccurrence: co-occurrence SVD [+ category] +
hashed id -> RQ-KMeans 3 x 256 + disambiguation slot), fitted on that setting's own training events only.
Early stopping and every choice: validation = each user's second-to-last purchase. Results are cached per
model under --out; one markdown table per dataset (HR@10 / NDCG@10 per protocol) goes to behavior.md.
"""
import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path[0] = str(Path(__file__).resolve().parents[1])  # the repo root, not bench/
from recgpt.io import claim_until_exit  # noqa: E402

from bench.in_domain import cell  # noqa: E402

# setting -> (training / history input, behaviour input, target conditioning)
SETTINGS = {"buy": ("buy", False, False), "all": ("all", False, False), "all+behavior": ("all", True, False),
            "all+target": ("all", True, True)}
PROTOCOL_NAMES = {"next_buy": "next purchase", "next_any": "next event (any)", "session_buy": "session next purchase",
                  "shipped": "test.csv (CML)"}
KS = (1, 5, 10, 20)
# (setting, reference): every events vs purchases only (GAMER's claim), then what the behaviour embedding and
# the target conditioning add on top of the same events
COMPARISONS = [("all", "buy"), ("all+behavior", "buy"), ("all+target", "buy"), ("all+behavior", "all"),
               ("all+target", "all"), ("all+target", "all+behavior")]
FEATURES = {"taobao_userbehavior": "category"}


def scored(recs, cases, n_items: int) -> dict:
    from recgpt.predict.metrics import coverage, ranking_metrics
    from recgpt.predict.metrics import per_user

    return {**ranking_metrics(recs, cases.targets, KS), **coverage(recs, n_items, KS), "users": len(cases),
            "empty_histories": cases.counts.get("empty_histories", 0),
            "per_user_ndcg@10": per_user(recs, cases.targets, 10)["NDCG"].tolist()}


def rule_results(split) -> dict:
    """{rule: {protocol: metrics}} of recgpt.predict.rules (histories of every behaviour; popularity of the
    purchases in the histories being scored, as bench/behavior_rules.py)."""
    from recgpt.baselines.behavior import unpack
    from recgpt.data.behavior import BEHAVIOR_NAMES
    from recgpt.predict import rules

    out, k = {}, max(KS)
    for protocol, cases in split.tests.items():
        pairs = [[unpack(e) for e in h] for h in cases.histories]
        items = [[i for i, _ in h] for h in pairs]
        behaviors = [[BEHAVIOR_NAMES[b] for _, b in h] for h in pairs]
        ranking = rules.purchase_ranking(items, behaviors)
        lists = {"rule: repeat cart/fav": rules.repeat_recent(items, behaviors, k),
                 "rule: repeat any (GAMER)": rules.repeat_recent(items, behaviors, k, source=None),
                 "rule: popular purchases": rules.popular_purchases(items, behaviors, k, ranking=ranking),
                 "rule: repeat cart/fav, then popular": rules.repeat_then_popular(items, behaviors, k, ranking=ranking)}
        for name, recs in lists.items():
            out.setdefault(name, {})[protocol] = scored(recs, cases, split.n_items)
    return out


def item_codes(prepared, split, folder: Path):
    """Id-only codes of the catalog from this split's training events (cached as codes.safetensors)."""
    import torch

    from recgpt.config.tokenizer import TokenizerConfig
    from recgpt.tokenizer import load_item_codes
    from recgpt.tokenizer.base import save_item_codes
    from recgpt.tokenizer.cooccurrence import cooccurrence_embeddings
    from recgpt.tokenizer.fit import fit_tokenizer

    path = folder / "codes.safetensors"
    if not path.is_file():
        rows = prepared.interactions.reset_index(drop=True).iloc[sorted(split.train_rows)]
        feature = FEATURES.get(prepared.name)
        features = prepared.items.set_index("item_id")[feature] if feature else None
        emb = cooccurrence_embeddings(rows, split.item_ids, dim=64, features=features, feature_name=feature or "",
                                      id_dims=16, id_weight=0.5)
        cfg = TokenizerConfig(kind="rqkmeans", n_codes=3, codebook_size=256, dedup_size=1024, kmeans_iters=15,
                              heldout=0.0, standardize=False)
        tok = fit_tokenizer(emb, cfg, progress=False)
        folder.mkdir(parents=True, exist_ok=True)
        save_item_codes(path, split.item_ids, tok.assign(emb, item_ids=split.item_ids))
        (folder / "slot_vocab_sizes.json").write_text(json.dumps(tok.slot_vocab_sizes))
    ids, codes = load_item_codes(path)
    assert list(ids) == list(split.item_ids), path
    return torch.as_tensor(codes).long(), json.loads((folder / "slot_vocab_sizes.json").read_text())


def run_model(model_name, setting, prepared, split, args, out: Path) -> dict:
    from recgpt.baselines.behavior import training_purchase_ranking
    from recgpt.baselines.behavior_models import BehaviorCodeModel, BehaviorSASRec
    from recgpt.config import load_config

    folder = out / prepared.name / f"{model_name}-{setting}"
    if (folder / "metrics.json").is_file() and not args.rerun:
        return json.loads((folder / "metrics.json").read_text())
    if args.cached_only:
        return None
    _, behavior_input, behavior_target = SETTINGS[setting]
    cfg = load_config(None, ["baseline.allow_history=true", f"baseline.max_seconds={args.max_seconds}",
                             *args.overrides]).baseline
    start = time.time()
    if model_name == "sasrec":
        model = BehaviorSASRec(cfg, split.n_items)
    else:
        codes, sizes = item_codes(prepared, split, out / prepared.name / f"codes-{split.input}")
        model = BehaviorCodeModel(cfg, split.n_items, codes, sizes)
    model.configure(behavior_input, behavior_target, fallback=training_purchase_ranking(split))
    model.fit(split)
    result = {"fit": model.fit_log, "seconds": round(time.time() - start, 1), "split": split.counts, "protocols": {}}
    for protocol, cases in split.tests.items():
        if behavior_target and protocol == "next_any":
            continue  # conditioned on a purchase; the next event of any behaviour is another question
        recs = []
        for i in range(0, len(cases), 256):
            recs += model.recommend(cases.histories[i:i + 256], max(KS), cases.user_ids[i:i + 256], True)[0]
        result["protocols"][protocol] = scored(recs, cases, split.n_items)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").write_text(json.dumps(result, indent=1))
    return result


def table(dataset: str, rows: dict, protocols) -> str:
    head = ["method"] + [f"{PROTOCOL_NAMES[p]} HR@10 / NDCG@10" for p in protocols] + ["train s", "epochs / steps"]
    lines = [f"### {dataset}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, (by_protocol, fit) in rows.items():
        cells = [f"{cell(m['HR@10'])} / {cell(m['NDCG@10'])}" if (m := by_protocol.get(p)) else "-" for p in protocols]
        cells += [f"{fit['seconds']:.0f}", f"{len(fit['fit']['epochs'])} / {fit['fit']['steps']}"] if fit else ["", ""]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def claim_table(dataset: str, rows: dict, models, settings, buy_split) -> str:
    """GAMER's claim, per model: NDCG@10 of each setting / its reference (COMPARISONS), with a 95% bootstrap
    interval over users (pairs kept), on the purchase protocols: over all users, and over the users whose
    purchases-only history is not empty (the others get the popularity fallback under purchases-only input)."""
    from recgpt.predict.metrics import bootstrap_ratio

    protocols = [p for p in ("next_buy", "session_buy", "shipped") if any(p in r[0] for r in rows.values())]
    groups = [(p, "all") for p in protocols] + [(p, "with purchases") for p in protocols]
    lines = [f"#### {dataset}: NDCG@10 of a setting / NDCG@10 of a reference setting (95% bootstrap interval)", "",
             "| model: setting / reference | " + " | ".join(f"{PROTOCOL_NAMES[p]}, {who}" for p, who in groups) + " |",
             "|---|" + "---|" * len(groups)]
    pairs = [(a, b) for a, b in COMPARISONS if a in settings and b in settings]
    for model in models:
        for setting, reference in pairs:
            base = rows.get(f"{model}: {reference}", ({}, None))[0]
            mine, cells = rows.get(f"{model}: {setting}", ({}, None))[0], []
            for p, who in groups:
                a, b = (mine.get(p) or {}).get("per_user_ndcg@10"), (base.get(p) or {}).get("per_user_ndcg@10")
                if a is None or b is None:
                    cells.append("-")
                    continue
                keep = np.ones(len(a), bool) if who == "all" else \
                    np.asarray([len(h) > 0 for h in buy_split.tests[p].histories])
                ratio, lo, hi = bootstrap_ratio(np.asarray(a)[keep], np.asarray(b)[keep])
                cells.append(f"{ratio:.2f} [{lo:.2f}, {hi:.2f}] (n={int(keep.sum())})")
            lines.append(f"| {model}: {setting} / {reference} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["taobao_userbehavior", "retailrocket_mb"])
    parser.add_argument("--models", nargs="+", default=["sasrec", "code"], choices=["sasrec", "code"])
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--max-seconds", type=float, default=90.0, help="training wall-clock cap per model")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--gap-minutes", type=float, default=30.0)
    parser.add_argument("--raw-root", default="../shared/data")
    parser.add_argument("--out", default="outputs/bench/behavior")
    parser.add_argument("--rerun", action="store_true", help="retrain models whose metrics already exist")
    parser.add_argument("--cached-only", action="store_true", help="tables of the models already measured only")
    parser.add_argument("overrides", nargs="*", help="baseline.key=value for every model")
    args = parser.parse_args(argv)
    import torch

    from recgpt.baselines.behavior import build_behavior_split
    from recgpt.config import load_dataset_spec
    from recgpt.data import load_prepared, prepare_dataset

    torch.set_num_threads(args.threads)
    out, tables = Path(args.out), []
    claim_until_exit(out)  # a folder of this bench's (or a new one), one run at a time
    for dataset in args.datasets:
        prepared = load_prepared(prepare_dataset(load_dataset_spec(dataset), args.raw_root, out / "prepared" / dataset))
        splits = {name: build_behavior_split(prepared, name, args.gap_minutes) for name in ("all", "buy")}
        protocols = list(splits["all"].tests)
        rows = {name: (res, None) for name, res in rule_results(splits["all"]).items()}
        for model_name in args.models:
            for setting in args.settings:
                result = run_model(model_name, setting, prepared, splits[SETTINGS[setting][0]], args, out)
                if result is None:
                    continue
                rows[f"{model_name}: {setting}"] = (result["protocols"], result)
                print(f"{dataset} {model_name} {setting}: {json.dumps({p: round(m['NDCG@10'], 4) for p, m in result['protocols'].items()})}", flush=True)
        counts = {p: len(c) for p, c in splits["all"].tests.items()}
        tables.append(table(dataset, rows, protocols) + f"\nusers per protocol: {counts}; empty purchases-only "
                      f"histories: {splits['buy'].counts['empty_histories']}\n\n"
                      + claim_table(dataset, rows, args.models, args.settings, splits["buy"]))
        (out / "behavior.md").write_text("\n".join(tables))
        print(tables[-1], flush=True)
    from bench.report import write_table

    write_table(f"{out.name}/{'+'.join(args.datasets)}", "\n".join(tables))
    return 0


if __name__ == "__main__":
    sys.exit(main())
