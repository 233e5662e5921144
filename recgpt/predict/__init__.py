"""Zero-shot prediction on unseen datasets: catalog encoding, exact and trie-constrained scoring,
long-horizon strategies, protocols, metrics, baselines and reports. See docs/artifacts.md."""

__all__ = ["Recommendations", "Recommender"]


def __getattr__(name):  # lazily: importing a part of recgpt.predict needs no torch
    if name in __all__:
        from recgpt.predict import recommender

        return getattr(recommender, name)
    raise AttributeError(f"module 'recgpt.predict' has no attribute {name!r}")
