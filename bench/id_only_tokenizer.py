"""Id-only item codes on the multi-behaviour datasets (no item text): co-occurrence SVD embeddings (+ an
optional hashed-id part) -> RQ-KMeans, measured like any tokenizer (collisions before the disambiguation
slot, items beyond its capacity, slot usage and entropy) and by whether the codes carry the co-occurrence:
the share of pairs of consecutive distinct items of one session that share their first code, against the
same share with the second items shuffled (chance), and for Taobao the share of items whose first code's
most common category is their own.

python bench/id_only_tokenizer.py [--variant cooc|cooc+id|id] [--context session|user] [--dim 64]
    [--id-dims 16] [--id-weight 0.5] [--codebook 256] [--levels 3] [--dedup 1024]

Co-occurrence is counted on training interactions only: for Taobao every event but each user's last
purchase (the next-purchase target), for RetailRocket every event (its targets are a separate file).
"""
import argparse
import json
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from recgpt.config import load_dataset_spec  # noqa: E402
from recgpt.config.data import DataConfig  # noqa: E402
from recgpt.config.tokenizer import TokenizerConfig  # noqa: E402
from recgpt.data import load_prepared, prepare_dataset  # noqa: E402
from recgpt.data.sessions import session_ids  # noqa: E402
from recgpt.predict.behavior_eval import next_behavior_cases  # noqa: E402
from recgpt.tokenizer.cooccurrence import cooccurrence_embeddings, hashed_id_vectors  # noqa: E402
from recgpt.tokenizer.embed import Embeddings  # noqa: E402
from recgpt.tokenizer.fit import fit_tokenizer  # noqa: E402
from recgpt.io import claim_until_exit  # noqa: E402


def training_rows(prepared) -> pd.DataFrame:
    if prepared.targets is not None:
        return prepared.interactions
    cases, _ = next_behavior_cases(prepared.interactions)
    target_rows = {h[-1] + 1 for h in cases["history"]}  # a case's target is the row right after its history
    return prepared.interactions.drop(index=sorted(target_rows))


def session_pairs(rows: pd.DataFrame, index: pd.Index, gap_minutes: float) -> tuple[np.ndarray, np.ndarray]:
    sessions = session_ids(rows["user_id"], rows["timestamp"], gap_minutes * 60)
    key = rows["user_id"].astype(str).to_numpy() + "#" + sessions.astype(str)
    items = index.get_indexer(rows["item_id"].astype(str))
    same = (key[1:] == key[:-1]) & (items[1:] != items[:-1])
    return items[:-1][same], items[1:][same]


def agreement(first: np.ndarray, a: np.ndarray, b: np.ndarray, seed: int = 0) -> dict:
    shuffled = np.random.default_rng(seed).permutation(b)
    return {"pairs": len(a), "same_first_code": float((first[a] == first[b]).mean()),
            "chance": float((first[a] == first[shuffled]).mean())}


def category_purity(first: np.ndarray, categories: pd.Series) -> float:
    frame = pd.DataFrame({"code": first, "category": categories.to_numpy()})
    majority = frame.groupby("code")["category"].agg(lambda s: s.value_counts().index[0])
    return float((frame["code"].map(majority) == frame["category"]).mean())


def embeddings(variant: str, rows, items, feature, args) -> Embeddings:
    ids = items["item_id"].astype(str).tolist()
    if variant == "id":
        return Embeddings(ids, hashed_id_vectors(ids, args.dim).astype(np.float16), f"hashed-id{args.dim}")
    features = items.set_index("item_id")[feature] if feature else None
    return cooccurrence_embeddings(rows, ids, dim=args.dim, context=args.context, gap_minutes=args.gap_minutes,
                                   features=features, feature_name=feature or "",
                                   id_dims=args.id_dims if variant == "cooc+id" else 0, id_weight=args.id_weight)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--variant", default="cooc+id", choices=["cooc", "cooc+id", "id"])
    p.add_argument("--context", default="session")
    p.add_argument("--gap-minutes", type=float, default=DataConfig().session_gap_minutes)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--id-dims", type=int, default=16)
    p.add_argument("--id-weight", type=float, default=0.5)
    p.add_argument("--codebook", type=int, default=256)
    p.add_argument("--levels", type=int, default=3)
    p.add_argument("--dedup", type=int, default=1024)
    p.add_argument("--raw-root", default="../shared/data")
    p.add_argument("--out", default="outputs/bench/id_only")
    args = p.parse_args()
    claim_until_exit(args.out)  # a folder of this bench's (or a new one), one run at a time
    summary = {}
    for name, feature in (("taobao_userbehavior", "category"), ("retailrocket_mb", None)):
        prepared = load_prepared(prepare_dataset(load_dataset_spec(name), args.raw_root, f"{args.out}/{name}"))
        items, rows = prepared.items, training_rows(prepared)
        started = time.perf_counter()
        emb = embeddings(args.variant, rows, items, feature, args)
        cfg = TokenizerConfig(kind="rqkmeans", n_codes=args.levels, codebook_size=args.codebook,
                              dedup_size=args.dedup, kmeans_iters=25, heldout=0.0,
                              standardize=args.variant == "cooc")
        tok = fit_tokenizer(emb, cfg, progress=False)
        report, first = tok.report, tok.encode(emb)[:, 0]
        a, b = session_pairs(rows, pd.Index(items["item_id"].astype(str)), args.gap_minutes)
        out = {"embed_model": emb.model, "items": len(items), "no_context": emb.n_empty_text,
               "collision_rate_before": round(report["collisions_before"]["collision_rate"], 4),
               "max_items_per_tuple": report["collisions_before"]["max_items_per_tuple"],
               "items_over_dedup": report["items_over_dedup_capacity"],
               "equal_embeddings": len(items) - report["n_unique_embeddings"],
               "slots_used_entropy_norm": [(s["used"], round(s["entropy_norm"], 3)) for s in report["slots"]],
               "session_pairs": agreement(first, a, b), "seconds": round(time.perf_counter() - started)}
        if feature:
            out["first_code_category_purity"] = category_purity(first, items[feature])
        summary[name] = out
        print(name, json.dumps(out), flush=True)
    print(json.dumps({"args": vars(args), **summary}, indent=1))



if __name__ == "__main__":
    main()
