"""Embed item text: `python data_processing/embed_items.py [--config FILE] [--items FOLDER] [key=value ...]`."""
import sys

from recgpt.tokenizer.cli import main

if __name__ == "__main__":
    sys.exit(main(["embed", *sys.argv[1:]]))
