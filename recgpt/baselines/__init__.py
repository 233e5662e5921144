"""In-domain baselines under one interface (recgpt.baselines.base.Baseline), one module per model.

Every model trains on the same splits (recgpt.baselines.data) and reports through recgpt's metrics and
report, so one table compares them with recgpt. `recgpt baseline NAME --dataset D` trains and evaluates one.
"""
import importlib

NAMES = {
    "popularity": "recgpt.baselines.simple:Popularity",
    "markov": "recgpt.baselines.simple:Markov",
    "itemknn": "recgpt.baselines.simple:ItemKNN",
    "content_knn": "recgpt.baselines.content:ContentKNN",
    "bpr": "recgpt.baselines.bpr:BPRMF",
    "sasrec": "recgpt.baselines.sasrec:SASRec",
    "bert4rec": "recgpt.baselines.bert4rec:Bert4Rec",
    "gpt2": "recgpt.baselines.gpt2:GPT2Item",
    "mfgan": "recgpt.baselines.mfgan.model:MFGAN",
}


def get_model(name: str):
    """The model class of a baseline name (imported on demand: torch and transformers only when needed)."""
    from recgpt.config import ConfigError

    if name not in NAMES:
        raise ConfigError(f"baseline.name: unknown baseline {name!r}; one of {', '.join(NAMES)}")
    module, cls = NAMES[name].split(":")
    return getattr(importlib.import_module(module), cls)
