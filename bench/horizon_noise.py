"""Gumbel noise of the sampled horizon strategies (sample / rra / ra): the batched draw of
recgpt.predict.horizon.gumbel_noise against the per-row reference, same outputs, one thread.

    python bench/horizon_noise.py [--rows 2048] [--items 1682 4344] [--repeats 3]
"""
import argparse
import sys
import time
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])  # the repo root, not bench/

import torch  # noqa: E402

from recgpt.predict.horizon import gumbel_noise, gumbel_noise_reference  # noqa: E402


def best_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2048, help="rows of one rollout step (users x samples)")
    parser.add_argument("--items", type=int, nargs="+", default=[1682, 4344])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    keys = range(args.rows)
    for n_items in args.items:
        assert torch.equal(gumbel_noise(keys, 1, n_items, 0), gumbel_noise_reference(keys, 1, n_items, 0))
        ref = best_seconds(lambda: gumbel_noise_reference(keys, 1, n_items, 0), args.repeats)
        fast = best_seconds(lambda: gumbel_noise(keys, 1, n_items, 0), args.repeats)
        print(f"{args.rows} x {n_items}: reference {ref:.3f} s, batched {fast:.3f} s, speed-up x{ref / fast:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
