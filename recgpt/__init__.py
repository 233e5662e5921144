"""recgpt: pretrain a generative recommendation foundation model over item codes and use it zero-shot."""
__version__ = "0.1.0"
