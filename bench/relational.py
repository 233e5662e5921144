"""A learned re-ranker trained on the source domains, applied to a domain it never saw (leave-one-domain-out).

Per (history, candidate) it reads relations only, never where an item sits in text space, so it cannot memorize a
catalog: the cosine of the candidate to each of the history's last 5 items and whether that item exists (5 + 5), the
content kNN cosine (recency-weighted mean of the last 5, as the priors) raw and z-scored over the catalog, the
candidate's log popularity z-scored over the catalog, the history's mean of that and its coherence (the mean cosine of
consecutive items among its last 5); the domain log's item co-occurrence, read at prediction as popularity is (pairs
at most 3 apart in a sequence, both directions, C[a, b] / sqrt(occ a occ b), summed over the history's last 5 items
weighted 0.7^age), its z-score over the catalog and the history's support (log1p of its last items' occurrence
counts, 0.7^age); what the shipped per-user rule reads (the log's prior over w, the history's own-item gains) and the
base rule's score: the shipped rule w z(kNN) + (1 - w) z(pop) + 0.5 z(co-occurrence). Item vectors are centered per
catalog, popularity and co-occurrence counted over the domain's log before the protocol's targets.

The ranker is exp(t) * the base rule's score + an MLP (43 -> 64 -> 64 -> 1) whose last layer starts at zero (step 0
is the base rule, and a candidate); it re-orders the base rule's top K (100) only. It is trained with softmax
cross-entropy over those K on next items among them, from the source domains of each target's largest mix
(recgpt.data.mixes: never the target, its fit domain or a near-duplicate), domains in turn; a source trains on each
sequence's last transition only, its popularity and co-occurrence counted without it. The step is chosen on the fit
domain's LOO users. Reported on the target's seeded LOO and cold users (the scaling bench's users), history excluded,
against content kNN + popularity (w * z(cosine) + (1 - w) * z(log count), bench/balance.py's form) with w fitted on
the fit domain (priors) or chosen per user from the user's own history with the log prior (priors self, what recgpt
ships), and against the shipped rule + beta z(co-occurrence), beta of {0, .25, .5, 1, 2} chosen on the fit domain
per protocol (priors self + cooc: what a user holding the log does without recgpt). Paired 95% intervals.

    python bench/relational.py      # 3,000 steps; outputs/relational_cooc, the table docs/benchmarks/relational_cooc.md
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path[0] = str(Path(__file__).resolve().parents[1])  # the repo, not bench/

from bench.balance import WEIGHTS, load_domain, own_table, self_points  # noqa: E402

LAST = 5
N_RELATIONS = 2 * LAST + 5
N_COOC = 3  # co-occurrence, its z-score, the history's support
N_EVIDENCE = 2 * len(WEIGHTS) + 3  # log prior, own-item gains and their flag, the rule's w, the base rule's score
N_FEATURES = N_RELATIONS + N_COOC + N_EVIDENCE
COOC_BASE = 0.5  # the base rule's weight on z(co-occurrence)
BETAS = (0.0, 0.25, 0.5, 1.0, 2.0)
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
    """A prepared domain under one protocol: centered unit item vectors, z log popularity, co-occurrence and log
    sequences (rows); with `train` (a source) the sequences' last transitions are held out of the counts."""

    def __init__(self, folder: Path, cache_dir: str, protocol: str = "loo", train: bool = False):
        import torch

        from bench.balance import log_gains, own_ranker
        from recgpt.predict.protocols import popularity_before_targets, sequences_before_targets

        self.ids, self.inter, self.catalog, self.emb = load_domain(folder, cache_dir)
        self.protocol = protocol
        rows = [self.catalog.rows([str(i) for i in s])[0] for s in sequences_before_targets(self.inter, protocol, 1, 0)]
        self.train = train
        self.sequences = [r for r in rows if len(r) >= (3 if train else 2)]
        if train:  # train on last transitions only; count what precedes them
            rows = [r[:-1] for r in rows]
            flat = np.concatenate([np.asarray(r, dtype=np.int64) for r in rows] + [np.zeros(0, np.int64)])
            counts = np.bincount(flat, minlength=len(self.ids)).astype(np.float32)
        else:
            counts = np.asarray(popularity_before_targets(self.inter, self.catalog, protocol, 1, 0), dtype=np.float32)
        log_pop = torch.log1p(torch.from_numpy(counts.copy()))
        self.zpop = (log_pop - log_pop.mean()) / log_pop.std().clamp_min(1e-6)
        self.cn, self.occ = cooc_matrix(rows, len(self.ids))
        self.ranks = own_ranker(self.inter, self.catalog, self.emb, protocol)
        # the log's balance over w, read as the shipped rule reads it (no target)
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
        """Float[B, C, N_FEATURES] of each history against the candidate rows (all items when None); the last is
        the base rule's score."""
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
        cf, zcf, support = self.cooccurrence(histories)
        if candidates is not None:
            cf, zcf = cf[:, candidates], zcf[:, candidates]
        seen, w = self.evidence(histories)
        rule = w[:, None] * zknn + (1 - w[:, None]) * zpop[None] + COOC_BASE * zcf
        parts += [cf[..., None], zcf[..., None], support[:, None, None].expand(b, c, 1),
                  seen[:, None].expand(b, c, -1), rule[..., None]]
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
        """Float[B, N]: the shipped rule's score w z(kNN) + (1 - w) z(pop) + beta z(co-occurrence) of every item
        (beta COOC_BASE unless given: the base rule), history items -inf."""
        import torch

        from recgpt.predict.baselines import normalize_rows, user_vectors

        full = normalize_rows(user_vectors(histories, self.emb)) @ self.emb.t()
        zknn = (full - full.mean(1, keepdim=True)) / full.std(1, keepdim=True).clamp_min(1e-6)
        w = self.evidence(histories)[1][:, None]
        score = w * zknn + (1 - w) * self.zpop[None]
        beta = COOC_BASE if beta is None else beta
        if beta:
            score = score + beta * self.cooccurrence(histories)[1]
        for i, h in enumerate(histories):
            score[i, torch.as_tensor(list(h))] = -float("inf")
        return score

    def top(self, histories, k: int) -> tuple:
        """(Float[B, N] the base rule's score, history items -inf; Long[B, k] its top k rows; Float[B, k, N_FEATURES]
        their features), the features computed once (the base rule is their last column)."""
        import torch

        x = self.features(histories)
        score = x[..., -1].clone()
        for i, h in enumerate(histories):
            score[i, torch.as_tensor(list(h))] = -float("inf")
        top = torch.topk(score, k).indices
        return score, top, torch.gather(x, 1, top[..., None].expand(-1, -1, x.shape[-1]))

    def scores(self, ranker, histories, rerank: int, batch: int = 32):
        """Float[B, N]: the base rule's score of every item (history items -inf) with its top `rerank` re-ordered by
        the ranker above the rest."""
        import torch

        out = []
        with torch.no_grad():
            for s in range(0, len(histories), batch):
                x, top, features = self.top(histories[s:s + batch], rerank + 1)
                below = x.gather(1, top[:, rerank:])
                new = ranker(features[:, :rerank]).squeeze(-1)
                # just above the (K+1)-th rule score, no large offset: float32 would tie close scores
                x.scatter_(1, top[:, :rerank], below + 1 + new - new.min(1, keepdim=True).values)
                out.append(x)
        return torch.cat(out)


