"""Import raw datasets into the prepared format: python data_processing/prepare.py [--config FILE] [key=value ...]

Same as `recgpt prepare`: every dataset of data.datasets, from data.raw_root into data.prepared_root/<name>/.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from recgpt.errors import run_command  # noqa: E402
from recgpt.data.cli import prepare_main  # noqa: E402

if __name__ == "__main__":
    sys.exit(run_command("prepare", prepare_main, sys.argv[1:]))
