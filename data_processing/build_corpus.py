"""Merge prepared datasets into a pretraining corpus: python data_processing/build_corpus.py [--config FILE] [...]

Same as `recgpt corpus`: data.datasets (prepared on demand) into data.corpus_dir.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from recgpt.errors import run_command  # noqa: E402
from recgpt.data.cli import corpus_main  # noqa: E402

if __name__ == "__main__":
    sys.exit(run_command("corpus", corpus_main, sys.argv[1:]))
