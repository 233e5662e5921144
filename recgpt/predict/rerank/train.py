"""`recgpt rerank rerank.sources=[...] rerank.fit_domains=[...]`: train the re-ranker on source domains.

Each step draws histories of one source (the sources in turn) whose next item is among the base rule's top
`rerank` and minimizes the softmax cross-entropy of that item over those candidates. A source trains on the last
transition of each of its users' sequences (the log before its LOO targets), its popularity, co-occurrence and
prior counted without that transition, so the pair learned from is never among its inputs. Every `every` steps the
re-ranker is scored on the LOO users of the held-out fit domains (NDCG@10, history excluded); the step with the
best mean NDCG relative to step 0 (the base rule itself) is written out. A re-ranker trained on the catalog it will
serve (fine-tuning: `rerank.init_from`) holds seeded users of its sources out of training (`rerank.valid_users`):
their last transition, never trained on and counted without it, chooses the step as a fit domain's users do.
"""
import copy
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from recgpt.config.errors import ConfigError
from recgpt.predict.hybrid import rank_gains
from recgpt.predict.protocols import TestCases
from recgpt.predict.rerank.context import DomainContext, mask_history
from recgpt.predict.rerank.model import Reranker

HISTORY = 50  # items of history a drawn transition keeps
DRAW = 128  # histories drawn at a time while collecting a step's next items among the base rule's top


class Domain:
    """A prepared dataset folder under one protocol, as the re-ranker reads it: its DomainContext over the log
    before the protocol's targets, and its log sequences as catalog rows. `train` (a source): each sequence's last
    transition is what it trains on, and is held out of the counts."""

    def __init__(self, folder, embed_cfg, protocol: str = "loo", train: bool = False):
        from recgpt.predict.catalog import read_catalog_items
        from recgpt.predict.protocols import popularity_before_targets, sequences_before_targets
        from recgpt.predict.self_weights import log_rows
        from recgpt.predict.transfer import ItemRows, read_interactions
        from recgpt.tokenizer.embed import embed_items

        self.folder, self.protocol, self.train = Path(folder), protocol, train
        items, self.inter = read_catalog_items(folder), read_interactions(folder)
        ids = items["item_id"].astype(str).tolist()
        self.catalog = ItemRows(ids)
        vectors = embed_items(ids, items["text"].fillna("").astype(str).tolist(), embed_cfg).vectors
        seqs = sequences_before_targets(self.inter, protocol, 1, 0)
        rows = [self.catalog.rows([str(i) for i in s])[0] for s in seqs]
        if train:
            self.sequences = [r for r in rows if len(r) >= 3]
            rows, seqs = [r[:-1] for r in rows], [s[:-1] for s in seqs]
            counts = np.bincount(np.concatenate([np.asarray(r, np.int64) for r in rows] + [np.zeros(0, np.int64)]),
                                 minlength=len(ids))
        else:
            self.sequences = [r for r in rows if len(r) >= 2]
            counts = popularity_before_targets(self.inter, self.catalog, protocol, 1, 0)
        if not self.sequences:
            raise ValueError(f"{self.folder}: no user sequence long enough to {'train on' if train else 'score'}")
        self.context = DomainContext(vectors, counts, rows, log_rows(seqs, self.catalog))
        self._cases = {}

    def cases(self, users: int):
        """The seeded test cases of `users` users under the protocol (built once: every scored step reads them)."""
        from recgpt.predict.protocols import build_test_cases

        if users not in self._cases:
            self._cases[users] = build_test_cases(self.inter, self.catalog, self.protocol, 1, 0, users)
        return self._cases[users]


class Holdout:
    """`users` seeded users of a source Domain taken out of its training: their last transition (what the source
    trains on, counted without it) is scored as a fit domain's LOO users are, the history's own items excluded."""

    def __init__(self, domain: Domain, users: int, seed: int = 0):
        if not domain.train:
            raise ValueError(f"{domain.folder}: users are held out of a source's training, not of a fit domain")
        if users >= len(domain.sequences):
            raise ConfigError(f"rerank.valid_users: {users} held out of {domain.folder} leaves none of its "
                              f"{len(domain.sequences)} users with 3+ items to train on")
        order = np.random.default_rng(seed).permutation(len(domain.sequences))
        held = [domain.sequences[i] for i in sorted(order[:users])]
        domain.sequences = [domain.sequences[i] for i in sorted(order[users:])]
        kept = [i for i, s in enumerate(held) if s[-1] not in s[:-1]]  # a repeated item is never listed again
        if not kept:
            raise ValueError(f"{domain.folder}: the {users} held-out users' last items all repeat an earlier item")
        self.folder, self.context = domain.folder, domain.context
        self._cases = TestCases("loo", kept, [held[i][:-1] for i in kept], [[held[i][-1]] for i in kept])

    def cases(self, users: int):
        """The held-out users' cases (all of them, whatever `users`)."""
        return self._cases


