"""Does a ranker that sees only relations carry to an unseen domain where the model's learned parts do not?

The learned parts of the dense head that read where items sit in text space (the state query, the item tower)
learn each source's catalog; the scalar head learns one content / popularity balance (docs/benchmarks.md, "What
the head learned"). This bench trains a ranker that cannot memorize a catalog: per (history, candidate) it reads
only relations, 15 numbers:
    the cosine of the candidate to each of the history's last 5 items and whether that item exists (5 + 5),
    the content kNN cosine (recency-weighted mean of the last 5, as the priors) raw and z-scored over the catalog,
    the candidate's log popularity z-scored over the catalog, the history's mean of that and its coherence (the
    mean cosine of consecutive items among its last 5),
item vectors centered per catalog (as text_dense and its priors see them), popularity the domain's log before
the protocol's targets. An MLP (15 -> 64 -> 64 -> 1) is trained with softmax cross-entropy on next items of the
source domains of each target's largest mix (recgpt.data.mixes: never the target, its fit domain or a near-
duplicate), over 4,096 uniform candidates plus each history's 64 nearest and the 64 most popular items and the
batch's targets, domains in turn; its step is chosen on the fit domain's LOO users. Reported on the target's
seeded LOO and cold users (the scaling bench's users), history excluded, against content kNN + popularity
(w * z(cosine) + (1 - w) * z(log count), bench/balance.py's form): w fitted on the fit domain (priors) and chosen per
user from the user's own history with the log prior (priors self, what recgpt ships). Paired 95% intervals.

    python bench/relational.py --report docs/benchmarks/relational.md

`--evidence` adds what the shipped rule reads and its score; `--residual` makes the ranker the rule's score plus the
MLP (step 0 is the rule); `--rerank K` trains that sum only on the rule's top K (softmax over them, next items among
them) and lets it re-order only those, the loss reading the part of the list that NDCG@10 reads. `--cooc` adds the
domain log's item co-occurrence, read at prediction as popularity is (window 3, both directions, cosine-normalized
C[a, b] / sqrt(occ a occ b), summed over the history's last 5 items weighted 0.7^age): its value and z-score over the
catalog and the history's support (log1p of its last items' occurrence counts, 0.7^age); the base rule becomes the
shipped rule + 0.5 z(co-occurrence); sources train on each sequence's last transition only, popularity and
co-occurrence counted without it; the row `priors self + cooc` is the shipped rule + beta z(co-occurrence), beta of
{0, .25, .5, 1, 2} chosen on the fit domain per protocol.
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path[0] = str(Path(__file__).resolve().parents[1])  # the repo, not bench/

from bench.balance import WEIGHTS, load_domain, own_table, self_points  # noqa: E402

LAST = 5
N_FEATURES = 2 * LAST + 5
N_COOC = 3  # --cooc: co-occurrence, its z-score, the history's support
COOC_BASE = 0.5  # the base rule's weight on z(co-occurrence) under --cooc
BETAS = (0.0, 0.25, 0.5, 1.0, 2.0)
N_EVIDENCE = 2 * len(WEIGHTS) + 3  # --evidence: log prior, own-item gains and their flag, the rule's w and score
MIXES = {"mix12-amazon_scientific+amazon14_beauty": ("amazon_scientific", "amazon14_beauty"),
         "mix11-steam+yelp": ("steam", "yelp")}


def cooc_matrix(rows, n: int, window: int = 3) -> tuple:
    """(the log's co-occurrence C[a, b] / sqrt(occ a occ b), scipy CSR [n, n]: pairs at most `window` apart in a
    sequence, both directions, an item never with itself; Float[n] occ: each item's pair count + 1)."""
    import scipy.sparse as sp

    r, c = [], []
    for seq in rows:
        seq = np.asarray(seq, dtype=np.int64)
        for gap in range(1, window + 1):
            a, b = seq[:-gap], seq[gap:]
            keep = a != b
            r += [a[keep], b[keep]]
            c += [b[keep], a[keep]]
    r = np.concatenate(r) if r else np.zeros(0, np.int64)
    c = np.concatenate(c) if c else np.zeros(0, np.int64)
    m = sp.csr_matrix((np.ones(len(r), np.float32), (r, c)), shape=(n, n))
    m.sum_duplicates()
    occ = np.asarray(m.sum(1)).ravel().astype(np.float32) + 1.0
    scale = sp.diags(1.0 / np.sqrt(occ))
    return (scale @ m @ scale).tocsr(), occ


class Domain:
    """A prepared domain under one protocol: centered unit item vectors, z log popularity, log sequences (rows)."""

    def __init__(self, folder: Path, cache_dir: str, protocol: str = "loo", evidence: bool = False,
                 cooc: bool = False, train: bool = False):
        import torch

        from bench.balance import log_gains, own_ranker
        from recgpt.predict.protocols import popularity_before_targets, sequences_before_targets

        self.ids, self.inter, self.catalog, self.emb = load_domain(folder, cache_dir)
        self.protocol = protocol
        counts = np.asarray(popularity_before_targets(self.inter, self.catalog, protocol, 1, 0), dtype=np.float32)
        log_pop = torch.log1p(torch.from_numpy(counts.copy()))
        self.zpop = (log_pop - log_pop.mean()) / log_pop.std().clamp_min(1e-6)
        self.top_pop = torch.topk(self.zpop, min(64, len(self.zpop))).indices
        rows = [self.catalog.rows([str(i) for i in s])[0] for s in sequences_before_targets(self.inter, protocol, 1, 0)]
        self.sequences = [r for r in rows if len(r) >= 2]
        self.cooc, self.train = cooc, train and cooc
        if self.train:  # train on last transitions only; count what precedes them
            self.sequences = [r for r in rows if len(r) >= 3]
            rows = [r[:-1] for r in rows]
            counts = np.bincount(np.concatenate([np.asarray(r, dtype=np.int64) for r in rows] + [np.zeros(0, np.int64)]),
                                 minlength=len(self.ids)).astype(np.float32)
            log_pop = torch.log1p(torch.from_numpy(counts))
            self.zpop = (log_pop - log_pop.mean()) / log_pop.std().clamp_min(1e-6)
            self.top_pop = torch.topk(self.zpop, min(64, len(self.zpop))).indices
        if cooc:
            self.cn, self.occ = cooc_matrix(rows, len(self.ids))
        self.ranks = own_ranker(self.inter, self.catalog, self.emb, protocol) if evidence else None
        if evidence:  # the log's balance over w, read as the shipped rule reads it (no target)
            log = torch.as_tensor(log_gains(self.inter, self.catalog, protocol, self.ranks))
            self.log_prior = log / log.max().clamp_min(1e-12)

    def evidence(self, histories) -> tuple:
        """(Float[B, N_EVIDENCE - 1]: the log prior, the history's own-item gains over w (its last item ranked from
        the items before it; 0 and flag 0 without one) and the shipped rule's w; Float[B]: that w)."""
        import torch

        from recgpt.predict.self_weights import LOG_STRENGTH, own_cases

        gains, has = torch.zeros(len(histories), len(WEIGHTS)), torch.zeros(len(histories))
        users, before, last = own_cases(histories)
        if users:
            rank, repeated = self.ranks(before, last)
            index = torch.as_tensor(users)[~repeated]
            gains[index] = 1 / torch.log2(rank[~repeated].float() + 2)
            has[index] = 1.0
        score = LOG_STRENGTH * self.log_prior[None] + gains
        w = torch.as_tensor(WEIGHTS)[torch.argmax(score - 1e-12 * torch.arange(len(WEIGHTS)), 1)]  # ties: earlier
        return torch.cat([self.log_prior[None].expand(len(histories), -1), gains, has[:, None], w[:, None]], 1), w

    def features(self, histories, candidates=None):
        """Float[B, C, N_FEATURES (+ N_EVIDENCE)] of each history against the candidate rows (all items when None)."""
        import torch

        from recgpt.predict.baselines import normalize_rows, user_vectors

        emb = self.emb if candidates is None else self.emb[candidates]
        zpop = self.zpop if candidates is None else self.zpop[candidates]
        last = torch.zeros(len(histories), LAST, emb.shape[1])
        exists = torch.zeros(len(histories), LAST)
        for b, h in enumerate(histories):
            recent = list(h)[-LAST:][::-1]
            last[b, :len(recent)] = self.emb[torch.as_tensor(recent)]
            exists[b, :len(recent)] = 1.0
        user = normalize_rows(user_vectors(histories, self.emb))
        full = user @ self.emb.t()
        mu, sd = full.mean(1, keepdim=True), full.std(1, keepdim=True).clamp_min(1e-6)
        knn = full if candidates is None else full[:, candidates]
        sims = torch.einsum("bkd,cd->bck", last, emb)  # [B, C, K]
        hist_pop = torch.stack([self.zpop[torch.as_tensor(list(h)[-LAST:])].mean() for h in histories])
        pairs = (last[:, :-1] * last[:, 1:]).sum(-1) * exists[:, 1:]  # consecutive cosines among the last items
        coherence = pairs.sum(1) / exists[:, 1:].sum(1).clamp_min(1)
        b, c = knn.shape
        zknn = (knn - mu) / sd
        per_user = torch.stack([hist_pop, coherence], 1)[:, None].expand(b, c, 2)
        parts = [sims, exists[:, None].expand(b, c, LAST), knn[..., None], zknn[..., None],
                 zpop[None, :, None].expand(b, c, 1), per_user]
        base = 0.0
        if self.cooc:
            cf, zcf, support = self.cooccurrence(histories)
            if candidates is not None:
                cf, zcf = cf[:, candidates], zcf[:, candidates]
            parts += [cf[..., None], zcf[..., None], support[:, None, None].expand(b, c, 1)]
            base = COOC_BASE * zcf
        if self.ranks is not None:  # --evidence: what the shipped rule reads, and the rule's own score
            seen, w = self.evidence(histories)
            rule = w[:, None] * zknn + (1 - w[:, None]) * zpop[None] + base
            parts += [seen[:, None].expand(b, c, -1), rule[..., None]]
        return torch.cat(parts, -1)

    def cooccurrence(self, histories) -> tuple:
        """(Float[B, N] co-occurrence of every item with the history's last 5 (0.7^age), its z-score over the
        catalog, Float[B] the history's support)."""
        import scipy.sparse as sp
        import torch

        r, c, v, support = [], [], [], torch.zeros(len(histories))
        for b, h in enumerate(histories):
            for k, a in enumerate(list(h)[-LAST:][::-1]):
                r.append(b), c.append(int(a)), v.append(0.7 ** k)
                support[b] += 0.7 ** k * float(self.occ[int(a)])
        weights = sp.csr_matrix((np.asarray(v, np.float32), (r, c)), shape=(len(histories), len(self.ids)))
        cf = torch.from_numpy(np.asarray((weights @ self.cn).todense(), dtype=np.float32))
        zcf = (cf - cf.mean(1, keepdim=True)) / cf.std(1, keepdim=True).clamp_min(1e-6)
        return cf, zcf, torch.log1p(support)

    def rule(self, histories, beta: float = None):
        """Float[B, N]: the shipped rule's score w z(kNN) + (1 - w) z(pop) of every item (+ beta z(co-occurrence)
        under --cooc, COOC_BASE unless given), history items -inf."""
        import torch

        from recgpt.predict.baselines import normalize_rows, user_vectors

        full = normalize_rows(user_vectors(histories, self.emb)) @ self.emb.t()
        zknn = (full - full.mean(1, keepdim=True)) / full.std(1, keepdim=True).clamp_min(1e-6)
        w = self.evidence(histories)[1][:, None]
        score = w * zknn + (1 - w) * self.zpop[None]
        if self.cooc:
            beta = COOC_BASE if beta is None else beta
            if beta:
                score = score + beta * self.cooccurrence(histories)[1]
        for i, h in enumerate(histories):
            score[i, torch.as_tensor(list(h))] = -float("inf")
        return score

    def top_features(self, histories, top, text: bool = False):
        """Float[B, K, F]: the features of each history's own candidates (rows of `top`, Long[B, K]); with `text`
        the history's content query and each candidate's vector appended (F + 2 d: what --bilinear reads)."""
        import torch

        from recgpt.predict.baselines import normalize_rows, user_vectors

        x = self.features(histories)
        x = torch.gather(x, 1, top[..., None].expand(-1, -1, x.shape[-1]))
        if not text:
            return x
        q = normalize_rows(user_vectors(histories, self.emb))
        return torch.cat([x, q[:, None].expand(-1, top.shape[1], -1), self.emb[top]], -1)

    def scores(self, ranker, histories, rerank: int = 0, batch: int = 32):
        """Float[B, N]: the ranker's score of every item, history items -inf; with `rerank` K the ranker orders the
        rule's top K and the rest keeps the rule's order below them."""
        import torch

        out = []
        with torch.no_grad():
            for s in range(0, len(histories), batch):
                part = histories[s:s + batch]
                if rerank:
                    x = self.rule(part)
                    values, top = torch.topk(x, rerank + 1)
                    new = ranker(self.top_features(part, top[:, :rerank], ranker.text)).squeeze(-1)
                    # just above the (K+1)-th rule score, no large offset: float32 would tie close scores
                    x.scatter_(1, top[:, :rerank], values[:, rerank:] + 1 + new - new.min(1, keepdim=True).values)
                else:
                    x = ranker(self.features(part)).squeeze(-1)
                    for i, h in enumerate(part):
                        x[i, torch.as_tensor(list(h))] = -float("inf")
                out.append(x)
        return torch.cat(out)


def ndcg(scores, targets) -> np.ndarray:
    import torch

    t = torch.as_tensor(targets)
    rank = (scores > scores[torch.arange(len(t)), t][:, None]).sum(1)
    return torch.where(rank < 10, 1 / torch.log2(rank.float() + 2), torch.zeros(())).numpy()


def make_ranker(seed: int, width: int, residual: bool = False, bilinear: int = 0, dim: int = 384):
    """The MLP; with `residual` (needs --evidence) exp(t) * the rule's score (the last feature) + the MLP, its last
    layer at zero: untrained it ranks as the shipped rule does. With `bilinear` R (needs --rerank) also
    (q A) . (c B) over the history's content query q and the candidate's vector c (the features' last 2 `dim`
    columns), A random, B at zero: a term that can learn which texts follow which, still the rule untrained."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    mlp = nn.Sequential(nn.Linear(width, 64), nn.GELU(), nn.Linear(64, 64), nn.GELU(), nn.Linear(64, 1))
    mlp.text = False
    if not residual:
        return mlp

    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.mlp, self.log_scale, self.text = mlp, nn.Parameter(torch.zeros(1)), bool(bilinear)
            nn.init.zeros_(mlp[-1].weight)
            nn.init.zeros_(mlp[-1].bias)
            if bilinear:
                self.a = nn.Parameter(torch.randn(dim, bilinear) / dim ** 0.5)
                self.b = nn.Parameter(torch.zeros(dim, bilinear))

        def forward(self, x):
            if not self.text:
                return self.log_scale.exp() * x[..., -1:] + self.mlp(x)
            x, q, c = x[..., :width], x[..., width:width + dim], x[..., width + dim:]
            pair = ((q @ self.a) * (c @ self.b)).sum(-1, keepdim=True)
            return self.log_scale.exp() * x[..., -1:] + self.mlp(x) + pair

    return Residual()


def batch_loss(ranker, dom: Domain, rng, size: int = 32, uniform: int = 4096):
    """Softmax cross-entropy of `size` next items of the domain's log over shared candidates."""
    import torch
    import torch.nn.functional as F

    histories, targets = map(list, zip(*(next_item(dom, rng) for _ in range(size))))
    from recgpt.predict.baselines import normalize_rows, user_vectors

    near = torch.topk(normalize_rows(user_vectors(histories, dom.emb)) @ dom.emb.t(), min(64, len(dom.ids))).indices
    pool = torch.cat([torch.as_tensor(rng.integers(0, len(dom.ids), uniform)), near.reshape(-1), dom.top_pop,
                      torch.as_tensor(targets)])
    candidates, inverse = torch.unique(pool, return_inverse=True)
    label = inverse[-size:]
    logits = ranker(dom.features(histories, candidates)).squeeze(-1)
    where = {int(c): i for i, c in enumerate(candidates)}
    for b, h in enumerate(histories):
        seen = [where[r] for r in set(h) if r in where]
        if seen:
            logits[b, seen] = -float("inf")
    return F.cross_entropy(logits, label)


def listwise_loss(ranker, dom: Domain, rng, rerank: int, size: int = 32, draw: int = 128):
    """Softmax cross-entropy over the rule's top `rerank` of `size` next items of the domain's log that are among
    them (histories drawn `draw` at a time until enough are)."""
    import torch
    import torch.nn.functional as F

    histories, targets = [], []
    while len(histories) < size:
        drawn = [next_item(dom, rng) for _ in range(draw)]
        with torch.no_grad():
            top = torch.topk(dom.rule([h for h, _ in drawn]), rerank).indices
        hit = (top == torch.as_tensor([t for _, t in drawn])[:, None]).any(1)
        histories += [drawn[i][0] for i in torch.nonzero(hit).flatten().tolist()]
        targets += [drawn[i][1] for i in torch.nonzero(hit).flatten().tolist()]
    histories, targets = histories[:size], torch.as_tensor(targets[:size])
    with torch.no_grad():
        top = torch.topk(dom.rule(histories), rerank).indices
    x = dom.top_features(histories, top, ranker.text)
    return F.cross_entropy(ranker(x).squeeze(-1), (top == targets[:, None]).int().argmax(1))


def next_item(dom: Domain, rng) -> tuple:
    """(history: up to 50 rows, next row not in it) drawn from the domain's log."""
    while True:
        seq = dom.sequences[rng.integers(len(dom.sequences))]
        t = len(seq) - 1 if dom.train else int(rng.integers(1, len(seq)))
        if seq[t] not in seq[max(0, t - 50):t]:
            return seq[max(0, t - 50):t], seq[t]


def evaluate(ranker, dom: Domain, users: int, rerank: int = 0) -> tuple:
    """(user ids, per-user NDCG@10) of the domain's seeded users under its protocol."""
    from recgpt.predict.protocols import build_test_cases

    cases = build_test_cases(dom.inter, dom.catalog, dom.protocol, 1, 0, users)
    return cases.user_ids, ndcg(dom.scores(ranker, cases.histories, rerank), [t[0] for t in cases.targets])


def train(sources: dict, fits: dict, steps: int, every: int, users: int, seed: int, log,
          residual: bool = False, rerank: int = 0, bilinear: int = 0) -> dict:
    """One ranker trained on the sources; per fit domain, {"ranker": the ranker at its best step (every `every`) on
    that domain's users, "step": that step, "curve": {step: NDCG@10}}."""
    import copy

    import torch

    rng = np.random.default_rng(seed)
    first = next(iter(fits.values()))
    width = N_FEATURES + (N_EVIDENCE if first.ranks is not None else 0) + (N_COOC if first.cooc else 0)
    ranker = make_ranker(seed, width, residual, bilinear, next(iter(fits.values())).emb.shape[1])
    opt = torch.optim.AdamW(ranker.parameters(), lr=1e-3, weight_decay=0.01)
    names, chosen = sorted(sources), {f: {"curve": {}} for f in fits}
    for step in range(0 if residual else 1, steps + 1):  # residual: step 0, the rule itself, is a candidate
        dom = sources[names[step % len(names)]]
        loss = listwise_loss(ranker, dom, rng, rerank) if rerank else batch_loss(ranker, dom, rng)
        if step:
            opt.zero_grad()
            loss.backward()
            opt.step()
        if step % every:
            continue
        for f, dom in fits.items():
            c = chosen[f]
            c["curve"][step] = float(evaluate(ranker, dom, users, rerank)[1].mean())
            log(f"step {step}: loss {loss.item():.3f}, {f} NDCG@10 {c['curve'][step]:.4f}")
            if "step" not in c or c["curve"][step] > c["curve"][c["step"]]:
                c["step"], c["ranker"] = step, copy.deepcopy(ranker)
    return chosen


def rule_ndcg(dom: Domain, users: int, beta: float, batch: int = 64) -> np.ndarray:
    """Per-user NDCG@10 of the shipped rule + beta z(co-occurrence) on the domain's seeded users."""
    from recgpt.predict.protocols import build_test_cases

    cases = build_test_cases(dom.inter, dom.catalog, dom.protocol, 1, 0, users)
    targets = [t[0] for t in cases.targets]
    return np.concatenate([ndcg(dom.rule(cases.histories[s:s + batch], beta), targets[s:s + batch])
                           for s in range(0, len(targets), batch)])


def target_rows(ranker, folder: Path, cache: str, fit_folder: Path, users: int, evidence: bool,
                rerank: int = 0, cooc: bool = False) -> dict:
    """Per protocol: per-user NDCG@10 of the ranker, the priors (w fitted on the fit domain), the priors with
    per-user w (log prior, the shipped strength), content kNN and popularity, on the same users."""
    from recgpt.predict.self_weights import LOG_STRENGTH

    out = {}
    for protocol in ("loo", "cold"):
        dom = Domain(folder, cache, protocol, evidence, cooc)
        user_ids, model = evaluate(ranker, dom, users, rerank)
        own = own_table(dom.inter, dom.catalog, dom.emb, protocol, users)
        _, fit_inter, fit_catalog, fit_emb = load_domain(fit_folder, cache)
        fit_curve = np.mean(own_table(fit_inter, fit_catalog, fit_emb, protocol, users)["ndcg"], 0)
        grid = np.asarray(own["ndcg"])
        log = np.asarray(own["log"])
        chosen = self_points(own["own"], log / max(log.max(), 1e-12), LOG_STRENGTH)
        out[protocol] = {"user_ids": list(map(str, user_ids)), "ranker": model.round(5).tolist(),
                         "priors": grid[:, int(np.argmax(fit_curve))].tolist(),
                         "priors self": grid[np.arange(len(grid)), chosen].tolist(),
                         "content_knn": grid[:, WEIGHTS.index(1.0)].tolist(),
                         "popularity": grid[:, WEIGHTS.index(0.0)].tolist(),
                         "priors w": WEIGHTS[int(np.argmax(fit_curve))]}
        if cooc:  # the shipped rule + beta z(co-occurrence), beta chosen on the fit domain (ties: the smaller)
            fit_dom = Domain(fit_folder, cache, protocol, evidence, cooc)
            curve = {b: float(rule_ndcg(fit_dom, users, b).mean()) for b in BETAS}
            beta = max(BETAS, key=lambda b: (curve[b], -b))
            out[protocol].update({"priors self + cooc": rule_ndcg(dom, users, beta).tolist(), "cooc beta": beta,
                                  "cooc fit curve": curve, "rule check": float(rule_ndcg(dom, users, 0.0).mean())})
    return out


def report(results: dict, command: str) -> str:
    from recgpt.predict.transfer import bootstrap_ratio

    lines = ["<!-- written by bench/relational.py: rerun it to change this file -->",
             "# A ranker over relations only, trained on the sources, on unseen targets", "",
             f"command: `{command}`", "", " ".join(__doc__.split("\n\n")[1].split()), "",
             " ".join(__doc__.split("\n\n")[3].split()), "",
             "| target | protocol | users | step (fit domain) | ranker | priors (w) | priors self | content kNN | "
             "popularity | ranker / priors | ranker / priors self |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    if any("priors self + cooc" in r["loo"] for r in results.values()):  # its value after popularity's, ratios last
        lines[-2] = lines[-2].replace("popularity |", "popularity | priors self + cooc (beta) |") + (
            " ranker / priors self + cooc | priors self + cooc / priors self | priors self + cooc / priors |")
        lines[-1] += "---|---|---|---|"
    for target, r in results.items():
        for p in ("loo", "cold"):
            row = {k: np.asarray(v) for k, v in r[p].items() if isinstance(v, list) and k != "user_ids"}
            cells = [f"{row[k].mean():.4f}" for k in ("ranker", "priors", "priors self", "content_knn", "popularity")]
            cells[1] += f" ({r[p]['priors w']})"
            ratios = [bootstrap_ratio(row["ranker"], row[k]) for k in ("priors", "priors self")]
            if "priors self + cooc" in row:
                cells.append(f"{row['priors self + cooc'].mean():.4f} ({r[p]['cooc beta']})")
                ratios += [bootstrap_ratio(row["ranker"], row["priors self + cooc"]),
                           bootstrap_ratio(row["priors self + cooc"], row["priors self"]),
                           bootstrap_ratio(row["priors self + cooc"], row["priors"])]
            lines.append(f"| {target} | {p} | {len(row['ranker'])} | {r['step']} | " + " | ".join(cells) + " | "
                         + " | ".join(f"{x:.3f} [{lo:.3f}, {hi:.3f}]" for x, lo, hi in ratios) + " |")
    lines += ["", "Fit-domain NDCG@10 per step (the step is chosen on it):", ""]
    lines += [f"- {t} (fit domain {r['fit_domain']}): " + ", ".join(f"{s}: {v:.4f}" for s, v in r["curve"].items())
              for t, r in results.items()]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prepared", default="outputs/scaling/prepared")
    parser.add_argument("--embed-cache", default="outputs/embed_cache")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--every", type=int, default=250)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mixes", nargs="+", default=list(MIXES), help="the largest mixes to train on (of MIXES)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--residual", action="store_true", help="with --evidence: the rule's score plus the MLP, "
                        "its last layer at zero (step 0 is the rule)")
    parser.add_argument("--evidence", action="store_true", help="the ranker also reads what the shipped per-user "
                        "rule reads (the log prior, the own-item gains) and the rule's score")
    parser.add_argument("--rerank", type=int, default=0, help="with --residual: re-rank the rule's top K, trained "
                        "with softmax cross-entropy over those K on next items among them (0: off)")
    parser.add_argument("--bilinear", type=int, default=0, help="with --rerank: add (q A) . (c B) of rank R over "
                        "the history's content query and the candidate's vector, B at zero (0: off)")
    parser.add_argument("--cooc", action="store_true", help="with --rerank: the domain log's co-occurrence as "
                        "features and in the base rule; sources train on last transitions (module docstring)")
    parser.add_argument("--out", default="outputs/relational", help="one json per target: a rerun resumes")
    parser.add_argument("--report", default="docs/benchmarks/relational.md")
    args = parser.parse_args(argv)
    if args.residual and not args.evidence:
        parser.error("--residual adds the MLP to the rule's score, which only --evidence gives")
    if args.rerank and not args.residual:
        parser.error("--rerank re-ranks the rule's top K, which only --evidence --residual starts from")
    if args.bilinear and not args.rerank:
        parser.error("--bilinear is a term of the --rerank ranker")
    if args.cooc and not args.rerank:
        parser.error("--cooc is a part of the --rerank ranker")
    import torch

    from recgpt.data.mixes import Plan, excluded

    torch.set_num_threads(args.threads)
    plan, prepared, out = Plan(), Path(args.prepared), Path(args.out)
    results = {}
    for mix, targets in ((m, MIXES[m]) for m in args.mixes):
        paths = [out / f"{t}.json" for t in targets]
        if all(p.is_file() for p in paths):
            results.update({t: json.loads(p.read_text()) for t, p in zip(targets, paths)})
            continue
        banned = set().union(*(excluded(plan, t) for t in targets))
        sources = {d: Domain(prepared / d, args.embed_cache, "loo", args.evidence, args.cooc, train=True)
                   for d in plan.domains if d not in banned}
        print(f"{mix}: sources {sorted(sources)}", flush=True)
        fits = {plan.fit_domains[t][0]: t for t in targets}
        chosen = train(sources, {f: Domain(prepared / f, args.embed_cache, "loo", args.evidence, args.cooc)
                                 for f in fits},
                       args.steps, args.every, args.users, args.seed, lambda m: print(f"{mix}: {m}", flush=True),
                       args.residual, args.rerank, args.bilinear)
        for fit_name, target in fits.items():
            c = chosen[fit_name]
            result = target_rows(c["ranker"], prepared / target, args.embed_cache, prepared / fit_name, args.users,
                                 args.evidence, args.rerank, args.cooc)
            result.update(step=c["step"], curve=c["curve"], fit_domain=fit_name, sources=sorted(sources))
            path = out / f"{target}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(result))
            results[target] = result
    command = "python bench/relational.py" + "".join(" " + a for a in (sys.argv[1:] if argv is None else argv))
    text = report(results, command)
    Path(args.report).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
