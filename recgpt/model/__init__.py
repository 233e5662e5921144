"""The item-code decoder: a block-causal transformer over item codes (a transformers PreTrainedModel).

Public API:
  ItemCodeDecoderConfig(slot_vocab_sizes, n_layers, d_model, n_heads, d_ff, dropout, head, text_dim, max_items,
      attention, tie_word_embeddings); ItemCodeDecoderConfig.from_recgpt(model_cfg, slot_vocab_sizes, text_dim=0).
  ItemCodeDecoder(config):
      model(codes [B,S,L], item_pos [B,S], segment [B,S], text_emb=None, next_codes=None)
          -> ItemCodeDecoderOutput(hidden [B,S,L,d], logits [B,S,L,Vmax]); logits at item s predict item s+1.
      model.history_state(codes, item_pos, segment, text_emb=None) -> [B, L, d] (last item of segment 1)
      model.next_code_logprobs(state [B,L,d], prefix [B,k]) -> [B, V_k]
      model.score_items(state [B,L,d], item_codes [N,L], chunk=1024) -> [B, N] exact log-probs
      save_pretrained / from_pretrained / AutoModel.from_pretrained (safetensors + config.json).
  next_item_loss(logits, codes, item_pos, segment) -> (loss_sum, n_tokens); shift_targets(codes, segment, item_pos).
"""
from transformers import AutoConfig, AutoModel

from recgpt.model.config import ItemCodeDecoderConfig
from recgpt.model.loss import next_item_loss, shift_targets
from recgpt.model.modeling import ItemCodeDecoder, ItemCodeDecoderOutput

AutoConfig.register(ItemCodeDecoderConfig.model_type, ItemCodeDecoderConfig, exist_ok=True)
AutoModel.register(ItemCodeDecoderConfig, ItemCodeDecoder, exist_ok=True)

__all__ = ["ItemCodeDecoder", "ItemCodeDecoderConfig", "ItemCodeDecoderOutput", "next_item_loss", "shift_targets"]
