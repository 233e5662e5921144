"""BERT4Rec (Sun et al. 2019) on transformers' BertModel: bidirectional encoder, masked-item objective.

Tokens: item rows 0..N-1, padding N, [MASK] N+1. Training masks a random `mask_prob` share of the real items
of each window (at least one; never padding) and predicts them over the whole catalog; prediction appends
[MASK] to the last max_len - 1 items. The output layer is tied to the item embeddings.
"""
import torch
from torch import nn

from recgpt.baselines.training import TorchBaseline


def mask_items(tokens: torch.Tensor, pad_id: int, mask_id: int, prob: float, generator) -> tuple:
    """(inputs, labels): a random `prob` share of the non-padding positions replaced by mask_id (at least one
    per row with any item), labels = the original item there and -100 elsewhere. Padding is never masked."""
    real = tokens != pad_id
    chosen = (torch.rand(tokens.shape, generator=generator) < prob) & real
    # Rows where nothing was drawn mask their last real item, so every row carries a target.
    last = real.sum(dim=1) - 1
    empty = ~chosen.any(dim=1) & (last >= 0)
    chosen[empty.nonzero().squeeze(1), last[empty]] = True
    return torch.where(chosen, mask_id, tokens), torch.where(chosen, tokens, -100)


class Bert4RecNet(nn.Module):
    def __init__(self, n_items: int, d_model: int, n_layers: int, n_heads: int, dropout: float, max_len: int):
        super().__init__()
        from transformers import BertConfig, BertModel

        self.n_items = n_items
        config = BertConfig(vocab_size=n_items + 2, hidden_size=d_model, num_hidden_layers=n_layers,
                            num_attention_heads=n_heads, intermediate_size=4 * d_model, hidden_dropout_prob=dropout,
                            attention_probs_dropout_prob=dropout, max_position_embeddings=max_len, type_vocab_size=1,
                            pad_token_id=n_items)
        self.bert = BertModel(config, add_pooling_layer=False)
        self.transform = nn.Sequential(nn.Linear(d_model, d_model), nn.GELU(), nn.LayerNorm(d_model))
        self.bias = nn.Parameter(torch.zeros(n_items))

    def hidden(self, tokens: torch.Tensor) -> torch.Tensor:
        attention = (tokens != self.n_items).long()
        return self.transform(self.bert(input_ids=tokens, attention_mask=attention).last_hidden_state)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden @ self.bert.embeddings.word_embeddings.weight[:self.n_items].T + self.bias


class Bert4Rec(TorchBaseline):
    name = "bert4rec"
    generative = True

    @property
    def window(self):
        return self.cfg.max_len

    def build(self):
        c = self.cfg
        self.generator = torch.Generator().manual_seed(c.seed)
        return Bert4RecNet(self.n_items, c.d_model, c.n_layers, c.n_heads, c.dropout, c.max_len)

    def loss(self, batch):
        tokens = torch.where(batch < 0, self.n_items, batch)
        inputs, labels = mask_items(tokens, self.n_items, self.n_items + 1, self.cfg.mask_prob, self.generator)
        keep = labels >= 0
        return nn.functional.cross_entropy(self.net.logits(self.net.hidden(inputs)[keep]), labels[keep])

    def scores(self, histories, users=None):
        from recgpt.baselines.training import pad_right

        recent = [h + [self.n_items + 1] for h in self.recent(histories, self.cfg.max_len - 1)]
        hidden = self.net.hidden(pad_right(recent, self.n_items))
        return self.net.logits(hidden[torch.arange(len(recent)), torch.as_tensor([len(h) - 1 for h in recent])])
