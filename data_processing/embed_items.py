"""Embed item text: `python data_processing/embed_items.py [--config FILE] [--items FOLDER] [key=value ...]`."""
import sys

from recgpt.errors import run_command
from recgpt.tokenizer.cli import main

if __name__ == "__main__":
    sys.exit(run_command("tokenize", main, ["embed", *sys.argv[1:]]))
