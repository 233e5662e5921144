"""Does one content / popularity balance carry across domains, and can a label-free catalog statistic set it?

The dense head of `text_dense` learns, in effect, one balance between an item's content match and its log
popularity (docs/benchmarks.md, "What the head learned"). This bench asks what any such balance can reach,
without a model: per domain (prepared folder), 1,000 seeded LOO users, history excluded, item vectors centered
on the catalog's mean (as the text_dense recipe and its priors score them), score
    raw:     cosine(content kNN user vector, item) + a * log(1 + count)
    catalog: the same with log(1 + count) divided by its spread over the catalog's items
    user:    the cosine standardized over the catalog per user + 5a * log(1 + count) standardized over the
             catalog's items (the form of the priors' fit, recgpt.predict.hybrid; 5a so that one grid serves)
on a grid of a, beside two label-free statistics of the domain's log before the targets: the share of
interactions on the top 1% of items (concentration) and the mean cosine of consecutive history items minus that of
random item pairs (coherence). Then, per held-out domain, with every choice made on other domains:
    fit domain: the best a on the target's fit domain alone (the priors' kind of choice);
    mix:        the best a over the domains of the target's largest pretraining mix (one learned balance);
    rule(s):    a = exp(t0 + t1 * standardized statistic s), (t0, t1) fitted over the same domains.
NDCG@10 relative to the domain's best a (oracle), paired 95% bootstrap intervals of rule / mix on the targets.

Then per-user weights from each user's own history (recgpt.predict.self_weights), LOO and cold, in the form of
the hybrid's fit over knn and pop, w * z(cosine) + (1 - w) * z(log count) on w = 0, .1, ..., 1: each user gets
the w that ranks the user's own last history item best (gain 1 / log2(rank + 2)) plus a strength s times a
prior curve relative to its best: the fit's (the NDCG of the fixed choice: the other sources' mean for a source,
the fit domain's for a target) or the log's (the same own-item gain averaged over up to 2,000 seeded sequences
of the domain's log before the protocol's targets: no target is read). The prior and s are chosen together over
the source domains (leave one out) and are what the module ships.

    python bench/balance.py --prepared outputs/scaling/prepared --embed-cache outputs/embed_cache
"""
import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

sys.path[0] = str(Path(__file__).resolve().parents[1])  # the repo, not bench/

GRID = (0.0, 0.005, 0.01, 0.02, 0.03, 0.05, 0.07, 0.1, 0.15, 0.2, 0.3, 0.5, 0.7, 1.0)
FORMS = ("raw", "catalog", "user")
STATS = ("concentration", "coherence")
from recgpt.predict.rerank.context import WEIGHTS  # noqa: E402 (w on content kNN, 1 - w on popularity: the hybrid fit's grid)
STRENGTHS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0)
PRIORS = ("fit", "log")


LEGEND = ("LOO, history excluded, 1,000 seeded users per domain. A cell: the chosen a and NDCG@10 / the domain's "
          "best a in that form (oracle). A source domain's choices are made on the other source domains (leave one "
          "out); a target's on its fit domain alone or on the domains of its largest pretraining mix "
          "(recgpt.data.mixes), never on itself; rule / mix: paired over users, 95% bootstrap interval.\n\n")


SELF_LEGEND = ("1,000 seeded users per domain and protocol, history excluded, score w * z(cosine) + (1 - w) * z(log "
               "count), w on 0, .1, ..., 1. Each user's w: the one that ranks the user's own last history item best "
               "from the items before it, plus s times the prior (relative to its best point), the prior's best w "
               "without such an item. Two priors: the fit's (the NDCG of each w: a source's other sources' mean, a "
               "target's fit domain) and the log's (each w's gain on the last item of up to 2,000 seeded sequences of "
               "the domain's own log before the targets, ranked from the items before it: no target is read). The "
               "prior and s are chosen over the sources (leave one out, geometric mean of NDCG / best w, LOO and cold "
               "together); chosen / fixed w is paired over users, 95% bootstrap interval.\n\n")


def load_domain(folder: Path, cache_dir: str, center: bool = True) -> tuple:
    """(item ids, interactions, catalog, item vectors centered on the catalog's mean (unless not `center`) and
    normalized)."""
    import torch

    from recgpt.config.embed import EmbedConfig
    from recgpt.predict.baselines import normalize_rows
    from recgpt.predict.catalog import read_catalog_items
    from recgpt.predict.transfer import ItemRows, read_interactions
    from recgpt.tokenizer.embed import embed_items

    items, inter = read_catalog_items(folder), read_interactions(folder)
    ids = items["item_id"].astype(str).tolist()
    vectors = embed_items(ids, items["text"].fillna("").astype(str).tolist(), EmbedConfig(cache_dir=cache_dir)).vectors
    emb = torch.as_tensor(np.asarray(vectors)).float()
    return ids, inter, ItemRows(ids), normalize_rows(emb - emb.mean(0) if center else emb)  # as text_dense reads it


