"""`ItemCodeDecoderConfig`: the transformers config of the item-code decoder (saved as config.json).

config.json holds the recgpt `model:` section verbatim (`model`, validated by the same dataclasses as a run's
config: recgpt.config.model) plus what the tokenizer and the embeddings decide:

  slot_vocab_sizes: codes per slot; an item is L = len(slot_vocab_sizes) codes, slot k in [0, slot_vocab_sizes[k]).
  slot_levels: per slot, the FSQ levels of its grid (prod = slot_vocab_sizes[k]) or [] (not a grid).
  embed_dim: width of the item text embeddings the model reads (0: none).
  score_weights: how prediction scores a catalog, {component: weight} over code (code log-prob), dense (dense
    head), knn (content kNN cosine, a fixed prior) and pop (the catalog's log popularity); each component is
    standardized per user before the weighted sum. None: the dense head alone when there is one, else the code
    log-prob. Fitted on held-out source domains (recgpt.predict.hybrid).

Everything else is read through properties named as in the `model:` section (`config.codes.head`,
`config.dense.pool`, `config.d_model`, ...). A config.json of the earlier flat format (keys such as `dense_dim`,
`code_loss_weight`) is refused with one line saying how to convert it (recgpt.model.legacy).
"""
import math
from dataclasses import asdict
from typing import Optional, Sequence

from transformers import PretrainedConfig

from recgpt.config.predict import SCORE_COMPONENTS
from recgpt.model.grid import slot_levels_of
LEGACY_KEYS = ("dense_dim", "code_loss_weight", "dense_query_skip", "use_text", "head", "code_embedding")


