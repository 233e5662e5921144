"""Zero-shot prediction on unseen datasets: catalog encoding, exact and trie-constrained scoring,
long-horizon strategies, protocols, metrics, baselines and reports. See docs/artifacts.md."""
from recgpt.predict.recommender import Recommendations, Recommender

__all__ = ["Recommendations", "Recommender"]
