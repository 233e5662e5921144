"""Recommend for a downstream dataset with a pretrained model and report metrics beside the baselines.

    python launch/predict.py --dataset steam [--cold | --horizon 10 --strategy rra] [predict.key=value ...]
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recgpt.errors import run_command  # noqa: E402
from recgpt.predict.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(run_command("predict", main, sys.argv[1:]))
