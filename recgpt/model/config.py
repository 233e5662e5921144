"""`ItemCodeDecoderConfig`: the transformers config of the item-code decoder (saved as config.json)."""
import math
from typing import Optional, Sequence

from transformers import PretrainedConfig

from recgpt.model.grid import slot_levels_of

HEADS = ("parallel", "autoregressive")
ATTENTIONS = ("sdpa", "flex")
SCORE_COMPONENTS = ("code", "dense", "knn", "pop")
CODE_EMBEDDINGS = ("lookup", "fsq_grid")
CODE_HEADS = ("full", "factorized")


class ItemCodeDecoderConfig(PretrainedConfig):
    """Shape of an `ItemCodeDecoder`.

    Fields:
      slot_vocab_sizes: codes per slot; an item is L = len(slot_vocab_sizes) codes, slot k in [0, slot_vocab_sizes[k]).
      n_layers, d_model, n_heads, d_ff, dropout: the transformer backbone (pre-LayerNorm blocks).
      head: "parallel" (position (s, k) predicts slot k of item s+1) or "autoregressive" (slot k of item s+1
        is predicted from the item-s state and the codes 0..k-1 of item s+1).
      text_dim: width of the optional item text embedding added to the item's tokens (0 = no text input).
      max_items: number of learned item positions; item_pos must be < max_items.
      attention: "sdpa" (reference, explicit boolean mask) or "flex" (FlexAttention block mask, for packed rows).
      tie_word_embeddings: slot k's output matrix in the head (and the autoregressive head's embedding of the
        next item's slot-k code) is slot k's code embedding [slot_vocab_sizes[k], d_model], as GPT-2 ties its LM head.
      initializer_range: std of the normal init of linear and embedding weights.
      dense_dim: width of the dense head's predicted text embedding (0 = no dense head; recgpt.model.dense).
      dense_temperature, dense_loss_weight, code_loss_weight: the dense head's InfoNCE temperature; training loss =
        code_loss_weight * code cross-entropy + dense_loss_weight * InfoNCE (both per target token).
      dense_query_pool: with dense_query_skip, the skip is a weighted sum of the last dense_query_pool items'
        unit texts (the query item's weight 1 + learned recency prior + learned content attention, both starting
        at 0): an untrained head is still content kNN on the last item. dense_pool_decay: the recency prior
        starts at decay^age instead (0.7: the content kNN baseline's user vector).
      dense_query_state: false drops the learned W . state term: the query is the (pooled) content alone.
      dense_item_tower: false scores catalog items by their unit text embeddings (the tower is left out).
      dense_popularity: the dense score adds (b + v . state) * log popularity of the item (b, v starting at 0);
        dense_content_gate: and scales the cosine by 1 + c + u . state (c, u starting at 0).
      dense_negatives: InfoNCE candidates, in_batch, same_dataset (only the query's own source dataset's) or
        catalog (the query's own target and uniformly sampled items of its dataset only).
      dense_query_skip: the dense query is normalize(unit text of the query item + W . state), W starting at
        zero: an untrained dense head ranks by cosine to the last item's text and training learns the correction.
      center_text: text embeddings are centered on their own dataset's / catalog's mean before use (label-free).
      n_behaviors, behavior_target: multi-behaviour input (recgpt.model.behavior): 0 = none; else a behaviour
        embedding (ids 0..n_behaviors-1) added to every token of each event's item, plus, with behavior_target,
        an embedding of the next event's behaviour at the position that predicts it (target conditioning).
      score_weights: how prediction scores a catalog, {component: weight} over code (code log-prob), dense
        (dense cosine), knn (content kNN cosine, a fixed prior) and pop (log popularity among the histories
        being scored); each component is standardized per user before the weighted sum. None: the dense head
        alone when there is one, else the code log-prob. Fitted on a held-out source domain (recgpt.predict.hybrid).
      slot_levels: per slot, the FSQ levels of its grid (prod = slot_vocab_sizes[k]) or [] (not a grid); from
        the tokenizer. Needed by the geometry-aware switches below (recgpt.model.grid).
      code_embedding: "lookup" (a learned row per code) or "fsq_grid" (grid slots: a learned projection of the
        code's normalized grid coordinates, plus a zero-initialised per-code residual when code_residual).
      code_head: "full" (one softmax over each slot's codes) or "factorized" (grid slots: one softmax per grid
        dimension, sum(levels) logits; parallel head only).
    """

    model_type = "recgpt_item_decoder"

    def __init__(
        self,
        slot_vocab_sizes: Optional[Sequence[int]] = None,
        n_layers: int = 3,
        d_model: int = 768,
        n_heads: int = 12,
        d_ff: int = 3072,
        dropout: float = 0.1,
        head: str = "parallel",
        text_dim: int = 0,
        max_items: int = 256,
        attention: str = "sdpa",
        tie_word_embeddings: bool = True,
        initializer_range: float = 0.02,
        dense_dim: int = 0,
        dense_temperature: float = 0.05,
        dense_loss_weight: float = 1.0,
        code_loss_weight: float = 1.0,
        center_text: bool = False,
        dense_query_skip: bool = False,
        dense_negatives: str = "in_batch",
        dense_query_pool: int = 0,
        dense_query_state: bool = True,
        dense_item_tower: bool = True,
        dense_popularity: bool = False,
        dense_content_gate: bool = False,
        dense_pool_decay: float = 0.0,
        score_weights: Optional[dict] = None,
        slot_levels: Optional[Sequence[Sequence[int]]] = None,
        code_embedding: str = "lookup",
        code_residual: bool = True,
        code_head: str = "full",
        n_behaviors: int = 0,
        behavior_target: bool = False,
        **kwargs,
    ):
        self.slot_vocab_sizes = [int(v) for v in (slot_vocab_sizes if slot_vocab_sizes is not None else [256] * 4)]
        self.n_layers = int(n_layers)
        self.d_model = int(d_model)
        self.n_heads = int(n_heads)
        self.d_ff = int(d_ff)
        self.dropout = float(dropout)
        self.head = head
        self.text_dim = int(text_dim)
        self.max_items = int(max_items)
        self.attention = attention
        self.initializer_range = float(initializer_range)
        self.tie_word_embeddings = bool(tie_word_embeddings)
        self.dense_dim = int(dense_dim)
        self.dense_temperature = float(dense_temperature)
        self.dense_loss_weight = float(dense_loss_weight)
        self.code_loss_weight = float(code_loss_weight)
        self.center_text = bool(center_text)
        self.dense_query_skip = bool(dense_query_skip)
        self.dense_negatives = dense_negatives
        self.dense_query_pool = int(dense_query_pool)
        self.dense_query_state = bool(dense_query_state)
        self.dense_item_tower = bool(dense_item_tower)
        self.dense_popularity = bool(dense_popularity)
        self.dense_content_gate = bool(dense_content_gate)
        self.dense_pool_decay = float(dense_pool_decay)
        self.score_weights = {str(k): float(v) for k, v in score_weights.items()} if score_weights else None
        self.slot_levels = slot_levels_of(self.slot_vocab_sizes, slot_levels)
        self.code_embedding = code_embedding
        self.code_residual = bool(code_residual)
        self.code_head = code_head
        self.n_behaviors = int(n_behaviors)
        self.behavior_target = bool(behavior_target)
        self._validate_fields()
        super().__init__(**kwargs)

    def _validate_fields(self) -> None:
        def need(ok: bool, key: str, what: str) -> None:
            if not ok:
                raise ValueError(f"ItemCodeDecoderConfig.{key}: {what}")

        need(len(self.slot_vocab_sizes) >= 1 and all(v >= 1 for v in self.slot_vocab_sizes),
             "slot_vocab_sizes", f"a non-empty list of positive sizes, got {self.slot_vocab_sizes}")
        need(self.n_layers >= 1, "n_layers", f"must be >= 1, got {self.n_layers}")
        need(self.d_model >= 1 and self.n_heads >= 1 and self.d_model % self.n_heads == 0,
             "d_model", f"{self.d_model} must be a positive multiple of n_heads={self.n_heads}")
        need(self.d_ff >= 1, "d_ff", f"must be >= 1, got {self.d_ff}")
        need(0.0 <= self.dropout < 1.0, "dropout", f"must be in [0, 1), got {self.dropout}")
        need(self.head in HEADS, "head", f"one of {HEADS}, got {self.head!r}")
        need(self.attention in ATTENTIONS, "attention", f"one of {ATTENTIONS}, got {self.attention!r}")
        need(self.text_dim >= 0, "text_dim", f"must be >= 0, got {self.text_dim}")
        need(self.max_items >= 1, "max_items", f"must be >= 1, got {self.max_items}")
        need(self.dense_dim >= 0, "dense_dim", f"must be >= 0, got {self.dense_dim}")
        need(self.dense_query_state or self.dense_query_skip, "dense_query_state", "false needs dense_query_skip")
        need(self.dense_query_pool <= 1 or self.dense_query_skip, "dense_query_pool", "needs dense_query_skip")
        need(self.dense_negatives in ("in_batch", "same_dataset", "catalog"), "dense_negatives",
             f"in_batch|same_dataset|catalog, got {self.dense_negatives!r}")
        need(not self.dense_popularity or self.dense_dim > 0, "dense_popularity", "needs a dense head (dense_dim > 0)")
        need(not self.dense_content_gate or self.dense_popularity, "dense_content_gate", "needs dense_popularity")
        need(self.dense_temperature > 0, "dense_temperature", f"must be > 0, got {self.dense_temperature}")
        need(self.code_loss_weight >= 0 and self.dense_loss_weight >= 0
             and (self.code_loss_weight > 0 or (self.dense_dim > 0 and self.dense_loss_weight > 0)),
             "code_loss_weight", "loss weights must be >= 0 and something must be trained")
        need(self.n_behaviors >= 0 and (self.n_behaviors > 0 or not self.behavior_target), "n_behaviors",
             f"must be >= 0, and > 0 for behavior_target, got {self.n_behaviors}")
        unknown = set(self.score_weights or {}) - set(SCORE_COMPONENTS)
        need(not unknown, "score_weights", f"components are {SCORE_COMPONENTS}, got {sorted(unknown)}")
        need(self.dense_dim > 0 or not (self.score_weights or {}).get("dense"), "score_weights",
             "a dense weight needs a dense head (dense_dim > 0)")
        need(len(self.slot_levels) == self.n_slots and all(
            not lv or (min(lv) >= 2 and math.prod(lv) == size) for lv, size in zip(self.slot_levels, self.slot_vocab_sizes)),
            "slot_levels", f"one list per slot, [] or FSQ levels whose product is the slot's size "
                           f"{self.slot_vocab_sizes}, got {self.slot_levels}")
        need(self.code_embedding in CODE_EMBEDDINGS, "code_embedding", f"one of {CODE_EMBEDDINGS}, got {self.code_embedding!r}")
        need(self.code_head in CODE_HEADS, "code_head", f"one of {CODE_HEADS}, got {self.code_head!r}")
        geometric = self.code_embedding != "lookup" or self.code_head != "full"
        need(not geometric or any(self.slot_levels), "slot_levels",
             "code_embedding=fsq_grid / code_head=factorized need FSQ grid slots (an FSQ tokenizer's levels)")
        need(not geometric or self.head == "parallel", "head",
             "code_embedding=fsq_grid / code_head=factorized are implemented for the parallel head")

    def scoring_weights(self) -> dict:
        """{component: weight} used at prediction (see score_weights)."""
        if self.score_weights:
            return dict(self.score_weights)
        return {"dense": 1.0} if self.dense_dim > 0 else {"code": 1.0}

    @property
    def n_slots(self) -> int:
        return len(self.slot_vocab_sizes)

    @property
    def max_vocab(self) -> int:
        return max(self.slot_vocab_sizes)

    @classmethod
    def from_recgpt(cls, model_cfg, slot_vocab_sizes: Sequence[int], text_dim: int = 0,
                    slot_levels: Optional[Sequence[Sequence[int]]] = None) -> "ItemCodeDecoderConfig":
        """Build from the typed `recgpt.config.ModelConfig` plus what the tokenizer and embeddings decide.

        `text_dim` is used only when `model_cfg.use_text` is true (otherwise the model takes no text input);
        `slot_levels` are the tokenizer's FSQ levels per slot (see `tokenizer_slot_levels`).
        """
        if (model_cfg.use_text or model_cfg.dense_head) and text_dim <= 0:
            raise ValueError("model.use_text / model.dense_head need text embeddings: pass their width (text_dim)")
        return cls(
            slot_vocab_sizes=list(slot_vocab_sizes),
            n_layers=model_cfg.n_layers,
            d_model=model_cfg.d_model,
            n_heads=model_cfg.n_heads,
            d_ff=model_cfg.d_ff,
            dropout=model_cfg.dropout,
            head=model_cfg.head,
            text_dim=text_dim if model_cfg.use_text else 0,
            max_items=model_cfg.max_items,
            attention=model_cfg.attention,
            tie_word_embeddings=model_cfg.tie_embeddings,
            dense_dim=text_dim if model_cfg.dense_head else 0,
            dense_temperature=model_cfg.dense_temperature,
            dense_loss_weight=model_cfg.dense_loss_weight,
            code_loss_weight=model_cfg.code_loss_weight,
            center_text=model_cfg.center_text,
            dense_query_skip=model_cfg.dense_query_skip,
            dense_negatives=model_cfg.dense_negatives,
            dense_query_pool=model_cfg.dense_query_pool,
            dense_query_state=model_cfg.dense_query_state,
            dense_item_tower=model_cfg.dense_item_tower,
            dense_popularity=model_cfg.dense_popularity,
            dense_content_gate=model_cfg.dense_content_gate,
            dense_pool_decay=model_cfg.dense_pool_decay,
            slot_levels=slot_levels,
            code_embedding=model_cfg.code_embedding,
            code_residual=model_cfg.code_residual,
            code_head=model_cfg.code_head,
            n_behaviors=behavior_vocab_size() if model_cfg.behavior_input else 0,
            behavior_target=model_cfg.behavior_target,
        )


def behavior_vocab_size() -> int:
    from recgpt.model.behavior import BEHAVIOR_NAMES

    return len(BEHAVIOR_NAMES)
