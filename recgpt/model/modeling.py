"""`ItemCodeDecoder`: a block-causal transformer over item codes (a transformers PreTrainedModel).

Each stored item s of a row contributes L tokens (its L codes). Token (s, k) embedding =
slot-aware code embedding (each slot its own code range; with code_embedding=fsq_grid an FSQ slot's is a
projection of the code's grid coordinates, recgpt.model.grid) + slot embedding + learned item-position embedding
(from item_pos, the item's index within its own user's sequence) [+ Linear(text_dim -> d) of the item's text
embedding]. Attention is bidirectional inside an item, causal across items, and never crosses users
(`recgpt.model.attention`). The head turns the states of item s into logits for the L codes of item s+1.
"""
from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.utils import ModelOutput

from recgpt.model.behavior import BehaviorEmbedding, next_behaviors
from recgpt.model.attention import block_causal_mask, flex_block_attention, flex_block_mask, sdpa_attention
from recgpt.model.config import ItemCodeDecoderConfig
from recgpt.model.dense import DenseHead
from recgpt.model.grid import GridCodeEmbedding, TiedGridOutput
from recgpt.model.heads import AutoregressiveHead, FactorizedHead, ParallelHead
from recgpt.model.loss import shift_targets


@dataclass
class ItemCodeDecoderOutput(ModelOutput):
    """hidden [B, S, L, d]: final states; logits [B, S, L, Vmax]: at item s, the L codes of the next item
    (entries >= slot_vocab_sizes[k] of slot k are -inf)."""

    hidden: Optional[torch.FloatTensor] = None
    logits: Optional[torch.FloatTensor] = None


class SelfAttention(nn.Module):
    def __init__(self, config: ItemCodeDecoderConfig):
        super().__init__()
        self.n_heads = config.n_heads
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model)
        self.proj = nn.Linear(config.d_model, config.d_model)
        self.use_flex = config.attention == "flex"

    def forward(self, x: torch.Tensor, mask, past=None) -> torch.Tensor:
        """`past`: this layer's key/value cache (recgpt.model.cache.LayerCache), which keeps k, v and attends."""
        batch, length, width = x.shape
        q, k, v = self.qkv(x).view(batch, length, 3, self.n_heads, width // self.n_heads).permute(2, 0, 3, 1, 4)
        if past is not None:
            out = past.attend(q, k, v, mask)
        else:
            out = flex_block_attention(q, k, v, mask) if self.use_flex else sdpa_attention(q, k, v, mask)
        return self.proj(out.transpose(1, 2).reshape(batch, length, width))


class DecoderBlock(GradientCheckpointingLayer):
    """Pre-LayerNorm transformer block; dropout on the residual branches (FlexAttention has no attention dropout).
    Recomputed in backward after `model.activation_checkpointing_enable()`."""

    def __init__(self, config: ItemCodeDecoderConfig):
        super().__init__()
        self.attn_norm = nn.LayerNorm(config.d_model)
        self.attn = SelfAttention(config)
        self.mlp_norm = nn.LayerNorm(config.d_model)
        self.mlp = nn.Sequential(nn.Linear(config.d_model, config.d_ff), nn.GELU(), nn.Linear(config.d_ff, config.d_model))
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, mask, past=None) -> torch.Tensor:
        x = x + self.dropout(self.attn(self.attn_norm(x), mask, past))
        return x + self.dropout(self.mlp(self.mlp_norm(x)))


