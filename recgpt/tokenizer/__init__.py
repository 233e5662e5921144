"""Item tokenizer: item text -> embeddings -> a few discrete codes per item (FSQ, RQ-VAE, RQ-KMeans).

Names are imported lazily so that `import recgpt.tokenizer` stays cheap (no torch / sentence-transformers
until a function is used).
"""
import importlib

_EXPORTS = {
    "ItemTokenizer": "base", "load_tokenizer": "base", "save_item_codes": "base", "load_item_codes": "base",
    "fit_tokenizer": "fit", "CollisionError": "collisions", "resolve_collisions": "collisions",
    "code_to_items": "collisions", "Embeddings": "embed", "embed_items": "embed", "embed_texts": "embed",
    "load_embeddings": "embed", "format_report": "report",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"recgpt.tokenizer.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'recgpt.tokenizer' has no attribute {name!r}")
