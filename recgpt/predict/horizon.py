"""Recommendation lists from a next-item scorer: one-step top-K or multi-step generation.

Multi-step strategies append the chosen item to the history and score again (the next step's history
includes it). No item repeats inside one list; the user's own history is excluded unless allow_history.
  exact   one step, top-K
  greedy  K steps, best remaining item each step
  sample  K steps, one item sampled from softmax(log p / temperature) each step
  beam    item-level beam search of width beam_size over K steps; the best sequence
  rra     n_samples sampled sequences, score(i) = sum over sequences of 1 / rank of i in the sequence
  ra      n_samples sampled sequences, score(i) = sum over steps and sequences of p(i); excluded items are
          removed after the sum (the step distributions are summed unmasked)
`scorer` is anything with `log_probs(histories) -> Float[B, N]` (-inf = not recommendable) and `n_items`; one
with `rollout(histories)` grows the histories its own way (ItemScorer: a KV cache, recgpt.predict.rollout).
The multi-step strategies need the whole next-item distribution of every row at every step: they run on as
many histories at a time as keep one [rows, N] float32 matrix under `score_bytes` (the lists do not depend on
how the histories are grouped: samples are seeded per key).
"""
from typing import Optional, Sequence

import torch

from recgpt.config.args import STRATEGIES  # noqa: F401 (the strategies below)
from recgpt.predict.ranking import NEG_INF, SCORE_BYTES, histories_per_pass
from recgpt.predict.rollout import HistoryRollout


def _mask(n_items: int, rows: Sequence[Sequence[int]], device) -> torch.Tensor:
    """Bool[B, N], True at the given rows of each batch entry (-1 entries ignored)."""
    mask = torch.zeros(len(rows), n_items + 1, dtype=torch.bool, device=device)
    for b, r in enumerate(rows):
        if len(r):
            mask[b, torch.as_tensor(list(r), dtype=torch.long, device=device)] = True
    return mask[:, :n_items]


def _ranked(scores: torch.Tensor, k: int):
    """Best-first rows and scores of each row of `scores`, ties to the smaller row, -inf dropped."""
    vals, idx = torch.sort(scores, dim=1, descending=True, stable=True)
    return _listed(vals[:, :k].cpu(), idx[:, :k].cpu())


def _listed(vals: torch.Tensor, idx: torch.Tensor):
    """Best-first (values, rows) [B, k] as lists, -inf entries dropped."""
    recs, out_scores = [], []
    for v, i in zip(vals, idx):
        keep = torch.isfinite(v)
        recs.append(i[keep].tolist())
        out_scores.append(v[keep].tolist())
    return recs, out_scores


def reciprocal_rank_scores(sequences: torch.Tensor, n_items: int) -> torch.Tensor:
    """Float[B, N]: sum over sequences of 1/rank (rank = 1-based step) of each item; sequences Long[B, S, T]
    with -1 for a step that produced nothing; items never generated score -inf."""
    batch, _, steps = sequences.shape
    weights = (1.0 / torch.arange(1, steps + 1, dtype=torch.float32, device=sequences.device)).expand_as(sequences)
    out = torch.zeros(batch, n_items + 1, device=sequences.device)
    out.scatter_add_(1, torch.where(sequences >= 0, sequences, n_items).reshape(batch, -1),
                     weights.reshape(batch, -1))
    out = out[:, :n_items]
    return out.masked_fill(out == 0, NEG_INF)


def gumbel_noise(keys: Sequence[int], step: int, n_items: int, seed: int) -> torch.Tensor:
    """Float[B, N] Gumbel noise drawn per (seed, key, step): a row's sample never depends on which other rows
    share its batch, so results do not change with the batch size. One generator reseeded per row, uniforms
    written into one tensor and transformed at once: equal to `gumbel_noise_reference`, bit for bit."""
    keys = list(keys)
    u = torch.empty(len(keys), n_items)
    gen = torch.Generator()
    for row, key in enumerate(keys):
        gen.manual_seed((seed * 1_000_003 + int(key)) * 4099 + step)
        torch.rand(n_items, generator=gen, out=u[row])
    return u.clamp_(1e-12, 1 - 1e-12).log_().neg_().log_().neg_()


