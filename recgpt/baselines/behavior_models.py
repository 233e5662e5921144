"""SASRec+ and the item-code decoder on multi-behaviour events (packed item x behaviour, recgpt.baselines.behavior).

Three settings of each, switched by two flags: no behaviour input (purchases-only sequences, or every event as
a plain item), `behavior_input` (a behaviour embedding added to each event's item input: SASRec+ through
SASRecNet's `extra` input, the code decoder through recgpt.model.behavior on every code token), and
`behavior_target` (the next event's behaviour is also given at the position that predicts it; predictions
are conditioned on `target_behavior`, "buy" by default). Both train with the shared loop
(recgpt.baselines.training) and score the whole catalog; an empty history gets the `fallback` ranking.
"""
from typing import Optional, Sequence

import torch
from torch import nn

from recgpt.baselines.behavior import BUY, N_BEHAVIORS, unpack
from recgpt.baselines.sasrec import CausalBaseline, SASRecNet, causal_ce
from recgpt.baselines.training import TorchBaseline, pad_right


def shift_left(behavior: torch.Tensor, items: torch.Tensor, target: Optional[int] = None) -> torch.Tensor:
    """Long[B, T]: the next event's behaviour of right-padded rows (0 = none at the end and at padding);
    with `target`, each row's last real event gets it (the behaviour the prediction is conditioned on)."""
    nxt = nn.functional.pad(torch.where(items[:, 1:] >= 0, behavior[:, 1:], 0), (0, 1), value=0)
    if target is not None:
        last = (items >= 0).sum(1) - 1
        nxt[torch.arange(len(items)), last] = target
    return torch.where(items >= 0, nxt, 0)


class BehaviorInput:
    """What both models share: the flags, the conditioning behaviour and scores with an empty-history fallback."""
    behavior_input, behavior_target = True, False
    target_behavior = BUY
    fallback: Optional[Sequence[int]] = None  # catalog rows, best first

    def configure(self, behavior_input: bool, behavior_target: bool, fallback=None):
        if behavior_target and not behavior_input:
            raise ValueError("behavior_target needs behavior_input")
        self.behavior_input, self.behavior_target, self.fallback = behavior_input, behavior_target, fallback
        return self

    def history_scores(self, events: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def scores(self, histories, users=None) -> torch.Tensor:
        out = torch.zeros(len(histories), self.n_items)
        if self.fallback is not None:
            out[:, torch.as_tensor(list(self.fallback))] = -torch.arange(len(self.fallback), dtype=torch.float32)
        rows = [i for i, h in enumerate(histories) if len(h)]
        if rows:
            recent = [list(histories[i])[-self.cfg.max_len:] for i in rows]
            out[rows] = self.history_scores(pad_right(recent)).float()
        return out


class BehaviorSASRec(BehaviorInput, CausalBaseline):
    """SASRec+ with one-hot behaviour (and next-behaviour) vectors into SASRecNet's extra input (a linear map of
    a one-hot vector is an embedding)."""
    name = "sasrec_behavior"

    def build(self):
        c = self.cfg
        width = N_BEHAVIORS * (int(self.behavior_input) + int(self.behavior_target))
        return SASRecNet(self.n_items, c.d_model, c.n_layers, c.n_heads, c.dropout, c.max_len + 1, extra_dim=width)

    def _inputs(self, events: torch.Tensor, target: Optional[int] = None):
        items, behavior = unpack(events)
        if not self.behavior_input:
            return items, None
        parts = [nn.functional.one_hot(behavior, N_BEHAVIORS)]
        if self.behavior_target:
            parts.append(nn.functional.one_hot(shift_left(behavior, items, target), N_BEHAVIORS))
        return items, torch.cat(parts, -1).float() * (items >= 0)[..., None]

    def loss(self, batch):
        items, extra = self._inputs(batch)
        return causal_ce(self.net.hidden(items, extra), items, self.net.logits)

    def history_scores(self, events):
        items, extra = self._inputs(events, self.target_behavior)
        hidden = self.net.hidden(items, extra)
        last = (items >= 0).sum(1) - 1
        return self.net.logits(hidden[torch.arange(len(items)), last])


class BehaviorCodeModel(BehaviorInput, TorchBaseline):
    """The item-code decoder (recgpt.model) over a catalog's code table, trained with its own objective."""
    name = "code_model_behavior"
    generative = True

    def __init__(self, cfg, n_items: int, item_codes: torch.Tensor, slot_vocab_sizes: Sequence[int]):
        super().__init__(cfg, n_items)
        self.item_codes, self.slot_vocab_sizes = item_codes.long(), list(slot_vocab_sizes)

    def build(self):
        from recgpt.model import ItemCodeDecoder, ItemCodeDecoderConfig

        c = self.cfg
        config = ItemCodeDecoderConfig.from_recipe(
            "code", self.slot_vocab_sizes, n_layers=c.n_layers, d_model=c.d_model, n_heads=c.n_heads,
            d_ff=4 * c.d_model, dropout=c.dropout, max_items=c.max_len + 1,
            behavior={"target": self.behavior_target} if self.behavior_input else None)
        return ItemCodeDecoder(config)

    def _inputs(self, events: torch.Tensor) -> dict:
        items, behavior = unpack(events)
        segment = (items >= 0).long()
        item_pos = torch.arange(items.shape[1]).expand_as(items).contiguous()
        batch = {"codes": self.item_codes[items.clamp(min=0)], "item_pos": item_pos, "segment": segment}
        if self.behavior_input:
            batch["behavior"] = behavior
        return batch

    def loss(self, batch):
        from recgpt.train.objective import NextItemObjective

        loss_sum, n_tokens = NextItemObjective(self.net)(**self._inputs(batch))
        return loss_sum / n_tokens.clamp(min=1)

    def history_scores(self, events):
        inputs = self._inputs(events)
        if self.behavior_target:
            inputs["target_behavior"] = torch.full((len(events),), self.target_behavior)
        return self.net.score_items(self.net.history_state(**inputs), self.item_codes)
