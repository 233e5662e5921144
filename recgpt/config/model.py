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
    # the dense query adds the query item's own unit text embedding to a zero-initialised learned part: the
    # untrained head is content kNN on the last item, training learns the correction (recgpt.model.dense)
    dense_query_skip: bool = False
    # InfoNCE candidates: in_batch (every distinct target of the micro-batch) or same_dataset (a query's
    # candidates are the targets of its own source dataset only: cross-domain negatives teach domain identity,
    # not ranking inside a catalog); dense_catalog_negatives adds that many items drawn uniformly from the
    # corpus per micro-batch (with same_dataset, each query sees those of its own dataset); catalog: a query's
    # candidates are its own target and those uniform items of its dataset only (no popularity-sampled targets)
    # pool the query's text over the user's last dense_query_pool items (needs dense_query_skip): weights =
    # [the query item] + a learned recency prior + a learned content attention, both zero-initialised, so
    # the untrained query is still the last item's text (recgpt.model.dense); 0 / 1: the last item only
    dense_query_pool: int = 0
    # the recency prior's start: decay^age for the items before the query item (0.7: the untrained query is
    # the content kNN baseline's 0.7^age-weighted mean; 0: the last item alone)
    dense_pool_decay: float = 0.0
    dense_query_state: bool = True  # false (needs dense_query_skip): no learned W . state term, content only
    dense_item_tower: bool = True  # false: catalog items are their unit text embeddings (no learned tower)
    dense_negatives: str = "in_batch"
    dense_catalog_negatives: int = 0
    # the dense score adds (b + v . state) * log popularity of the item in its dataset (training: counts over
    # the training sequences; prediction: over the histories being scored, label-free), b and v starting at 0:
    # the head learns how much popularity a user's next item follows. Needs dense_negatives=catalog (uniform
    # candidates; popularity-sampled in-batch candidates would bias the learned scale)
    dense_popularity: bool = False
    # with dense_popularity: the content cosine is scaled by 1 + c + u . state (starting at 1), so the head
    # learns per user how much the next item follows content against popularity
    dense_content_gate: bool = False
    center_text: bool = False  # center text embeddings on their own dataset's / catalog's mean (label-free)
    # Geometry-aware codes (FSQ tokenizers; recgpt.model.grid): a code's input embedding from its grid
    # coordinates (fsq_grid, + a zero-initialised per-code residual when code_residual), and a head with one
    # softmax per grid dimension (factorized: 8+8+8+6+5 logits per slot instead of 15,360).
    code_embedding: str = "lookup"  # lookup | fsq_grid
    code_residual: bool = True
    code_head: str = "full"  # full | factorized
    # Multi-behaviour logs (recgpt.model.behavior): a behaviour embedding added to each event's item tokens;
    # behavior_target also conditions each prediction on the next event's behaviour (e.g. "next purchase").
    behavior_input: bool = False
    behavior_target: bool = False

    def __post_init__(self):
        check(self.n_heads >= 1, "model.n_heads", f"must be >= 1, got {self.n_heads}")  # first: d_model % n_heads
        check(self.d_model >= 1, "model.d_model", f"must be >= 1, got {self.d_model}")
        check(self.n_layers >= 1, "model.n_layers", f"must be >= 1, got {self.n_layers}")
        check(self.d_model % self.n_heads == 0, "model.d_model", f"{self.d_model} not divisible by n_heads={self.n_heads}")
        check(self.head in ("parallel", "autoregressive"), "model.head", f"parallel|autoregressive, got {self.head!r}")
        check(self.attention in ("sdpa", "flex"), "model.attention", f"sdpa|flex, got {self.attention!r}")
        check(self.d_ff >= 1, "model.d_ff", f"must be >= 1, got {self.d_ff}")
        check(self.max_items >= 1, "model.max_items", f"must be >= 1, got {self.max_items}")
        check(0.0 <= self.dropout < 1.0, "model.dropout", f"must be in [0, 1), got {self.dropout}")
        check(self.code_embedding in ("lookup", "fsq_grid"), "model.code_embedding",
              f"lookup|fsq_grid, got {self.code_embedding!r}")
        check(self.code_head in ("full", "factorized"), "model.code_head", f"full|factorized, got {self.code_head!r}")
        check(self.head == "parallel" or (self.code_embedding, self.code_head) == ("lookup", "full"), "model.head",
              "code_embedding=fsq_grid / code_head=factorized are implemented for head=parallel")
        check(self.dense_negatives in ("in_batch", "same_dataset", "catalog"), "model.dense_negatives",
              f"in_batch|same_dataset|catalog, got {self.dense_negatives!r}")
        check(0.0 <= self.dense_pool_decay < 1.0, "model.dense_pool_decay", f"must be in [0, 1), got {self.dense_pool_decay}")
        check(self.dense_query_pool <= 1 or self.dense_query_skip, "model.dense_query_pool",
              "needs model.dense_query_skip=true")
        check(self.dense_query_state or self.dense_query_skip, "model.dense_query_state",
              "false needs model.dense_query_skip=true (the query would be empty)")
        check(self.dense_negatives != "catalog" or self.dense_catalog_negatives > 0, "model.dense_negatives",
              "catalog needs model.dense_catalog_negatives > 0")
        check(not self.dense_popularity or (self.dense_head and self.dense_negatives == "catalog"),
              "model.dense_popularity", "needs model.dense_head=true and model.dense_negatives=catalog")
        check(not self.dense_content_gate or self.dense_popularity, "model.dense_content_gate",
              "needs model.dense_popularity=true")
        check(self.dense_catalog_negatives >= 0, "model.dense_catalog_negatives",
              f"must be >= 0, got {self.dense_catalog_negatives}")
        check(self.dense_temperature > 0, "model.dense_temperature", f"must be > 0, got {self.dense_temperature}")
        check(self.code_loss_weight >= 0 and self.dense_loss_weight >= 0, "model.code_loss_weight",
              "loss weights must be >= 0")
        check(self.behavior_input or not self.behavior_target, "model.behavior_target", "needs model.behavior_input=true")
        check(self.code_loss_weight > 0 or (self.dense_head and self.dense_loss_weight > 0), "model.code_loss_weight",
              "0 needs model.dense_head=true with dense_loss_weight > 0 (something must be trained)")
