"""Item-ID GPT-2 (the long-horizon paper's model, arXiv 2409.17730): transformers' GPT2LMHeadModel over item
rows, next-item cross-entropy. Its next-item distribution feeds the shared horizon strategies
(greedy / beam / sample / rra / ra of recgpt.predict.horizon), which never repeat an item inside a list.

Tokens: item rows 0..N-1, padding N (right-padded, attention-masked; positions count from the first item).
"""
import torch
from torch import nn

from recgpt.baselines.sasrec import CausalBaseline


class GPT2ItemNet(nn.Module):
    def __init__(self, n_items: int, d_model: int, n_layers: int, n_heads: int, dropout: float, max_len: int):
        super().__init__()
        from transformers import GPT2Config, GPT2LMHeadModel

        self.n_items = n_items
        config = GPT2Config(vocab_size=n_items + 1, n_positions=max_len, n_embd=d_model, n_layer=n_layers,
                            n_head=n_heads, resid_pdrop=dropout, embd_pdrop=dropout, attn_pdrop=dropout,
                            bos_token_id=n_items, eos_token_id=n_items, pad_token_id=n_items)
        self.gpt = GPT2LMHeadModel(config)

    def hidden(self, items: torch.Tensor) -> torch.Tensor:
        tokens = torch.where(items < 0, self.n_items, items)
        return self.gpt.transformer(input_ids=tokens, attention_mask=(items >= 0).long()).last_hidden_state

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.gpt.lm_head(hidden)[..., :self.n_items]  # the padding token is never a prediction


class GPT2Item(CausalBaseline):
    name = "gpt2"
    net_class = GPT2ItemNet
