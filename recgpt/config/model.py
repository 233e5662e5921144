"""Config of the item-code decoder: a backbone plus optional parts, each a section that is null when off.

    model:
      recipe: text_dense         # a named recipe (recgpt.config.recipes) this section overrides key by key
      n_layers / d_model / n_heads / d_ff / dropout / max_items / attention: the backbone
      text_input: true           # the item's text embedding is added to its code tokens
      center_text: true          # text embeddings centered on their own dataset's / catalog's mean
      codes: {head, embedding, output, tie_embeddings, loss_weight} | null   # the generative path
      dense: {query, pool, item_tower, negatives, ...} | null                # scores items by their text
      behavior: {target} | null                                               # multi-behaviour input

A part that is null is not built, so every built parameter receives a gradient (DDP and ZeRO need that). The
same dataclasses validate the config a run is launched with and the one saved beside an exported model
(recgpt.model.config), so there is one set of rules.
"""
from dataclasses import dataclass, field
from typing import Optional

from recgpt.config.errors import check

CODE_HEADS = ("parallel", "autoregressive")
CODE_EMBEDDINGS = ("lookup", "fsq_grid")
CODE_OUTPUTS = ("full", "factorized")
DENSE_QUERIES = ("content", "state", "content_state")
DENSE_NEGATIVES = ("in_batch", "same_dataset", "catalog")
DENSE_POPULARITY = ("none", "scale", "gated")
ATTENTIONS = ("sdpa", "flex")


@dataclass
class CodesConfig:
    """The generative path: the states of item s predict the L codes of item s+1."""

    head: str = "parallel"  # parallel (RecGPT: slot k from position k, exact catalog scoring) | autoregressive (TIGER)
    # lookup: a learned row per code; fsq_grid (FSQ tokenizers): a projection of the code's grid coordinates plus a
    # zero-initialised per-code residual, so a code never seen in training starts at its coordinates' projection
    embedding: str = "lookup"
    output: str = "full"  # full: one softmax per slot | factorized: one per FSQ grid dimension (parallel head)
    tie_embeddings: bool = True  # the head's output matrix is the slot's code embedding (as GPT-2 ties its LM head)
    loss_weight: float = 1.0

    def validate(self, key: str = "model.codes") -> None:
        check(self.head in CODE_HEADS, f"{key}.head", f"one of {CODE_HEADS}, got {self.head!r}")
        check(self.embedding in CODE_EMBEDDINGS, f"{key}.embedding", f"one of {CODE_EMBEDDINGS}, got {self.embedding!r}")
        check(self.output in CODE_OUTPUTS, f"{key}.output", f"one of {CODE_OUTPUTS}, got {self.output!r}")
        check(self.head == "parallel" or (self.embedding, self.output) == ("lookup", "full"), f"{key}.head",
              "embedding=fsq_grid / output=factorized are implemented for head=parallel")
        check(self.loss_weight > 0, f"{key}.loss_weight", f"must be > 0 (no code head: {key}=null), got {self.loss_weight}")


@dataclass
class DenseConfig:
    """The dense head: a query from the user's last items scores every catalog item by its text embedding, so
    a catalog never seen in pretraining is scored from its texts alone (recgpt.model.dense)."""

    # content: the query is the user's last `pool` item texts, pooled by a learned recency prior and content
    # attention (both starting at zero: untrained, the last item's text, i.e. content kNN on it); state: a learned
    # projection of the transformer state; content_state: their sum, the state part starting at zero
    query: str = "content"
    pool: int = 5
    item_tower: bool = False  # true: items pass through a shared residual MLP (starting as the identity)
    # InfoNCE candidates: in_batch (the micro-batch's distinct targets), same_dataset (those of the query's own
    # dataset), catalog (the query's own target and `catalog_negatives` uniform items of its dataset)
    negatives: str = "catalog"
    catalog_negatives: int = 1024  # uniform items per micro-batch (with in_batch / same_dataset: added to them)
    # none | scale: the score adds (b + v . state) * log popularity of the item in its catalog | gated: and the
    # content cosine is scaled by 1 + c + u . state (b, v, c, u start at zero). Needs negatives=catalog: popularity-
    # sampled in-batch candidates would bias the learned weight
    popularity: str = "gated"
    temperature: float = 0.05
    loss_weight: float = 1.0

    @property
    def uses_content(self) -> bool:
        return self.query in ("content", "content_state")

    @property
    def uses_state(self) -> bool:
        """Whether anything of the dense head reads the transformer state."""
        return self.query != "content" or self.popularity != "none"

    def validate(self, key: str = "model.dense") -> None:
        check(self.query in DENSE_QUERIES, f"{key}.query", f"one of {DENSE_QUERIES}, got {self.query!r}")
        check(self.negatives in DENSE_NEGATIVES, f"{key}.negatives", f"one of {DENSE_NEGATIVES}, got {self.negatives!r}")
        check(self.popularity in DENSE_POPULARITY, f"{key}.popularity",
              f"one of {DENSE_POPULARITY}, got {self.popularity!r}")
        check(self.pool >= 1, f"{key}.pool", f"must be >= 1 (1: the last item only), got {self.pool}")
        check(self.pool == 1 or self.uses_content, f"{key}.pool", f"pools item texts: needs query=content or "
              f"content_state, got query={self.query!r}")
        check(self.catalog_negatives >= 0, f"{key}.catalog_negatives", f"must be >= 0, got {self.catalog_negatives}")
        check(self.negatives != "catalog" or self.catalog_negatives > 0, f"{key}.negatives",
              f"catalog needs {key}.catalog_negatives > 0")
        check(self.popularity == "none" or self.negatives == "catalog", f"{key}.popularity",
              f"{self.popularity} needs {key}.negatives=catalog (uniform candidates)")
        check(self.temperature > 0, f"{key}.temperature", f"must be > 0, got {self.temperature}")
        check(self.loss_weight > 0, f"{key}.loss_weight", f"must be > 0 (no dense head: {key}=null), got {self.loss_weight}")