def domain_table(folder: Path, cache_dir: str, users: int) -> dict:
    """Per-user NDCG@10 at every (form, a), and the domain's statistics."""
    import torch

    from recgpt.predict.baselines import normalize_rows, user_vectors
    from recgpt.predict.protocols import build_test_cases, popularity_before_targets

    ids, inter, catalog, emb = load_domain(folder, cache_dir)
    cases = build_test_cases(inter, catalog, "loo", 1, 0, users)
    counts = popularity_before_targets(inter, catalog, "loo", 1, 0)
    log_pop = torch.log1p(torch.tensor(np.asarray(counts), dtype=torch.float32))  # a copy: counts may be read-only
    cos = normalize_rows(user_vectors(cases.histories, emb)) @ emb.t()
    seen = torch.ones_like(cos, dtype=torch.bool)  # False on each user's history items: never ranked
    for b, history in enumerate(cases.histories):
        seen[b, torch.as_tensor(history)] = False
    cos = cos.masked_fill(~seen, -1e9)
    target = torch.as_tensor([t[0] for t in cases.targets])

    def ndcg(scores):
        rank = (scores > scores[torch.arange(len(scores)), target][:, None]).sum(1)
        return torch.where(rank < 10, 1 / torch.log2(rank.float() + 2), torch.zeros(())).numpy().round(5).tolist()

    spread = log_pop.std().clamp_min(1e-6)
    count = seen.sum(1, keepdim=True)
    mu = torch.where(seen, cos, 0).sum(1, keepdim=True) / count
    sd = (torch.where(seen, (cos - mu) ** 2, 0).sum(1, keepdim=True) / count).sqrt().clamp_min(1e-6)
    bases = {"raw": (cos, log_pop), "catalog": (cos, log_pop / spread),
             "user": ((cos - mu) / sd, 5 * (log_pop - log_pop.mean()) / spread)}
    table = {form: {str(a): ndcg(base + a * term) for a in GRID} for form, (base, term) in bases.items()}
    top = np.sort(np.asarray(counts))[::-1]
    pairs = [(h[i - 1], h[i]) for h in cases.histories for i in range(1, len(h))]
    gen = torch.Generator().manual_seed(0)
    random = torch.randint(len(ids), (2, 20000), generator=gen)
    consecutive = (emb[[p[0] for p in pairs]] * emb[[p[1] for p in pairs]]).sum(1).mean() if pairs else torch.zeros(())
    stats = {"concentration": float(top[:max(1, len(top) // 100)].sum() / max(top.sum(), 1)),
             "coherence": float(consecutive - (emb[random[0]] * emb[random[1]]).sum(1).mean())}
    own = {protocol: own_table(inter, catalog, emb, protocol, users) for protocol in ("loo", "cold")}
    return {"table": table, "stats": stats, "users": len(cases), "items": len(ids), "own": own}


def own_table(inter, catalog, emb, protocol: str, users: int) -> dict:
    """Per user and w of WEIGHTS: NDCG@10 of the target and the gain of the user's own last history item ranked
    from the items before it (None: fewer than two history items, or the last repeats an earlier one); and "log",
    per w, that gain averaged over the log's sequences before the targets (recgpt.predict.self_weights.log_prior)."""
    from recgpt.predict.protocols import build_test_cases
    from recgpt.predict.self_weights import own_cases

    cases = build_test_cases(inter, catalog, protocol, 1, 0, users)
    ranks = own_ranker(inter, catalog, emb, protocol)
    real, _ = ranks(cases.histories, [t[0] for t in cases.targets])
    users_own, before, last = own_cases(cases.histories)
    own = [None] * len(cases)
    if users_own:
        rank, repeated = ranks(before, last)
        for u, r, rep in zip(users_own, rank.tolist(), repeated.tolist()):
            own[u] = None if rep else [round(1 / math.log2(x + 2), 5) for x in r]
    ndcg = [[round(1 / math.log2(x + 2), 5) if x < 10 else 0.0 for x in r] for r in real.tolist()]
    return {"ndcg": ndcg, "own": own, "log": log_gains(inter, catalog, protocol, ranks)}


def own_ranker(inter, catalog, emb, protocol: str):
    """ranks(histories, targets) -> (Int[B, len(WEIGHTS)] items above each target, Bool[B] target in history),
    with the log's popularity before the protocol's targets (recgpt.predict.rerank.context.weight_ranks)."""
    import torch

    from recgpt.predict.protocols import popularity_before_targets
    from recgpt.predict.rerank.context import weight_ranks
    from recgpt.predict.scoring import standardize

    log_pop = torch.log1p(torch.tensor(np.asarray(popularity_before_targets(inter, catalog, protocol, 1, 0)),
                                       dtype=torch.float32))
    z_pop = standardize(log_pop[None])
    return lambda histories, targets: weight_ranks(emb, z_pop, histories, targets)


def log_gains(inter, catalog, protocol: str, ranks, block: int = 500, columns: int = len(WEIGHTS)) -> list:
    """Per column of `ranks` (a w; for bench/whitening.py a form of the vectors), the mean gain 1 / log2(rank + 2)
    of the last item of each of the log's sampled sequences before the protocol's targets, ranked from the items
    before it (recgpt.predict.self_weights.log_rows / log_prior); `columns` zeros when the log has no such item."""
    from recgpt.predict.protocols import sequences_before_targets
    from recgpt.predict.rerank.context import mean_own_gains
    from recgpt.predict.self_weights import log_rows

    rows = log_rows(sequences_before_targets(inter, protocol, 1, 0), catalog)
    return mean_own_gains(ranks, rows, columns, block).round(6).tolist()


def best_fixed(results: dict, form: str, domains) -> str:
    """The a with the highest sum over `domains` of log(NDCG / that domain's best NDCG)."""
    def score(a):
        return sum(math.log(max(results[d]["means"][form][a], 1e-6) / oracle(results[d], form)[1]) for d in domains)
    return max(map(str, GRID), key=score)


def oracle(result: dict, form: str) -> tuple:
    return max(result["means"][form].items(), key=lambda kv: kv[1])


def nearest(a: float) -> str:
    return str(min(GRID, key=lambda g: abs(math.log(g + 1e-3) - math.log(a + 1e-3))))


def rule(results: dict, form: str, stat: str, domains):
    """(t0, t1, mean, spread) fitted over `domains`: a = exp(t0 + t1 * (s - mean) / spread), nearest grid point."""
    values = np.array([results[d]["stats"][stat] for d in domains])
    mu, sd = float(values.mean()), float(values.std()) or 1.0
    best, best_score = None, -math.inf
    for t0 in np.linspace(math.log(0.0005), math.log(1.0), 25):
        for t1 in np.linspace(-3, 3, 25):
            score = sum(math.log(max(results[d]["means"][form][nearest(math.exp(t0 + t1 * (results[d]["stats"][stat] - mu) / sd))], 1e-6)
                                 / oracle(results[d], form)[1]) for d in domains)
            if score > best_score:
                best, best_score = (float(t0), float(t1), mu, sd), score
    return best


def apply_rule(params, value: float) -> str:
    t0, t1, mu, sd = params
    return nearest(math.exp(t0 + t1 * (value - mu) / sd))


def report(results: dict, plan) -> str:
    from recgpt.data.mixes import excluded
    from recgpt.predict.metrics import bootstrap_ratio

    targets = [t for t in plan.targets if t in results]
    sources = [d for d in results if d not in plan.targets]
    lines = ["| domain | users | concentration | coherence | content kNN | form | oracle a (NDCG@10) | fit domain | "
             "mix | rule: concentration | rule: coherence |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    summary = {}
    for d in sources + targets:
        if d in plan.targets:  # a target: its fit domain, and the domains of its largest mix
            fit = [f for f in plan.fit_domains[d][:1] if f in results] or None  # None: not among --domains
            mix = [s for s in results if s not in excluded(plan, d)]
        else:  # a source domain: another source's choice is not defined; leave-one-source-out over the sources
            fit, mix = None, [s for s in sources if s != d]
        for form in FORMS:
            res = results[d]
            best_a, best = oracle(res, form)
            picks = {"fit domain": best_fixed(results, form, fit) if fit else None, "mix": best_fixed(results, form, mix)}
            for stat in STATS:
                picks[f"rule: {stat}"] = apply_rule(rule(results, form, stat, mix), res["stats"][stat])
            cells = []
            for name, a in picks.items():
                if a is None:
                    cells.append("")
                    continue
                value = res["means"][form][a]
                summary.setdefault((form, name, d in plan.targets), []).append(max(value / best, 1e-3))
                cell = f"a={a}: {value / best:.3f}"
                if d in plan.targets and name.startswith("rule"):
                    r, lo, hi = bootstrap_ratio(np.array(res["table"][form][a]), np.array(res["table"][form][picks["mix"]]))
                    cell += f" (/ mix {r:.3f} [{lo:.3f}, {hi:.3f}])"
                cells.append(cell)
            knn = res["means"][form]["0.0"]
            lines.append(f"| {d}{' (target)' if d in plan.targets else ''} | {res['users']} | "
                         f"{res['stats']['concentration']:.3f} | {res['stats']['coherence']:.3f} | {knn:.4f} | {form} | "
                         f"{best_a} ({best:.4f}) | " + " | ".join(cells) + " |")
    lines += ["", "Geometric mean of NDCG@10 / the domain's oracle:", "", "| form | choice | sources (leave one out) | targets |",
              "|---|---|---|---|"]
    for form in FORMS:
        for name in ("fit domain", "mix", *[f"rule: {s}" for s in STATS]):
            cells = [f"{math.exp(np.mean(np.log(summary[(form, name, t)]))):.3f}" if (form, name, t) in summary else ""
                     for t in (False, True)]
            lines.append(f"| {form} | {name} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines) + "\n"


def self_points(own: list, prior: np.ndarray, strength: float) -> np.ndarray:
    """Per user, the index into WEIGHTS of the user's own-history choice (the prior's best without a history gain)."""
    out = np.empty(len(own), dtype=int)
    for u, gains in enumerate(own):
        score = strength * prior + (np.asarray(gains) if gains is not None else 0.0)
        out[u] = int(np.argmax(score - 1e-12 * np.arange(len(prior))))  # ties: the earlier w
    return out


def self_report(results: dict, plan) -> tuple[str, tuple]:
    """The section on per-user weights: the prior (the fit's grid, or the domain's own log) and the strength,
    chosen together over the sources (both protocols); returns (text, (prior, strength))."""
    from recgpt.predict.metrics import bootstrap_ratio

    targets = [t for t in plan.targets if t in results]
    sources = [d for d in results if d not in plan.targets]
    curves = {p: {d: np.mean(results[d]["own"][p]["ndcg"], 0) for d in results} for p in ("loo", "cold")}

    def prior_of(kind, p, d):
        if kind == "log":
            log = np.asarray(results[d]["own"][p]["log"])
            return log / max(log.max(), 1e-12)
        if d in plan.targets:
            return curves[p][plan.fit_domains[d][0]] / curves[p][plan.fit_domains[d][0]].max()
        return np.mean([curves[p][o] / curves[p][o].max() for o in sources if o != d], 0)

    def ndcg_of(kind, p, d, strength):
        ndcg = np.asarray(results[d]["own"][p]["ndcg"])
        points = self_points(results[d]["own"][p]["own"], prior_of(kind, p, d), strength)
        return ndcg[np.arange(len(ndcg)), points]

    def fixed_of(kind, p, d):
        return np.asarray(results[d]["own"][p]["ndcg"])[:, int(np.argmax(prior_of(kind, p, d)))]

    def over_sources(values):  # {(p, d): per-user NDCG} -> geometric mean over the sources of NDCG / best w, per p
        return [math.exp(np.mean([math.log(max(values(p, d).mean(), 1e-6) / curves[p][d].max()) for d in sources]))
                for p in curves]

    lines = ["| strength s | " + " | ".join(f"{k} prior, sources {p}" for k in PRIORS for p in curves) + " |",
             "|---" * (1 + len(PRIORS) * len(curves)) + "|"]
    score = {}
    for strength in STRENGTHS:
        cells = []
        for kind in PRIORS:
            means = over_sources(lambda p, d: ndcg_of(kind, p, d, strength))
            score[kind, strength] = sum(map(math.log, means))
            cells += [f"{m:.3f}" for m in means]
        lines.append(f"| {strength} | " + " | ".join(cells) + " |")
    lines.append("| fixed w (the prior's best, no own item) | " + " | ".join(
        f"{m:.3f}" for kind in PRIORS for m in over_sources(lambda p, d: fixed_of(kind, p, d))) + " |")
    best = {kind: max(STRENGTHS, key=lambda v: (score[kind, v], -v)) for kind in PRIORS}
    kind = max(PRIORS, key=lambda k: score[k, best[k]])
    chosen = (kind, best[kind])
    lines += ["", f"Chosen over the sources: the {kind} prior, s = {best[kind]} (the best s with the other prior: "
              + ", ".join(f"{k} {best[k]}" for k in PRIORS if k != kind) + "). Per domain (NDCG@10 / the domain's "
              "best fixed w; own history with each prior at its best s):", "",
              "| domain | protocol | best w (NDCG@10) | fixed w (the fit prior's best) | own history, fit prior | "
              "own history, log prior | chosen / fixed w |", "|---|---|---|---|---|---|---|"]
    for d in sources + targets:
        for p in curves:
            top = curves[p][d].max()
            fixed = fixed_of("fit", p, d)
            own = {k: ndcg_of(k, p, d, best[k]) for k in PRIORS}
            r, lo, hi = bootstrap_ratio(own[kind], fixed)
            lines.append(f"| {d}{' (target)' if d in plan.targets else ''} | {p} | "
                         f"{WEIGHTS[int(np.argmax(curves[p][d]))]} ({top:.4f}) | "
                         f"w={WEIGHTS[int(np.argmax(prior_of('fit', p, d)))]}: {fixed.mean() / top:.3f} | "
                         + " | ".join(f"{own[k].mean() / top:.3f}" for k in PRIORS) + f" | {r:.3f} [{lo:.3f}, {hi:.3f}] |")
    return "\n".join(lines) + "\n", chosen


def shipped(text: str, chosen: tuple) -> str:
    """The section, and what recgpt.predict.self_weights ships against what this run chose."""
    from recgpt.predict.self_weights import LOG_STRENGTH, STRENGTH

    ships = (f"recgpt.predict.self_weights ships the log prior with s = {LOG_STRENGTH} (LOG_STRENGTH), and the fit "
             f"prior with s = {STRENGTH} (STRENGTH) where no log is given")
    agrees = chosen == ("log", LOG_STRENGTH)
    return text + f"\n{ships}: {'as chosen here' if agrees else 'NOT what this run chose'}.\n"


def domain_parser(description: str, out: str, out_help: str) -> argparse.ArgumentParser:
    """The arguments of a bench that scores each prepared domain without a model (this one, bench/whitening.py)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--prepared", default="outputs/scaling/prepared", help="prepared dataset folders")
    parser.add_argument("--embed-cache", default="outputs/embed_cache")
    parser.add_argument("--domains", help="comma-separated (default: the scaling plan's domains)")
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--out", default=out, help=out_help)
    return parser


def domain_jsons(parser: argparse.ArgumentParser, args) -> tuple:
    """(the scaling plan, {domain: its result json under --out}) for the domains asked (default: the plan's); a
    domain with neither a result nor a prepared folder is refused with one line naming the folder."""
    from recgpt.data.mixes import Plan

    plan = Plan()
    domains = args.domains.split(",") if args.domains else list(plan.domains)
    paths = {d: Path(args.out) / f"{d}.json" for d in domains}
    missing = [str(Path(args.prepared) / d) for d in domains
               if not paths[d].is_file() and not (Path(args.prepared) / d / "interactions.parquet").is_file()]
    if missing:
        parser.error(f"no prepared dataset (interactions.parquet) in {', '.join(missing)}: run `recgpt prepare` first")
    return plan, paths


def main(argv=None) -> int:
    parser = domain_parser(__doc__.split("\n")[0], "outputs/balance", "one json per domain: a rerun resumes (a "
                           "json without the own-history tables is recomputed)")
    parser.add_argument("--report", default="docs/benchmarks/balance.md")
    args = parser.parse_args(argv)
    plan, paths = domain_jsons(parser, args)
    results = {}
    for d, path in paths.items():
        if not path.is_file() or "own" not in json.loads(path.read_text()):
            path.parent.mkdir(parents=True, exist_ok=True)
            result = domain_table(Path(args.prepared) / d, args.embed_cache, args.users)
            path.write_text(json.dumps(result))
            print(f"{d}: {result['users']} users, {result['items']} items", flush=True)
        elif "log" not in json.loads(path.read_text())["own"]["loo"]:  # a result of before the log prior
            result = json.loads(path.read_text())
            _, inter, catalog, emb = load_domain(Path(args.prepared) / d, args.embed_cache)
            for p, own in result["own"].items():
                own["log"] = log_gains(inter, catalog, p, own_ranker(inter, catalog, emb, p))
            path.write_text(json.dumps(result))
            print(f"{d}: the log prior added", flush=True)
        results[d] = json.loads(path.read_text())
        results[d]["means"] = {form: {a: float(np.mean(v)) for a, v in table.items()} for form, table in results[d]["table"].items()}
    from bench.report import header

    text = ("<!-- written by bench/balance.py: rerun it to change this file -->\n# One content / popularity balance "
            f"across domains\n\n{header(None if argv is None else [__file__, *argv])}\n"
            + LEGEND
            + report(results, plan)
            + "\n## Per-user weights from the user's own history\n\n" + SELF_LEGEND + shipped(*self_report(results, plan)))
    Path(args.report).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
