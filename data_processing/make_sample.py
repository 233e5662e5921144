"""Build the bundled real sample under data/sample/ from the shared datasets (seeded, reproducible).

Usage: python data_processing/make_sample.py [--out data/sample] [data.raw_root=../shared/data] [data.seed=0]
(recgpt.data.sample says how users and items are drawn.)
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from recgpt.config import config_from_argv  # noqa: E402
from recgpt.data.sample import write_sample  # noqa: E402
from recgpt.errors import run_command  # noqa: E402


def main(argv=None) -> int:
    cfg, args = config_from_argv(argv, __doc__.splitlines()[0],
                                 extra=lambda p: p.add_argument("--out", default="data/sample"))
    size = write_sample(cfg.data.raw_root, args.out, cfg.data.seed)
    print(f"sample written to {args.out}: {size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(run_command("make_sample", main, sys.argv[1:]))
