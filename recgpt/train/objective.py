"""The training objective as a module, so that DDP / DeepSpeed wrap it and every rank runs the same graph.

`NextItemObjective(decoder)(**batch) -> [loss_sum, n_tokens]`. For the parallel head the fast path computes
each slot's logits only at positions that have a next-item target and only over that slot's own vocabulary
(the decoder's forward returns [B, S, L, Vmax] logits for every position, -inf padded), then sums the token
cross-entropies (a factorized head's FSQ slot: the sum of its per-dimension cross-entropies, never the
15,360 logits). Reference: `recgpt.model.next_item_loss` on the decoder's full logits; they must agree.
"""
import torch
import torch.nn.functional as F
from torch import nn


class NextItemObjective(nn.Module):
    def __init__(self, decoder: nn.Module, fast: bool = True):
        super().__init__()
        self.decoder = decoder
        codes = decoder.config.codes
        self.fast = fast and (codes is None or codes.head == "parallel")
        if decoder.config.dense is not None and not self.fast:
            raise ValueError("the dense head trains with the parallel head's objective (model.codes.head=parallel)")

    def forward(self, codes, item_pos, segment, text_emb=None, behavior=None, item_group=None,
                negative_emb=None, negative_group=None, item_popularity=None, negative_popularity=None) -> torch.Tensor:
        from recgpt.model import next_item_loss, shift_targets

        cfg = self.decoder.config
        codes_cfg, dense_cfg = cfg.codes, cfg.dense
        model_text = text_emb if cfg.text_dim else None  # text_emb may be there for the dense targets only
        behavior = behavior if cfg.n_behaviors else None  # a behaviour column is ignored by a model without input
        if not self.fast:
            logits = self.decoder(codes=codes, item_pos=item_pos, segment=segment, text_emb=model_text,
                                  behavior=behavior).logits
            return torch.stack([t.float() for t in next_item_loss(logits, codes, item_pos, segment)])
        hidden = self.decoder.encode(codes, item_pos, segment, model_text, behavior)  # [B, S, L, d]
        next_codes, target_mask = shift_targets(codes, segment, item_pos)
        features, targets = hidden[target_mask], next_codes[target_mask]  # [N, L, d], [N, L]
        head = self.decoder.head
        loss_sum = hidden.new_zeros((), dtype=torch.float32)
        if codes_cfg is not None:
            for k in range(targets.shape[1]):  # a factorized slot: one cross-entropy per grid dimension
                loss_sum = loss_sum + head.slot_loss_sum(features[:, k], k, targets[:, k])
            loss_sum = loss_sum * codes_cfg.loss_weight
        n_tokens = target_mask.sum().float() * codes.shape[-1]
        if dense_cfg is not None and len(features):
            if text_emb is None:
                raise ValueError("the dense head trains on the next items' text embeddings: pass text_emb")
            next_emb = F.pad(text_emb[:, 1:], (0, 0, 0, 1))[target_mask]  # [N, D]
            # per target item, counted once per code token so that loss_sum / n_tokens stays a per-token mean
            groups = None
            if dense_cfg.negatives in ("same_dataset", "catalog"):
                if item_group is None:
                    raise ValueError(f"model.dense.negatives={dense_cfg.negatives} needs each item's dataset: "
                                     "pass item_group")
                groups = F.pad(item_group[:, 1:], (0, 1), value=-1)[target_mask]
            own = text_emb[target_mask]
            if dense_cfg.pool > 1:
                from recgpt.model.dense import recent_texts

                own = recent_texts(text_emb, item_pos, dense_cfg.pool)[target_mask]
            if dense_cfg.negatives == "catalog" and negative_emb is None:
                raise ValueError("model.dense.negatives=catalog needs sampled negatives (catalog_negatives > 0)")
            next_popularity = None
            if dense_cfg.popularity != "none":
                if item_popularity is None or negative_popularity is None:
                    raise ValueError("model.dense.popularity needs each item's log popularity: pass item_popularity "
                                     "and negative_popularity")
                next_popularity = F.pad(item_popularity[:, 1:], (0, 1))[target_mask]
            dense = self.decoder.dense_head.infonce_sum(features, next_emb, own, groups, negative_emb, negative_group,
                                                        dense_cfg.negatives != "catalog", next_popularity,
                                                        negative_popularity)
            loss_sum = loss_sum + dense_cfg.loss_weight * codes.shape[-1] * dense
        return torch.stack([loss_sum, n_tokens])


def decoder_key(key: str) -> str:
    """A NextItemObjective state dict key -> the decoder's own key (what from_pretrained expects)."""
    prefix = "decoder."
    return key[len(prefix):] if key.startswith(prefix) else key


def decoder_state_dict(state: dict) -> dict:
    """A NextItemObjective state dict under the decoder's own keys."""
    return {decoder_key(k): v for k, v in state.items()}
