"""Rollouts of the multi-step strategies (recgpt.predict.horizon): histories that grow by one item per step.

A rollout holds B rows (a history each) and answers `log_probs() -> Float[B, N]`; `advance(parents, items)`
makes row r of the next step row parents[r] with items[r] appended (-1: nothing appended), so beams and samples
branch from a row and a finished row stays as it is.
  HistoryRollout  scores the grown histories from scratch each step (`scorer.log_probs`): the reference, and
                  the rollout of any scorer that has no cache (baselines, hand-made tables)
  CachedRollout   the item-code decoder's KV cache (recgpt.model.cache): the histories are encoded once (equal
                  histories once), each step appends the chosen items; the state goes to the same scoring
                  (`scorer.scores_of`) with the grown histories, so the dense head's query reads the new last
                  items. A row that outgrows max_items is encoded again through its last max_items items, as
                  the re-encoding path keeps them.
"""
from typing import List, Sequence

import torch

from recgpt.model.cache import KVCache, append_items


class HistoryRollout:
    def __init__(self, scorer, histories: Sequence[Sequence[int]]):
        self.scorer = scorer
        self.histories: List[List[int]] = [list(h) for h in histories]

    def __len__(self) -> int:
        return len(self.histories)

    def log_probs(self) -> torch.Tensor:
        return self.scorer.log_probs(self.histories)

    def advance(self, parents: Sequence[int], items: Sequence[int]) -> None:
        if len(parents) != len(items):
            raise ValueError(f"advance: {len(parents)} parents but {len(items)} items")
        self.histories = [self.histories[p] + ([int(i)] if i >= 0 else []) for p, i in zip(parents, items)]


class CachedRollout(HistoryRollout):
    """`scorer`: an ItemScorer (its model an ItemCodeDecoder): `inputs(histories)`, `scores_of(histories, state)`."""

    def __init__(self, scorer, histories: Sequence[Sequence[int]]):
        super().__init__(scorer, histories)
        first = {}
        index = [first.setdefault(tuple(h), len(first)) for h in self.histories]
        cache, state = self._encode([list(h) for h in first])
        if len(first) < len(index):  # equal histories (the samples of rra / ra) are encoded once
            cache, state = cache.select(index), state[torch.as_tensor(index, device=state.device)]
        self.cache, self.state = cache, state

    def _encode(self, histories):
        model = self.scorer.model
        cache = KVCache.empty(model, len(histories), self.scorer.device)
        return cache, model.history_state(**self.scorer.inputs(histories), past=cache)

    def log_probs(self) -> torch.Tensor:
        return self.scorer.scores_of(self.histories, self.state)

    def advance(self, parents: Sequence[int], items: Sequence[int]) -> None:
        super().advance(parents, items)
        parents, items = list(parents), [int(i) for i in items]
        if parents != list(range(len(self.state))):
            index = torch.as_tensor(parents, device=self.state.device)
            self.cache, self.state = self.cache.select(index), self.state[index]
        limit = self.scorer.model.config.max_items
        grow = [r for r, i in enumerate(items) if i >= 0 and len(self.histories[r]) <= limit]
        full = [r for r, i in enumerate(items) if i >= 0 and len(self.histories[r]) > limit]
        state = self.state.clone() if len(grow) < len(items) else None
        if grow:
            part = self.cache if state is None else self.cache.select(grow)
            new = torch.as_tensor([items[r] for r in grow], device=self.scorer.item_codes.device)
            text = None if self.scorer.text_emb is None else self.scorer.text_emb[new.to(self.scorer.text_emb.device)]
            grown = append_items(self.scorer.model, part, self.scorer.item_codes[new], text)
            if state is None:
                state = grown
            else:
                self.cache.put(grow, part)
                state[torch.as_tensor(grow, device=state.device)] = grown
        if full:  # window shift: every position moves, so these rows are encoded again
            part, again = self._encode([self.histories[r] for r in full])
            self.cache.put(full, part)
            state[torch.as_tensor(full, device=state.device)] = again
        self.state = state
