"""`ItemCodeDecoderConfig`: the transformers config of the item-code decoder (saved as config.json)."""
from typing import Optional, Sequence

from transformers import PretrainedConfig

HEADS = ("parallel", "autoregressive")
ATTENTIONS = ("sdpa", "flex")


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

    @property
    def n_slots(self) -> int:
        return len(self.slot_vocab_sizes)

    @property
    def max_vocab(self) -> int:
        return max(self.slot_vocab_sizes)

    @classmethod
    def from_recgpt(cls, model_cfg, slot_vocab_sizes: Sequence[int], text_dim: int = 0) -> "ItemCodeDecoderConfig":
        """Build from the typed `recgpt.config.ModelConfig` plus what the tokenizer and embeddings decide.

        `text_dim` is used only when `model_cfg.use_text` is true (otherwise the model takes no text input).
        """
        if model_cfg.use_text and text_dim <= 0:
            raise ValueError("model.use_text is true but text_dim is 0: pass the item text embedding width")
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
        )