def next_item(domain: Domain, rng) -> tuple:
    """(history: up to HISTORY rows, the next row, not in it) drawn from the domain's log: a source's last
    transition, else any."""
    for _ in range(1000):
        seq = domain.sequences[rng.integers(len(domain.sequences))]
        t = len(seq) - 1 if domain.train else int(rng.integers(1, len(seq)))
        if seq[t] not in seq[max(0, t - HISTORY):t]:
            return seq[max(0, t - HISTORY):t], seq[t]
    raise ValueError(f"{domain.folder}: its sequences' next items all repeat an earlier item: nothing to train on")


def listwise_loss(ranker: Reranker, domain: Domain, rng, size: int = 32, draw: int = DRAW) -> torch.Tensor:
    """Softmax cross-entropy over the base rule's top `ranker.rerank` of `size` next items among them (histories
    drawn `draw` at a time until enough are)."""
    histories, targets, parts = [], [], []
    for _ in range(1000):
        if len(histories) >= size:
            break
        drawn = [next_item(domain, rng) for _ in range(draw)]
        with torch.no_grad():  # what the features read of the catalog, once per drawn history
            part = domain.context.catalog_parts([h for h, _ in drawn])
        top = torch.topk(mask_history(part["rule"].clone(), [h for h, _ in drawn]), ranker.rerank).indices
        hit = (top == torch.as_tensor([t for _, t in drawn])[:, None]).any(1).nonzero().flatten()
        histories += [drawn[i][0] for i in hit.tolist()]
        targets += [drawn[i][1] for i in hit.tolist()]
        parts.append({name: value[hit] for name, value in part.items()})
    if not histories:
        raise ValueError(f"{domain.folder}: no next item among the base rule's top {ranker.rerank}")
    histories, targets = histories[:size], torch.as_tensor(targets[:size])
    parts = {name: torch.cat([p[name] for p in parts])[:size] for name in parts[0]}
    _, top, x = domain.context.top(histories, ranker.rerank, parts)
    return F.cross_entropy(ranker(x).squeeze(-1), (top == targets[:, None]).int().argmax(1))


def ndcg_at_10(scores: torch.Tensor, targets: Sequence[int]) -> np.ndarray:
    """Per-row NDCG@10 of one target (ties count in its favour)."""
    t = torch.as_tensor(list(targets))
    return rank_gains((scores > scores[torch.arange(len(t)), t][:, None]).sum(1), 10).numpy()


def evaluate(ranker: Reranker, domain: Domain, users: int) -> tuple:
    """(user ids, per-user NDCG@10) of the domain's seeded users under its protocol, history excluded."""
    cases = domain.cases(users)
    return cases.user_ids, ndcg_at_10(ranker.scores(domain.context, cases.histories), [t[0] for t in cases.targets])


def fit(sources: dict, fits: dict, cfg, log: Callable[[str], None] = print, start: Reranker = None) -> tuple:
    """(the re-ranker at its chosen step, {"step", "curve": {fit domain: {step: NDCG@10}}}): trained on the
    `sources` (name -> Domain, train=True) from `start` (a copy; None: the base rule), chosen on the `fits` (name ->
    Domain or Holdout) by the mean over them of NDCG@10 relative to step 0."""
    rng = np.random.default_rng(cfg.seed)
    ranker = Reranker(cfg.hidden, cfg.rerank, seed=cfg.seed) if start is None else copy.deepcopy(start).train()
    opt = torch.optim.AdamW(ranker.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    names, curve, best = sorted(sources), {f: {} for f in fits}, (None, -np.inf, None)
    origin = "the base rule" if start is None else "the start"
    for step in range(cfg.steps + 1):
        if step:
            k = cfg.domains_per_step  # k consecutive sources of the round robin, batch / k histories each
            loss = sum(listwise_loss(ranker, sources[names[((step - 1) * k + j) % len(names)]], rng, cfg.batch // k,
                                     DRAW // k) for j in range(k)) / k
            opt.zero_grad()
            loss.backward()
            opt.step()
        if step % cfg.every and step != cfg.steps:
            continue
        ranker.eval()
        for f, domain in fits.items():
            curve[f][step] = float(evaluate(ranker, domain, cfg.fit_users)[1].mean())
        ranker.train()
        score = float(np.mean([curve[f][step] / max(curve[f][0], 1e-12) for f in fits]))
        log(f"rerank: step {step}" + (f", loss {loss.item():.3f}" if step else "") + ", NDCG@10 " +
            ", ".join(f"{f} {curve[f][step]:.4f}" for f in fits) + f" ({score:.3f} of {origin})")
        if score > best[1]:
            best = (step, score, copy.deepcopy(ranker))
    return best[2].eval(), {"step": best[0], "curve": curve}
