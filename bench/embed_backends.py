"""Embedding backends on the CPU: throughput of the ONNX backends against torch fp32 on the same texts in one
run, and content-kNN quality on amazon_scientific with each backend's embeddings.

Throughput: the first --texts item texts, in blocks encoded by each backend in turn (alternating which goes
first: the CPU is shared), model loading and a warm-up excluded; texts/s and the ratio to torch fp32.
Quality: every amazon_scientific item embedded by each backend (the throughput vectors are reused), content kNN
(recgpt.predict.baselines.content_knn, history excluded) on leave-one-out test cases
(recgpt.predict.protocols) of up to --max-users users: HR@10, NDCG@10, the NDCG change against torch fp32
(goal: within 1%) and the cosine of each vector to its torch fp32 twin.

    python bench/embed_backends.py [--texts 2000] [--max-users 2000] [--backends onnx-int8[,onnx]] [--max-items N]
        [--workdir DIR] [key=value ...]       # e.g. embed.batch_size=64
"""
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])  # the repo, not bench/

DATASET = "amazon_scientific"


def knn_quality(folder: Path, item_ids: list, vectors, max_users: int) -> dict:
    import numpy as np
    import torch

    from recgpt.predict.baselines import content_knn
    from recgpt.predict.catalog import Catalog
    from recgpt.predict.protocols import build_test_cases
    from recgpt.predict.metrics import per_user
    from recgpt.predict.transfer import read_interactions

    catalog = Catalog.from_codes(item_ids, np.arange(len(item_ids))[:, None], [len(item_ids)])
    cases = build_test_cases(read_interactions(folder), catalog, "loo", 1, 0, max_users)
    lists = content_knn(cases.histories, torch.from_numpy(vectors.astype(np.float32)), 10, allow_history=False)
    metrics = per_user(lists, cases.targets, 10)
    return {"users": len(cases), "HR@10": float(metrics["HR"].mean()), "NDCG@10": float(metrics["NDCG"].mean())}


def throughput(texts: list, cfgs: dict, blocks: int = 4) -> tuple[dict, dict]:
    """({backend: texts/s}, {backend: float32 vectors of `texts`})."""
    import numpy as np

    from recgpt.tokenizer.embed import encode, load_encoder

    encoders = {b: load_encoder(c.model, c.device, c.dtype, c.cache_dir, b) for b, c in cfgs.items()}
    for b, enc in encoders.items():
        encode(enc, texts[:32], cfgs[b].batch_size)  # warm-up
    seconds, parts = {b: 0.0 for b in cfgs}, {b: [] for b in cfgs}
    size = -(-len(texts) // blocks)
    for i, start in enumerate(range(0, len(texts), size)):
        order = list(cfgs) if i % 2 == 0 else list(cfgs)[::-1]
        for b in order:
            began = time.perf_counter()
            parts[b].append(encode(encoders[b], texts[start:start + size], cfgs[b].batch_size))
            seconds[b] += time.perf_counter() - began
    return {b: len(texts) / s for b, s in seconds.items()}, {b: np.concatenate(p) for b, p in parts.items()}


def main(argv=None) -> int:
    import numpy as np

    from recgpt.config import config_from_argv, load_dataset_spec
    from recgpt.data import load_prepared, prepare_dataset
    from recgpt.tokenizer.cache import text_sha
    from recgpt.tokenizer.embed import cache_for, embed_items

    def extra(p):
        p.add_argument("--texts", type=int, default=2000)
        p.add_argument("--max-users", type=int, default=2000)
        p.add_argument("--backends", default="onnx-int8")
        p.add_argument("--max-items", type=int, default=None, help="a smaller catalog: the first N items")
        p.add_argument("--workdir", default=None)

    cfg, args = config_from_argv(list(sys.argv[1:] if argv is None else argv), __doc__.splitlines()[0], extra)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="recgpt-bench-embed-"))
    folder = work / "prepared" / DATASET
    if not (folder / "manifest.json").is_file():
        prepare_dataset(load_dataset_spec(DATASET), cfg.data.raw_root, folder)
    items = load_prepared(folder).items
    ids, texts = items["item_id"].astype(str).tolist(), items["text"].fillna("").astype(str).tolist()
    ids, texts = ids[:args.max_items], texts[:args.max_items]  # users with a target outside it are left out
    base = replace(cfg.embed, dtype="float32", device="cpu", cache_dir=str(work / "cache"))
    cfgs = {b: replace(base, backend=b) for b in ["torch", *args.backends.split(",")]}
    sample = list(dict.fromkeys(texts))[:args.texts]  # distinct texts, as embed_texts encodes them
    rates, vectors = throughput(sample, cfgs)
    for b, c in cfgs.items():  # the timed vectors go into each backend's cache; the rest is embedded below
        cache = cache_for(c)
        new = [i for i, t in enumerate(sample) if text_sha(t) not in cache]
        if new:
            cache.add([text_sha(sample[i]) for i in new], vectors[b][new])
    print(f"{len(sample)} {DATASET} texts (mean {np.mean([len(t) for t in sample]):.0f} chars), "
          f"batch {base.batch_size}, torch threads {__import__('torch').get_num_threads()}")
    reference, rows = None, []
    for b, c in cfgs.items():
        emb = embed_items(ids, texts, c).vectors.astype(np.float32)
        reference = emb if reference is None else reference
        cos = (emb * reference).sum(1) / np.linalg.norm(emb, axis=1) / np.linalg.norm(reference, axis=1)
        rows.append((b, rates[b], knn_quality(folder, ids, emb, args.max_users), cos))
    ref_rate, ref_ndcg = rows[0][1], rows[0][2]["NDCG@10"]
    print("| backend | texts/s | x torch fp32 | HR@10 | NDCG@10 | NDCG vs fp32 | cosine to fp32 min / mean |")
    print("|---|---|---|---|---|---|---|")
    for b, rate, q, cos in rows:
        print(f"| {b} | {rate:.1f} | {rate / ref_rate:.2f} | {q['HR@10']:.4f} | {q['NDCG@10']:.4f} | "
              f"{q['NDCG@10'] / ref_ndcg - 1:+.2%} | {cos.min():.4f} / {cos.mean():.4f} |")
    print(f"content kNN on {DATASET}: {len(ids)} items, {rows[0][2]['users']} leave-one-out users; "
          f"work folder {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
