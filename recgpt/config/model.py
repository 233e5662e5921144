"""Config of the item-code decoder (turned into a transformers PretrainedConfig by recgpt.model)."""
from dataclasses import dataclass

from recgpt.config.errors import check


@dataclass
class ModelConfig:
    n_layers: int = 3
    d_model: int = 768
    n_heads: int = 12
    d_ff: int = 3072
    dropout: float = 0.1
    head: str = "parallel"  # parallel | autoregressive
    use_text: bool = False  # add a projection of the item's text embedding to its code tokens
    max_items: int = 256  # item positions (context length in items)
    attention: str = "sdpa"  # sdpa (reference, explicit mask) | flex (packed, block masks; GPU)
    tie_embeddings: bool = True  # the head's output matrix is the (slot-aware) code embedding
    # Dense head (recgpt.model.dense): the last item's state predicts the next item's text embedding, trained
    # with in-batch InfoNCE through a small shared item tower; scores an unseen catalog from its texts alone.
    dense_head: bool = False
    dense_temperature: float = 0.05
    dense_loss_weight: float = 1.0
    code_loss_weight: float = 1.0  # 0: train the dense head only (no code softmax)
    center_text: bool = False  # center text embeddings on their own dataset's / catalog's mean (label-free)
    # Multi-behaviour logs (recgpt.model.behavior): a behaviour embedding added to each event's item tokens;
    # behavior_target also conditions each prediction on the next event's behaviour (e.g. "next purchase").
    behavior_input: bool = False
    behavior_target: bool = False

    def __post_init__(self):
        check(self.n_layers >= 1, "model.n_layers", f"must be >= 1, got {self.n_layers}")
        check(self.d_model % self.n_heads == 0, "model.d_model", f"{self.d_model} not divisible by n_heads={self.n_heads}")
        check(self.head in ("parallel", "autoregressive"), "model.head", f"parallel|autoregressive, got {self.head!r}")
        check(self.attention in ("sdpa", "flex"), "model.attention", f"sdpa|flex, got {self.attention!r}")
        check(self.d_ff >= 1, "model.d_ff", f"must be >= 1, got {self.d_ff}")
        check(self.max_items >= 1, "model.max_items", f"must be >= 1, got {self.max_items}")
        check(0.0 <= self.dropout < 1.0, "model.dropout", f"must be in [0, 1), got {self.dropout}")
        check(self.dense_temperature > 0, "model.dense_temperature", f"must be > 0, got {self.dense_temperature}")
        check(self.code_loss_weight >= 0 and self.dense_loss_weight >= 0, "model.code_loss_weight",
              "loss weights must be >= 0")
        check(self.behavior_input or not self.behavior_target, "model.behavior_target", "needs model.behavior_input=true")
        check(self.code_loss_weight > 0 or (self.dense_head and self.dense_loss_weight > 0), "model.code_loss_weight",
              "0 needs model.dense_head=true with dense_loss_weight > 0 (something must be trained)")
