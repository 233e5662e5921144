"""Data stages: raw files -> prepared datasets -> merged pretraining corpus, plus the split helpers.

Formats (one module each): recbole, lcrec, steam, movielens, amazon, table, taobao, retailrocket. See docs/artifacts.md.
"""
from recgpt.data.errors import DataFormatError
from recgpt.data.prepare import PreparedDataset, load_prepared, prepare_dataset

__all__ = ["Corpus", "DataFormatError", "PreparedDataset", "build_corpus", "load_corpus", "load_prepared",
           "prepare_dataset"]


def __getattr__(name):  # the corpus pulls in `datasets`; import it only when asked for
    if name in ("Corpus", "build_corpus", "load_corpus"):
        from recgpt.data import corpus

        return getattr(corpus, name)
    raise AttributeError(name)