def gumbel_noise_reference(keys: Sequence[int], step: int, n_items: int, seed: int) -> torch.Tensor:
    """The simple form of `gumbel_noise`: a fresh generator and the transform per row."""
    rows = []
    for key in keys:
        gen = torch.Generator().manual_seed((seed * 1_000_003 + int(key)) * 4099 + step)
        u = torch.rand(n_items, generator=gen).clamp_(1e-12, 1 - 1e-12)
        rows.append(-torch.log(-torch.log(u)))
    return torch.stack(rows)


def start_rollout(scorer, histories) -> HistoryRollout:
    """The scorer's own rollout (`scorer.rollout`), else one that re-scores the grown histories each step."""
    return scorer.rollout(histories) if hasattr(scorer, "rollout") else HistoryRollout(scorer, histories)


def _rollout(scorer, histories, steps, exclude, temperature, keys, seed, greedy=False, collect_probs=False):
    """Generate `steps` items per history, each appended to the history before the next step. Returns
    (Long[B, T] rows or -1, Float[B, T] log-probs, summed step probabilities Float[B, N] or None)."""
    n_items, batch = scorer.n_items, len(histories)
    lists = [[] for _ in range(batch)]
    items = torch.full((batch, steps), -1, dtype=torch.long)
    logps = torch.full((batch, steps), NEG_INF)
    prob_sum = None
    rollout = start_rollout(scorer, histories)
    for t in range(steps):
        if t:
            rollout.advance(range(batch), items[:, t - 1].tolist())
        logp = rollout.log_probs().float().cpu()
        if collect_probs:
            probs = torch.exp(logp)
            prob_sum = probs if prob_sum is None else prob_sum + probs
        masked = logp.masked_fill(_mask(n_items, [list(e) + lst for e, lst in zip(exclude, lists)], "cpu"), NEG_INF)
        alive = torch.isfinite(masked).any(dim=1)
        if greedy:
            choice = masked.argmax(dim=1)
        else:  # Gumbel-max: argmax(log p / T + G) is a draw from softmax(log p / T)
            choice = (masked / temperature + gumbel_noise(keys, t, n_items, seed)).argmax(dim=1)
        chosen_logp = logp.gather(1, choice[:, None]).squeeze(1)
        for b in range(batch):
            if alive[b]:
                lists[b].append(int(choice[b]))
                items[b, t] = int(choice[b])
                logps[b, t] = float(chosen_logp[b])
    return items, logps, prob_sum


