"""Named model recipes: what `model.recipe` selects before a config's own `model:` keys override it.

Each recipe sets the model's parts (text input, code head, dense head); sizes and training budgets stay in the
config. A recipe is complete: every part it does not use is null, so a config that names it builds exactly it.
"""
from dataclasses import dataclass


@dataclass(frozen=True)
class Recipe:
    doc: str
    model: dict


TEXT_DENSE = {"text_input": True, "center_text": True, "codes": None, "behavior": None,
              "dense": {"query": "content", "pool": 5, "item_tower": False, "negatives": "catalog",
                        "catalog_negatives": 1024, "popularity": "gated"}}

RECIPES = {
    "text_dense": Recipe(
        "The recommended recipe, also for catalogs never seen in pretraining: item text as input (centered per catalog), "
        "no code head, a dense head whose query pools the last 5 items' texts and whose score adds a learned "
        "per-user popularity weight and content gate; InfoNCE over the query's own target and 1,024 uniform "
        "items of its dataset.",
        TEXT_DENSE),
    "text_state": Recipe(
        "For training on a domain itself (in-domain, fine-tuning): text_dense with the transformer state added to "
        "the query (a projection starting at zero) and every item vector through the item tower (a residual MLP "
        "starting as the identity). Trained in-domain it beats text_dense (ml-100k 1.31x, yelp 1.22x, steam 1.08x, "
        "docs/benchmarks.md); zero-shot it does not.",
        {**TEXT_DENSE, "dense": {**TEXT_DENSE["dense"], "query": "content_state", "item_tower": True}}),
    "code": Recipe(
        "RecGPT's generative model: item codes in, a parallel head predicting the next item's codes (the catalog "
        "is scored exactly by a gather); no text input, no dense head.",
        {"text_input": False, "center_text": False, "dense": None, "behavior": None,
         "codes": {"head": "parallel", "embedding": "lookup", "output": "full"}}),
    "code_text": Recipe(
        "The code model with the item's text embedding added to its code tokens (centered per catalog).",
        {"text_input": True, "center_text": True, "dense": None, "behavior": None,
         "codes": {"head": "parallel", "embedding": "lookup", "output": "full"}}),
    "hybrid": Recipe(
        "Code and dense heads together: text input, FSQ-grid code embeddings with a parallel head, and a dense "
        "head whose query is the last item's text plus a learned projection of the state (in-batch candidates).",
        {"text_input": True, "center_text": True, "behavior": None,
         "codes": {"head": "parallel", "embedding": "fsq_grid", "output": "full"},
         "dense": {"query": "content_state", "pool": 1, "item_tower": True, "negatives": "in_batch",
                   "catalog_negatives": 0, "popularity": "none"}}),
    "tiger": Recipe(
        "TIGER (arXiv 2305.05065): an autoregressive code head over semantic ids (pair it with tokenizer.kind="
        "rqvae), trie-constrained beam search at prediction; no text input, no dense head.",
        {"text_input": False, "center_text": False, "dense": None, "behavior": None,
         "codes": {"head": "autoregressive", "embedding": "lookup", "output": "full"}}),
}


# Earlier names, still read from configs and exported models: the recipe is the same.
ALIASES = {"zero_shot": "text_dense"}


def canonical(name):
    """A recipe's current name (an earlier one mapped; anything else unchanged, for the caller to check)."""
    return ALIASES.get(name, name) if isinstance(name, str) else name


def recipe_model(name: str) -> dict:
    """The `model:` section a recipe contributes (a copy), with its name."""
    import copy

    name = canonical(name)
    return {"recipe": name, **copy.deepcopy(RECIPES[name].model)}


def describe() -> str:
    return "\n".join(f"  {name}: {recipe.doc}" for name, recipe in RECIPES.items())
