"""The item-code decoder: config, model, heads, block-causal attention and the next-item loss."""
from transformers import AutoConfig, AutoModel

from recgpt.model.config import ItemCodeDecoderConfig
from recgpt.model.loss import next_item_loss, shift_targets
from recgpt.model.modeling import ItemCodeDecoder, ItemCodeDecoderOutput

AutoConfig.register(ItemCodeDecoderConfig.model_type, ItemCodeDecoderConfig, exist_ok=True)
AutoModel.register(ItemCodeDecoderConfig, ItemCodeDecoder, exist_ok=True)

__all__ = ["ItemCodeDecoder", "ItemCodeDecoderConfig", "ItemCodeDecoderOutput", "next_item_loss", "shift_targets"]