class ItemCodeDecoderConfig(PretrainedConfig):
    model_type = "recgpt_item_decoder"

    def __init__(self, slot_vocab_sizes: Optional[Sequence[int]] = None, model: Optional[dict] = None,
                 embed_dim: int = 0, slot_levels: Optional[Sequence[Sequence[int]]] = None,
                 score_weights: Optional[dict] = None, **kwargs):
        from recgpt.config.errors import ConfigError
        from recgpt.config.model import ModelConfig

        legacy = [k for k in LEGACY_KEYS if k in kwargs]
        if legacy:
            raise ValueError(f"a model config of the earlier flat format (key {legacy[0]!r}): convert the exported "
                             "folder with `python -m recgpt.model.legacy <folder> <new folder>`")
        self.slot_vocab_sizes = [int(v) for v in (slot_vocab_sizes if slot_vocab_sizes is not None else [256] * 4)]
        if isinstance(model, ModelConfig):
            model = asdict(model)
        if model is None:  # a default-constructed config (transformers builds one to diff against): a code model
            from recgpt.config.recipes import recipe_model
            model = recipe_model("code")
        try:
            self.spec = ModelConfig(**dict(model or {}))  # the one validator of run and saved configs
        except (ConfigError, TypeError) as e:
            raise ValueError(f"ItemCodeDecoderConfig.model: {e}") from None
        self.model = asdict(self.spec)
        self.embed_dim = int(embed_dim)
        self.slot_levels = slot_levels_of(self.slot_vocab_sizes, slot_levels)
        self.score_weights = {str(k): float(v) for k, v in score_weights.items()} if score_weights else None
        kwargs["tie_word_embeddings"] = bool(self.codes is not None and self.codes.tie_embeddings)
        self._validate_derived()
        super().__init__(**kwargs)

    def _validate_derived(self) -> None:
        def need(ok: bool, key: str, what: str) -> None:
            if not ok:
                raise ValueError(f"ItemCodeDecoderConfig.{key}: {what}")

        need(len(self.slot_vocab_sizes) >= 1 and all(v >= 1 for v in self.slot_vocab_sizes),
             "slot_vocab_sizes", f"a non-empty list of positive sizes, got {self.slot_vocab_sizes}")
        need(self.embed_dim >= 0 and (self.embed_dim > 0 or not self.spec.needs_text), "embed_dim",
             f"model.text_input / model.dense read item text embeddings: their width must be > 0, got {self.embed_dim}")
        need(len(self.slot_levels) == self.n_slots and all(
            not lv or (min(lv) >= 2 and math.prod(lv) == size) for lv, size in zip(self.slot_levels, self.slot_vocab_sizes)),
            "slot_levels", f"one list per slot, [] or FSQ levels whose product is the slot's size "
                           f"{self.slot_vocab_sizes}, got {self.slot_levels}")
        geometric = self.codes is not None and (self.codes.embedding, self.codes.output) != ("lookup", "full")
        need(not geometric or any(self.slot_levels), "slot_levels",
             "model.codes.embedding=fsq_grid / output=factorized need FSQ grid slots (an FSQ tokenizer's levels)")
        unknown = set(self.score_weights or {}) - set(SCORE_COMPONENTS)
        need(not unknown, "score_weights", f"components are {SCORE_COMPONENTS}, got {sorted(unknown)}")
        for part, key in (("dense", self.dense), ("code", self.codes)):
            need(key is not None or not (self.score_weights or {}).get(part), "score_weights",
                 f"a {part} weight needs a {part} head (model.{'codes' if part == 'code' else part})")

    # the model section, read as typed parts
    @property
    def codes(self):
        return self.spec.codes

    @property
    def dense(self):
        return self.spec.dense

    @property
    def behavior(self):
        return self.spec.behavior

    @property
    def recipe(self) -> str:
        return self.spec.recipe

    @property
    def n_layers(self) -> int:
        return self.spec.n_layers

    @property
    def d_model(self) -> int:
        return self.spec.d_model

    @property
    def n_heads(self) -> int:
        return self.spec.n_heads

    @property
    def d_ff(self) -> int:
        return self.spec.d_ff

    @property
    def dropout(self) -> float:
        return self.spec.dropout

    @property
    def max_items(self) -> int:
        return self.spec.max_items

    @property
    def attention(self) -> str:
        return self.spec.attention

    @property
    def center_text(self) -> bool:
        return self.spec.center_text

    # derived widths and counts
    @property
    def text_dim(self) -> int:
        """Width of the text embedding added to the item's tokens (0: no text input)."""
        return self.embed_dim if self.spec.text_input else 0

    @property
    def dense_dim(self) -> int:
        """Width of the dense head's item vectors (0: no dense head)."""
        return self.embed_dim if self.dense is not None else 0

    @property
    def n_behaviors(self) -> int:
        if self.behavior is None:
            return 0
        from recgpt.data.behavior import BEHAVIOR_NAMES

        return len(BEHAVIOR_NAMES)

    @property
    def behavior_target(self) -> bool:
        return bool(self.behavior is not None and self.behavior.target)

    @property
    def n_slots(self) -> int:
        return len(self.slot_vocab_sizes)

    @property
    def max_vocab(self) -> int:
        return max(self.slot_vocab_sizes)

    def scoring_weights(self) -> dict:
        """{component: weight} used at prediction (see score_weights)."""
        if self.score_weights:
            return dict(self.score_weights)
        return {"dense": 1.0} if self.dense is not None else {"code": 1.0}

    def to_dict(self) -> dict:
        out = super().to_dict()
        out.pop("spec", None)
        return out

    @classmethod
    def from_recipe(cls, recipe: str = "code", slot_vocab_sizes: Optional[Sequence[int]] = None, embed_dim: int = 0,
                    slot_levels=None, score_weights: Optional[dict] = None, **model) -> "ItemCodeDecoderConfig":
        """A named recipe (recgpt.config.recipes) with `model:` keys overridden, as a config file would:
        `from_recipe("text_dense", [256] * 4, embed_dim=384, d_model=128, dense={"pool": 3})`."""
        from recgpt.config.recipes import recipe_model

        spec = recipe_model(recipe)
        for key, value in model.items():
            if isinstance(value, dict) and isinstance(spec.get(key), dict):
                spec[key] = {**spec[key], **value}
            else:
                spec[key] = value
        return cls(slot_vocab_sizes, spec, embed_dim, slot_levels, score_weights)

    @classmethod
    def from_recgpt(cls, model_cfg, slot_vocab_sizes: Sequence[int], text_dim: int = 0,
                    slot_levels: Optional[Sequence[Sequence[int]]] = None) -> "ItemCodeDecoderConfig":
        """Build from the typed `recgpt.config.ModelConfig` plus what the tokenizer and embeddings decide
        (`text_dim`: the width of the item text embeddings; `slot_levels`: the tokenizer's FSQ levels per slot)."""
        if model_cfg.needs_text and text_dim <= 0:
            raise ValueError("model.text_input / model.dense need text embeddings: pass their width (text_dim)")
        return cls(slot_vocab_sizes=list(slot_vocab_sizes), model=asdict(model_cfg),
                   embed_dim=text_dim if model_cfg.needs_text else 0, slot_levels=slot_levels)
