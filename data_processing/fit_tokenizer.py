"""Fit the item tokenizer: `python data_processing/fit_tokenizer.py [--config FILE] [key=value ...]`."""
import sys

from recgpt.errors import run_command
from recgpt.tokenizer.cli import main

if __name__ == "__main__":
    sys.exit(run_command("tokenize", main, ["fit", *sys.argv[1:]]))