def ndcg(scores, targets) -> np.ndarray:
    import torch

    t = torch.as_tensor(targets)
    rank = (scores > scores[torch.arange(len(t)), t][:, None]).sum(1)
    return torch.where(rank < 10, 1 / torch.log2(rank.float() + 2), torch.zeros(())).numpy()


def make_ranker(seed: int, width: int = N_FEATURES):
    """exp(t) * the base rule's score (the last feature) + an MLP whose last layer starts at zero: untrained it
    ranks as the base rule does."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    mlp = nn.Sequential(nn.Linear(width, 64), nn.GELU(), nn.Linear(64, 64), nn.GELU(), nn.Linear(64, 1))

    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.mlp, self.log_scale = mlp, nn.Parameter(torch.zeros(1))
            nn.init.zeros_(mlp[-1].weight)
            nn.init.zeros_(mlp[-1].bias)

        def forward(self, x):
            return self.log_scale.exp() * x[..., -1:] + self.mlp(x)

    return Residual()


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
    _, top, x = dom.top(histories, rerank)
    return F.cross_entropy(ranker(x).squeeze(-1), (top == targets[:, None]).int().argmax(1))


def next_item(dom: Domain, rng) -> tuple:
    """(history: up to 50 rows, next row not in it) drawn from the domain's log."""
    while True:
        seq = dom.sequences[rng.integers(len(dom.sequences))]
        t = len(seq) - 1 if dom.train else int(rng.integers(1, len(seq)))
        if seq[t] not in seq[max(0, t - 50):t]:
            return seq[max(0, t - 50):t], seq[t]