@dataclass
class BehaviorConfig:
    """Multi-behaviour logs (recgpt.model.behavior): a behaviour embedding added to each event's item tokens."""

    target: bool = False  # also condition each prediction on the next event's behaviour (e.g. "next purchase")


@dataclass
class ModelConfig:
    """Dataclass defaults are the `text_dense` recipe; `recipe` names the recipe a config started from."""

    recipe: str = "text_dense"
    n_layers: int = 3
    d_model: int = 768
    n_heads: int = 12
    d_ff: int = 3072
    dropout: float = 0.1
    max_items: int = 256  # item positions (context length in items)
    attention: str = "sdpa"  # sdpa (reference, explicit mask) | flex (packed, block masks; GPU)
    text_input: bool = True  # add a projection of the item's text embedding to its code tokens
    center_text: bool = True  # center text embeddings on their own dataset's / catalog's mean (label-free)
    codes: Optional[CodesConfig] = None
    dense: Optional[DenseConfig] = field(default_factory=DenseConfig)
    behavior: Optional[BehaviorConfig] = None

    def __post_init__(self):
        from recgpt.config.recipes import RECIPES, canonical

        self.recipe = canonical(self.recipe)  # an earlier name (zero_shot) reads as the same recipe
        check(self.n_heads >= 1, "model.n_heads", f"must be >= 1, got {self.n_heads}")  # first: d_model % n_heads
        check(self.d_model >= 1, "model.d_model", f"must be >= 1, got {self.d_model}")
        check(self.recipe in RECIPES, "model.recipe", f"one of {sorted(RECIPES)}, got {self.recipe!r}")
        check(self.n_layers >= 1, "model.n_layers", f"must be >= 1, got {self.n_layers}")
        check(self.d_model >= 1 and self.d_model % self.n_heads == 0, "model.d_model",
              f"{self.d_model} must be a positive multiple of n_heads={self.n_heads}")
        check(self.d_ff >= 1, "model.d_ff", f"must be >= 1, got {self.d_ff}")
        check(self.max_items >= 1, "model.max_items", f"must be >= 1, got {self.max_items}")
        check(0.0 <= self.dropout < 1.0, "model.dropout", f"must be in [0, 1), got {self.dropout}")
        check(self.attention in ATTENTIONS, "model.attention", f"one of {ATTENTIONS}, got {self.attention!r}")
        for key, part in (("model.codes", self.codes), ("model.dense", self.dense)):
            if isinstance(part, dict):  # from a saved config.json
                setattr(self, key.split(".")[1], (CodesConfig if key == "model.codes" else DenseConfig)(**part))
        if isinstance(self.behavior, dict):
            self.behavior = BehaviorConfig(**self.behavior)
        check(self.codes is not None or self.dense is not None, "model.codes",
              "model.codes and model.dense are both null: the model would have nothing to predict with")
        if self.codes is not None:
            self.codes.validate()
        if self.dense is not None:
            self.dense.validate()
            check(self.codes is not None or self.dense.uses_state, "model.dense.query",
                  "query=content with popularity=none and no code head leaves the transformer unused: "
                  "set model.dense.popularity, a query with state, or model.codes")

    @property
    def needs_text(self) -> bool:
        """Whether the model reads item text embeddings (as input or to score with the dense head)."""
        return self.text_input or self.dense is not None
