"""One check of the recommendation arguments, shared by the CLI (PredictConfig, keys `predict.<name>`) and the
Python API (Recommender.recommend / recommend_rows / baseline, plain names): a wrong type or range is a
ConfigError (a ValueError) naming the argument, raised before any work. Imports nothing heavy: the config
loader calls it on every command line.
"""
import math
from numbers import Integral, Real
from typing import Optional, Sequence

from recgpt.config.errors import ConfigError

STRATEGIES = ("exact", "greedy", "sample", "beam", "rra", "ra")
ON_EMPTY = ("error", "skip")
WEIGHTS = ("self", "fitted")  # the hybrid score weights: per user from its own history, or the fitted ones
BASELINES = ("recency", "popularity", "content_knn")


def positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
        raise ConfigError(f"{name}: must be >= 1 (a whole number), got {value!r}")
    return int(value)


def finite_positive(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{name}: must be a finite number > 0, got {value!r}")
    return float(value)


def one_of(value, choices: Sequence[str], name: str) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ConfigError(f"{name}: one of {tuple(choices)}, got {value!r}")
    return value


def boolean(value, name: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{name}: must be True or False, got {value!r}")
    return value


def check_recommend_args(prefix: str = "", k=None, ks=None, horizon=1, strategy: str = "exact", n_samples=8,
                         temperature=1.0, beam_size=None, on_empty: str = "error", allow_history=True,
                         seed=0, weights: str = "fitted") -> None:
    """Refuse nonsense before any work; `prefix` is "predict." for the config keys, "" for the API."""
    if k is not None:
        positive_int(k, f"{prefix}k")
    for value in ks or ():
        positive_int(value, f"{prefix}ks")
    positive_int(horizon, f"{prefix}horizon")
    one_of(strategy, STRATEGIES, f"{prefix}strategy")
    positive_int(n_samples, f"{prefix}n_samples")
    finite_positive(temperature, f"{prefix}temperature")
    if beam_size is not None:
        positive_int(beam_size, f"{prefix}beam_size")
    one_of(on_empty, ON_EMPTY, f"{prefix}on_empty")
    if allow_history != "auto":  # auto: recgpt.predict.repeats
        boolean(allow_history, f"{prefix}allow_history")
    one_of(weights, WEIGHTS, f"{prefix}weights")
    if isinstance(seed, bool) or not isinstance(seed, Integral):
        raise ConfigError(f"{prefix}seed: must be an int, got {seed!r}")


def check_baseline_args(method: str, k, allow_history=True, prefix: str = "") -> None:
    """The content-kNN settings are a ContentKnnConfig (recgpt.config.predict), which checks itself."""
    one_of(method, BASELINES, f"{prefix}method")
    positive_int(k, f"{prefix}k")
    boolean(allow_history, f"{prefix}allow_history")


def short_lists_note(lists: Sequence[Sequence], k: int, strategy: str) -> Optional[str]:
    """The note beside lists shorter than k (rra / ra hold at most horizon x n_samples distinct items; a small
    catalog or a history filter can also cut a list): ranks past a list's end count as misses."""
    short = [len(r) for r in lists if len(r) < k]
    if not short:
        return None
    return (f"{len(short)} of {len(lists)} model lists hold fewer than {k} items (shortest {min(short)}; "
            f"strategy {strategy}): ranks past a list's end count as misses")