def evaluate(ranker, dom: Domain, users: int, rerank: int) -> tuple:
    """(user ids, per-user NDCG@10) of the domain's seeded users under its protocol."""
    from recgpt.predict.protocols import build_test_cases

    cases = build_test_cases(dom.inter, dom.catalog, dom.protocol, 1, 0, users)
    return cases.user_ids, ndcg(dom.scores(ranker, cases.histories, rerank), [t[0] for t in cases.targets])


def train(sources: dict, fits: dict, steps: int, every: int, users: int, seed: int, log, rerank: int) -> dict:
    """One ranker trained on the sources; per fit domain, {"ranker": the ranker at its best step (every `every`) on
    that domain's users, "step": that step, "curve": {step: NDCG@10}}."""
    import copy

    import torch

    rng = np.random.default_rng(seed)
    ranker = make_ranker(seed)
    opt = torch.optim.AdamW(ranker.parameters(), lr=1e-3, weight_decay=0.01)
    names, chosen = sorted(sources), {f: {"curve": {}} for f in fits}
    for step in range(steps + 1):  # step 0, the base rule itself, is a candidate
        dom = sources[names[step % len(names)]]
        loss = listwise_loss(ranker, dom, rng, rerank)
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


def target_rows(ranker, folder: Path, cache: str, fit_folder: Path, users: int, rerank: int) -> dict:
    """Per protocol: per-user NDCG@10 of the ranker, the priors (w fitted on the fit domain), the priors with
    per-user w (log prior, the shipped strength), that + beta z(co-occurrence) (beta chosen on the fit domain),
    content kNN and popularity, on the same users."""
    from recgpt.predict.self_weights import LOG_STRENGTH

    out = {}
    for protocol in ("loo", "cold"):
        dom = Domain(folder, cache, protocol)
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
        # the shipped rule + beta z(co-occurrence), beta chosen on the fit domain (ties: the smaller)
        fit_dom = Domain(fit_folder, cache, protocol)
        curve = {b: float(rule_ndcg(fit_dom, users, b).mean()) for b in BETAS}
        beta = max(BETAS, key=lambda b: (curve[b], -b))
        out[protocol].update({"priors self + cooc": rule_ndcg(dom, users, beta).tolist(), "cooc beta": beta,
                              "cooc fit curve": curve, "rule check": float(rule_ndcg(dom, users, 0.0).mean())})
    return out


def report(results: dict, command: str) -> str:
    from recgpt.predict.transfer import bootstrap_ratio

    lines = ["<!-- written by bench/relational.py: rerun it to change this file -->",
             "# A re-ranker over relations and the log's co-occurrence, trained on the sources, on unseen targets", "",
             f"command: `{command}`", "", " ".join(__doc__.split("\n\n")[1].split()), "",
             " ".join(__doc__.split("\n\n")[2].split()), "",
             "| target | protocol | users | step (fit domain) | ranker | priors (w) | priors self | content kNN | "
             "popularity | priors self + cooc (beta) | ranker / priors | ranker / priors self | ranker / priors self "
             "+ cooc | priors self + cooc / priors self | priors self + cooc / priors |", "|---" * 15 + "|"]
    for target, r in results.items():
        for p in ("loo", "cold"):
            row = {k: np.asarray(v) for k, v in r[p].items() if isinstance(v, list) and k != "user_ids"}
            cells = [f"{row[k].mean():.4f}" for k in ("ranker", "priors", "priors self", "content_knn", "popularity")]
            cells[1] += f" ({r[p]['priors w']})"
            ratios = [bootstrap_ratio(row["ranker"], row[k]) for k in ("priors", "priors self")]
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
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--every", type=int, default=250)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mixes", nargs="+", default=list(MIXES), help="the largest mixes to train on (of MIXES)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rerank", type=int, default=100, help="how many of the base rule's top items the "
                        "ranker re-orders (and trains over)")
    parser.add_argument("--out", default="outputs/relational_cooc", help="one json per target: a rerun resumes")
    parser.add_argument("--report", default="docs/benchmarks/relational_cooc.md")
    args = parser.parse_args(argv)
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
        sources = {d: Domain(prepared / d, args.embed_cache, "loo", train=True) for d in plan.domains
                   if d not in banned}
        print(f"{mix}: sources {sorted(sources)}", flush=True)
        fits = {plan.fit_domains[t][0]: t for t in targets}
        chosen = train(sources, {f: Domain(prepared / f, args.embed_cache, "loo") for f in fits}, args.steps,
                       args.every, args.users, args.seed, lambda m: print(f"{mix}: {m}", flush=True), args.rerank)
        for fit_name, target in fits.items():
            c = chosen[fit_name]
            result = target_rows(c["ranker"], prepared / target, args.embed_cache, prepared / fit_name, args.users,
                                 args.rerank)
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