class ItemCodeDecoder(PreTrainedModel):
    """Block-causal decoder over item codes.

    Inputs (batch-first): codes Long[B, S, L] (slot k code of stored item s; any value at padding),
    item_pos Long[B, S] (0-based index of the item within its user's sequence, < max_items),
    segment Long[B, S] (0 = padding, >0 = which user of the row; several users may be packed in one row),
    text_emb Float[B, S, text_dim] (only when config.text_dim > 0),
    behavior / next_behavior Long[B, S] (only read when config.n_behaviors > 0; recgpt.model.behavior).
    Token (s, k) attends (s', k') iff segment[s] == segment[s'] != 0 and item_pos[s'] <= item_pos[s].
    """

    config_class = ItemCodeDecoderConfig
    base_model_prefix = "recgpt"
    main_input_name = "codes"
    _no_split_modules = ["DecoderBlock"]
    supports_gradient_checkpointing = True

    def __init__(self, config: ItemCodeDecoderConfig):
        super().__init__(config)
        d = config.d_model
        codes = config.codes
        # slot-aware: slot k has its own table of V_k codes, so no row is unused
        grid = [bool(levels) and codes is not None and codes.embedding == "fsq_grid" for levels in config.slot_levels]
        self.code_embedding = nn.ModuleList(
            GridCodeEmbedding(levels, d, True) if on_grid else nn.Embedding(size, d)
            for levels, size, on_grid in zip(config.slot_levels, config.slot_vocab_sizes, grid))
        self.slot_embedding = nn.Embedding(config.n_slots, d)
        self.position_embedding = nn.Embedding(config.max_items, d)
        self.text_projection = nn.Linear(config.text_dim, d) if config.text_dim > 0 else None
        self.behavior = BehaviorEmbedding(config) if config.n_behaviors > 0 else None
        self.embedding_dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(DecoderBlock(config) for _ in range(config.n_layers))
        self.final_norm = nn.LayerNorm(d)
        self.head, tied = None, {}
        if codes is not None:  # the generative path: built only when the config has a code head
            if codes.head == "autoregressive":
                self.head = AutoregressiveHead(config)
            else:
                self.head = FactorizedHead(config) if codes.output == "factorized" else ParallelHead(config)
            # applied when codes.tie_embeddings: the head's output rows (and the autoregressive head's embedding of
            # the next item's prefix codes) are the code embedding of the same slot; a full head's grid slot scores
            # every code with its grid embedding; a factorized slot has its own per-dimension logits
            factorized = [bool(levels) and codes.output == "factorized" for levels in config.slot_levels]
            tied = {f"head.out.{k}.weight": f"code_embedding.{k}.weight" for k in range(config.n_slots)
                    if not grid[k] and not factorized[k]}
            for k in range(config.n_slots):
                if grid[k] and not factorized[k] and codes.tie_embeddings:
                    self.head.out[k] = TiedGridOutput(self.code_embedding[k])
            if codes.head == "autoregressive":
                tied.update({f"head.prefix_embedding.{k}.weight": f"code_embedding.{k}.weight"
                             for k in range(config.n_slots)})
        self._tied_weights_keys = tied if config.tie_word_embeddings else {}
        self.dense_head = DenseHead(config) if config.dense is not None else None
        self.post_init()
        for embedding in self.code_embedding:  # an unseen code starts as its coordinates' projection alone
            if isinstance(embedding, GridCodeEmbedding):
                embedding.zero_residual()
        if self.dense_head is not None:
            self.dense_head.zero_learned_parts()

    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, (GridCodeEmbedding, FactorizedHead)):  # derived, non-persistent buffers
            module.reset_derived()

    # ----------------------------------------------------------------------------------------- backbone
    def _check_inputs(self, codes, item_pos, segment, text_emb) -> None:
        cfg = self.config
        if codes.dim() != 3 or codes.shape[-1] != cfg.n_slots:
            raise ValueError(f"codes must be Long[B, S, {cfg.n_slots}], got shape {tuple(codes.shape)}")
        if item_pos.shape != codes.shape[:2] or segment.shape != codes.shape[:2]:
            raise ValueError(f"item_pos {tuple(item_pos.shape)} and segment {tuple(segment.shape)} must be "
                             f"[B, S] = {tuple(codes.shape[:2])}")
        if (text_emb is None) != (cfg.text_dim == 0) or (text_emb is not None and text_emb.shape != (*codes.shape[:2], cfg.text_dim)):
            got = None if text_emb is None else tuple(text_emb.shape)
            raise ValueError(f"text_emb must be {'None' if cfg.text_dim == 0 else f'Float[B, S, {cfg.text_dim}]'} "
                             f"(config.text_dim={cfg.text_dim}), got {got}")
        real = segment != 0
        sizes = torch.tensor(cfg.slot_vocab_sizes, device=codes.device)
        bad_code = ((codes < 0) | (codes >= sizes)).any(-1) & real
        bad_pos = ((item_pos < 0) | (item_pos >= cfg.max_items)) & real
        if (bad_code | bad_pos).any():  # one device sync; diagnose only on failure
            if bad_pos.any():
                b, s = bad_pos.nonzero()[0].tolist()
                raise ValueError(f"item_pos[{b}, {s}] = {int(item_pos[b, s])} is outside [0, max_items={cfg.max_items}); "
                                 "cut long users into windows of at most max_items items")
            b, s = bad_code.nonzero()[0].tolist()
            raise ValueError(f"codes[{b}, {s}] = {codes[b, s].tolist()} out of range for slot_vocab_sizes {cfg.slot_vocab_sizes}")

    def encode(self, codes, item_pos, segment, text_emb=None, behavior=None, next_behavior=None,
               past=None) -> torch.Tensor:
        """Backbone: final hidden states Float[B, S, L, d]. With `past` (recgpt.model.cache.KVCache) the items
        extend the rows' cached items (SDPA over the cached keys and values, which the cache keeps)."""
        self._check_inputs(codes, item_pos, segment, text_emb)
        batch, n_items, n_slots = codes.shape
        real = segment != 0
        codes = torch.where(real[..., None], codes, torch.zeros_like(codes))
        positions = torch.where(real, item_pos, torch.zeros_like(item_pos))
        slots = torch.arange(n_slots, device=codes.device)
        x = torch.stack([self.code_embedding[k](codes[..., k]) for k in range(n_slots)], dim=2)
        x = x + self.slot_embedding(slots) + self.position_embedding(positions)[:, :, None]
        if self.text_projection is not None:
            x = x + self.text_projection(text_emb.to(self.text_projection.weight.dtype))[:, :, None]
        if self.behavior is not None:
            x = self.behavior(x, behavior, segment, positions, next_behavior)
        x = self.embedding_dropout(x).reshape(batch, n_items * n_slots, -1)
        if past is not None:
            mask = past.extend(item_pos, segment, n_slots)
        elif self.config.attention == "flex":
            mask = flex_block_mask(item_pos, segment, n_slots)
        else:
            mask = block_causal_mask(item_pos, segment, n_slots)
        for i, block in enumerate(self.blocks):
            x = block(x, mask, None if past is None else past.layers[i])
        return self.final_norm(x).reshape(batch, n_items, n_slots, -1)

    def forward(self, codes, item_pos, segment, text_emb=None, next_codes=None, return_dict=None, behavior=None,
                next_behavior=None, **kwargs):
        """-> ItemCodeDecoderOutput(hidden [B, S, L, d], logits [B, S, L, Vmax]).

        The logits at item s predict the L codes of the next item of the same user. The autoregressive head
        is teacher-forced on `next_codes` Long[B, S, L] (codes of each item's next item); when omitted they are
        taken from the next stored item of the same segment (`shift_targets`), as in training layouts.
        """
        hidden = self.encode(codes, item_pos, segment, text_emb, behavior, next_behavior)
        if self.head is None:  # a dense-only model: the dense head reads the hidden states (recgpt.train.objective)
            return ItemCodeDecoderOutput(hidden=hidden, logits=None)
        if self.config.codes.head == "autoregressive" and next_codes is None:
            next_codes, _ = shift_targets(codes, segment, item_pos)
        if next_codes is not None:
            next_codes = next_codes.clamp(min=0)  # rows without a target may hold any value
            next_codes = torch.minimum(next_codes, torch.tensor(self.config.slot_vocab_sizes, device=next_codes.device) - 1)
        return ItemCodeDecoderOutput(hidden=hidden, logits=self.head(hidden, next_codes))

    # --------------------------------------------------------------------------------------- prediction
    @torch.no_grad()
    def history_state(self, codes, item_pos, segment, text_emb=None, behavior=None, target_behavior=None,
                      past=None) -> torch.Tensor:
        """Float[B, L, d]: hidden states of each row's last item (largest item_pos among segment == 1);
        `target_behavior` Long[B]: the next event's behaviour to condition on (config.behavior_target);
        `past`: a KV cache the items extend (recgpt.model.cache: encode histories once, then append items)."""
        next_behavior = None
        if self.behavior is not None and self.config.behavior_target and behavior is not None:
            next_behavior = next_behaviors(behavior, segment, item_pos, target_behavior)
        hidden = self.encode(codes, item_pos, segment, text_emb, behavior, next_behavior, past)
        key = torch.where(segment == 1, item_pos, torch.full_like(item_pos, -1))
        best, last = key.max(dim=1)
        if (best < 0).any():
            raise ValueError(f"rows {(best < 0).nonzero().flatten().tolist()} have no item with segment == 1")
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]

    def next_code_logprobs(self, state: torch.Tensor, prefix: torch.Tensor) -> torch.Tensor:
        """state Float[B, L, d], prefix Long[B, k] (codes of slots 0..k-1 of the next item) -> Float[B, V_k]
        log-probs of slot k. The parallel head ignores the prefix (its distribution factorizes over slots)."""
        self._need_codes()
        if prefix.dim() != 2 or prefix.shape[0] != state.shape[0] or prefix.shape[1] >= self.config.n_slots:
            raise ValueError(f"prefix must be Long[B={state.shape[0]}, k < {self.config.n_slots}], got {tuple(prefix.shape)}")
        return self.head.next_code_logprobs(state, prefix)

    def dense_scores(self, state: torch.Tensor, text_emb: torch.Tensor, last_text=None,
                     log_popularity=None) -> torch.Tensor:
        """state Float[B, L, d], catalog text embeddings Float[N, dense_dim] -> Float[B, N] dense-head cosines.
        last_text Float[B, dense_dim]: each history's last item's text embedding (needed with dense_query_skip);
        log_popularity Float[N]: the catalog items' log popularity (needed with dense_popularity)."""
        if self.dense_head is None:
            raise ValueError("this model has no dense head (model.dense is null)")
        return self.dense_head.scores(state, text_emb, last_text, log_popularity)

    def score_items(self, state: torch.Tensor, item_codes: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
        """state Float[B, L, d], item_codes Long[N, L] -> Float[B, N] exact log-prob of each item's code tuple.
        Parallel: a sum of per-slot gathers. Autoregressive: teacher-forced, `chunk` distinct prefixes at a time."""
        self._need_codes()
        return self.head.score_items(state, item_codes, chunk=chunk)

    def _need_codes(self) -> None:
        if self.head is None:
            raise ValueError(f"this model has no code head (model.codes is null, recipe {self.config.recipe!r}): "
                             "it scores with its dense head (score_weights without 'code')")