def _item_beam(scorer, histories, steps, exclude, width):
    """Item-level beam search: Long[B, T] best sequence per user and the log-prob of each step."""
    n_items, batch = scorer.n_items, len(histories)
    seqs = [[[]] for _ in range(batch)]  # per user: its beams' item lists
    step_logps = [[[]] for _ in range(batch)]
    cum = [torch.zeros(1) for _ in range(batch)]
    rollout = start_rollout(scorer, histories)  # its rows: the beams of every user, user by user
    for t in range(steps):
        flat = [(b, w) for b in range(batch) for w in range(len(seqs[b]))]
        logp = rollout.log_probs().float().cpu()
        logp = logp.masked_fill(_mask(n_items, [list(exclude[b]) + seqs[b][w] for b, w in flat], "cpu"), NEG_INF)
        start, parents, chosen = 0, [], []
        for b in range(batch):
            n = len(seqs[b])
            total = cum[b][:, None] + logp[start:start + n]
            start += n
            vals, idx = total.reshape(-1).topk(min(width, total.numel()))
            keep = torch.isfinite(vals)
            if not keep.any():  # the user's beams stay as they are
                parents += range(start - n, start)
                chosen += [-1] * n
                continue
            vals, idx = vals[keep], idx[keep]
            beams, items = (idx // n_items).tolist(), (idx % n_items).tolist()
            parents += [start - n + w for w in beams]
            chosen += items
            seqs[b] = [seqs[b][w] + [i] for w, i in zip(beams, items)]
            step_logps[b] = [step_logps[b][w] + [float(logp[start - n + w, i])] for w, i in zip(beams, items)]
            cum[b] = vals
        if t + 1 < steps:
            rollout.advance(parents, chosen)
    return [s[0] for s in seqs], [s[0] for s in step_logps]


def recommend_lists(scorer, histories: Sequence[Sequence[int]], k: int, strategy: str = "exact",
                    steps: Optional[int] = None, allow_history: bool = True, beam_size: int = 20,
                    n_samples: int = 8, temperature: float = 1.0, seed: int = 0,
                    keys: Optional[Sequence[int]] = None, score_bytes: int = SCORE_BYTES):
    """(rows, scores): a best-first list of at most k distinct catalog rows per history, and their scores
    (log-prob for exact/greedy/sample/beam, RRA or RA score for rra/ra). `steps` items are generated per
    sequence (default k); `keys` (default 0..B-1) seed each history's samples."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; one of {STRATEGIES}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    steps = k if steps is None else steps
    if steps < 1:
        raise ValueError(f"the number of generation steps must be >= 1, got {steps}")
    keys = list(range(len(histories))) if keys is None else list(keys)
    rows_per_user = {"beam": beam_size, "rra": n_samples, "ra": n_samples}.get(strategy, 1)
    users = histories_per_pass(scorer.n_items, rows_per_user, score_bytes)
    if strategy != "exact" and len(histories) > users:  # a catalog of millions: fewer histories per pass
        recs, scores = [], []
        for lo in range(0, len(histories), users):
            r, s = recommend_lists(scorer, histories[lo:lo + users], k, strategy, steps, allow_history, beam_size,
                                   n_samples, temperature, seed, keys[lo:lo + users], score_bytes)
            recs += r
            scores += s
        return recs, scores
    exclude = [[] if allow_history else sorted(set(int(i) for i in h)) for h in histories]
    if strategy == "exact":
        if hasattr(scorer, "top_k"):  # an ItemScorer: a catalog of any size, scored in chunks
            vals, rows = scorer.top_k(histories, k, exclude)
            return _listed(vals.cpu(), rows.cpu())
        logp = scorer.log_probs(histories).float()
        return _ranked(logp.masked_fill(_mask(scorer.n_items, exclude, logp.device), NEG_INF), k)
    if strategy in ("greedy", "sample"):
        items, logps, _ = _rollout(scorer, histories, steps, exclude, temperature, keys, seed,
                                   greedy=strategy == "greedy")
        return _trim(items.tolist(), logps.tolist(), k)
    if strategy == "beam":
        seqs, logps = _item_beam(scorer, histories, steps, exclude, beam_size)
        return _trim(seqs, logps, k)
    # rra / ra: n_samples sequences per user, sampled together as one batch of B * S histories.
    repeated = [h for h in histories for _ in range(n_samples)]
    rep_exclude = [e for e in exclude for _ in range(n_samples)]
    rep_keys = [key * n_samples + s for key in keys for s in range(n_samples)]
    items, _, prob_sum = _rollout(scorer, repeated, steps, rep_exclude, temperature, rep_keys, seed,
                                  collect_probs=strategy == "ra")
    if strategy == "rra":
        scores = reciprocal_rank_scores(items.view(len(histories), n_samples, steps), scorer.n_items)
    else:
        scores = prob_sum.view(len(histories), n_samples, -1).sum(dim=1).cpu()
        scores = scores.masked_fill(_mask(scorer.n_items, exclude, "cpu") | (scores <= 0), NEG_INF)
    return _ranked(scores, k)


def _trim(seqs, logps, k):
    recs, scores = [], []
    for seq, lp in zip(seqs, logps):
        pairs = [(i, s) for i, s in zip(seq, lp) if i >= 0][:k]
        recs.append([i for i, _ in pairs])
        scores.append([s for _, s in pairs])
    return recs, scores
