"""KV-cached rollouts against re-encoding: the horizon strategies (recgpt.predict.horizon) at horizon 10.

Real ml-100k users (time order), each cut to a seeded length in [20, 50] items; the 1,682 ml-100k items with
seeded random codes (3 x 256 + 16) and seeded random unit text vectors (384 wide: the timing does not depend
on their values). Randomly initialised models at CPU size (2 layers x 128): the code recipe (parallel head,
exact scoring), tiger (autoregressive head, trie beam) and text_dense (text input, dense head; its popularity
terms read the ml-100k counts). Each (model, strategy) runs cached and re-encoding alternately `--repeats`
times on the same users; the table gives the median CPU seconds of each (one thread), their ratio (also in wall time) and whether the lists
agree.

    python bench/kv_cache.py [--users 32] [--horizon 10] [--repeats 3] [--strategies greedy beam rra ra]
"""
import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])  # the repo root, not bench/

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from recgpt.model import ItemCodeDecoder, ItemCodeDecoderConfig  # noqa: E402
from recgpt.predict.horizon import recommend_lists  # noqa: E402
from recgpt.predict.scoring import ItemScorer  # noqa: E402
from recgpt.predict.trie import build_trie  # noqa: E402
from bench.report import write_table  # noqa: E402

DATA = Path(os.environ.get("RECGPT_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
SLOTS = [256, 256, 256, 16]
SIZE = dict(n_layers=2, d_model=128, n_heads=4, d_ff=512, dropout=0.0, max_items=64)


def ml100k(users: int, seed: int):
    """(histories as catalog rows, item popularity counts Int[N]) of `users` real users with >= 20 items."""
    inter = pd.read_csv(DATA / "ml-100k" / "ml-100k.inter", sep="\t")
    inter.columns = [c.split(":")[0] for c in inter.columns]
    inter = inter.sort_values(["user_id", "timestamp"], kind="stable")
    items = np.sort(inter["item_id"].unique())
    row = {item: i for i, item in enumerate(items)}
    rng = np.random.default_rng(seed)
    histories = []
    for _, group in inter.groupby("user_id", sort=True):
        if len(group) >= 20 and len(histories) < users:
            histories.append([row[i] for i in group["item_id"].tolist()[: int(rng.integers(20, 51))]])
    counts = np.bincount([row[i] for i in inter["item_id"]], minlength=len(items))
    return histories, torch.as_tensor(counts), len(items)


def scorers(n_items: int, counts, seed: int) -> dict:
    gen = torch.Generator().manual_seed(seed)
    codes = torch.stack([torch.randint(0, v, (n_items,), generator=gen) for v in SLOTS], dim=1)
    text = torch.nn.functional.normalize(torch.randn(n_items, 384, generator=gen), dim=1)
    trie = build_trie(codes, SLOTS)
    out = {}
    for recipe in ("code", "tiger", "text_dense"):
        torch.manual_seed(seed)
        config = ItemCodeDecoderConfig.from_recipe(recipe, SLOTS, embed_dim=384 if recipe == "text_dense" else 0, **SIZE)
        model = ItemCodeDecoder(config).eval()
        out[recipe] = ItemScorer(model, codes, trie, text if recipe == "text_dense" else None, popularity=counts)
    return out


def run(scorer, histories, strategy, horizon, cached):
    """(lists, scores, (CPU seconds, wall seconds)) of one rollout."""
    scorer.kv_cache = cached
    cpu, wall = time.process_time(), time.perf_counter()
    with torch.no_grad():
        recs, scores = recommend_lists(scorer, histories, k=10, strategy=strategy, steps=horizon, beam_size=4,
                                       n_samples=8, allow_history=False)
    return recs, scores, (time.process_time() - cpu, time.perf_counter() - wall)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=32)
    parser.add_argument("--horizon", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--strategies", nargs="+", default=["greedy", "beam", "rra", "ra"])
    parser.add_argument("--models", nargs="+", default=["code", "tiger", "text_dense"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    histories, counts, n_items = ml100k(args.users, args.seed)
    lengths = [len(h) for h in histories]
    print(f"{len(histories)} ml-100k users, history {min(lengths)}-{max(lengths)} items (mean {np.mean(lengths):.1f}), "
          f"{n_items} items, horizon {args.horizon}, 2 x 128, {args.threads} thread(s)", flush=True)
    rows = ["| model | strategy | rows per step | re-encoding CPU s | cached CPU s | ratio (CPU) | ratio (wall) | "
            "same lists | max score diff |", "|---|---|---|---|---|---|---|---|---|"]
    built = scorers(n_items, counts, args.seed)
    for name in args.models:
        scorer = built[name]
        for strategy in args.strategies:
            times, lists = {True: [], False: []}, {}
            for _ in range(args.repeats):  # interleaved: drifts of the shared machine hit both alike
                for cached in (True, False):
                    recs, scores, seconds = run(scorer, histories, strategy, args.horizon, cached)
                    times[cached].append(seconds)
                    lists[cached] = (recs, scores)
            (got, got_scores), (want, want_scores) = lists[True], lists[False]
            same = got == want
            diff = max((abs(a - b) for x, y in zip(got_scores, want_scores) for a, b in zip(x, y)), default=0.0)
            ref, fast = (statistics.median(t[0] for t in times[c]) for c in (False, True))
            wall = statistics.median(t[1] for t in times[False]) / statistics.median(t[1] for t in times[True])
            width = len(histories) * (8 if strategy in ("rra", "ra") else 4 if strategy == "beam" else 1)
            line = (f"| {name} | {strategy} | {width} | {ref:.2f} | {fast:.2f} | {ref / fast:.1f}x | {wall:.1f}x | "
                    f"{'yes' if same else 'NO'} | {diff:.1e} |")
            print(line, flush=True)
            rows.append(line)
    table = "\n".join(rows)
    note = (f"\n\n{len(histories)} real ml-100k users (history {min(lengths)}-{max(lengths)} items), horizon "
            f"{args.horizon}, randomly initialised 2 x 128 models, {args.threads} CPU thread(s); median of "
            f"{args.repeats} interleaved repeats. Ratio = re-encoding seconds / cached seconds of the whole "
            "rollout (scoring the catalog each step included), in the process's CPU time (one thread: its work, "
            "whatever else the machine runs) and in wall time. rra / ra encode each user's history once for its "
            "8 samples (the re-encoding path encodes every sample's history every step). The untrained text_dense "
            "head scores by content and popularity alone (its state-reading parts start at zero), hence its "
            "zero score difference; tests/test_predict_kvcache.py checks a text_dense head whose parts read the "
            "state.")
    write_table("kv_cache", table + note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
