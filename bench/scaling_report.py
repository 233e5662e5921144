"""Tables and curve of bench/scaling.py, made from its cached (mix, target) results only."""
from pathlib import Path

import numpy as np

PROTOCOLS = ("loo", "cold")


def ordered(records: list) -> list:
    return sorted(records, key=lambda r: (r["target"], r["interactions"], r["mix"], r["variant"]))


def row_of(record: dict, table: str, method: str = "model"):
    return next((r for r in record["tables"].get(table, []) if r["method"] == method), None)


def ndcg_interval(record: dict, protocol: str, method: str = "model") -> str:
    from recgpt.predict.metrics import bootstrap_mean

    values = record["results"][protocol]["ndcg_per_user"].get(method)
    if not values:
        return "n/a"
    mean, lo, hi = bootstrap_mean(np.asarray(values))
    return f"{mean:.4f} [{lo:.4f}, {hi:.4f}]"


def dense_text(record: dict, protocol: str) -> str:
    """NDCG@10 of the dense head alone: with its interval where the result kept its per-user values."""
    if "model[dense]" in record["results"][protocol].get("ndcg_per_user", {}):
        return ndcg_interval(record, protocol, "model[dense]")
    row = row_of(record, protocol, "model[dense]")
    return f"{row['NDCG@10']:.4f}" if row else "n/a"


def ratio_text(row) -> str:
    return f"{row['ratio']:.3f} [{row['lo']:.3f}, {row['hi']:.3f}]" if row else "n/a"


def paired(small: dict, large: dict, protocol: str, method: str = "model") -> tuple:
    """(NDCG@10 of `method`, larger mix / smaller mix) on the users both scored, with a 95% interval; None when
    a result did not keep that method's per-user values."""
    from recgpt.predict.metrics import bootstrap_ratio

    a, b = (r["results"][protocol] for r in (large, small))
    if method not in a["ndcg_per_user"] or method not in b["ndcg_per_user"]:
        return None
    where = {u: i for i, u in enumerate(b["user_ids"])}
    common = [(i, where[u]) for i, u in enumerate(a["user_ids"]) if u in where]
    x = np.asarray(a["ndcg_per_user"][method])[[i for i, _ in common]]
    y = np.asarray(b["ndcg_per_user"][method])[[j for _, j in common]]
    return (*bootstrap_ratio(x, y), len(common))


CODE_ROWS = ("model[code]", "model[beam]", "model[liger]", "model[dense]", "model")


def code_rows(records: list) -> list:
    """Lines of the code-head table (models with codes and a dense head only): codes alone, the trie beam's
    items re-ranked, LIGER (the beam plus every item unseen in pretraining, re-ranked), dense alone, fitted."""
    with_codes = [r for r in records if "model[code]" in r["results"]["loo"].get("ndcg_per_user", {})]
    if not with_codes:
        return []
    lines = ["", "## The generative path: code head alone, trie beam re-ranked, LIGER (NDCG@10, 95% CI)", "",
             "beam: the trie beam's 20 items re-ranked by the score without codes; liger: the beam plus every item "
             "unseen in pretraining (on a held-out target: every item), re-ranked the same way.", "",
             "| target | protocol | mix | variant | " + " | ".join(CODE_ROWS) + " |",
             "|---|---|---|---|" + "---|" * len(CODE_ROWS)]
    for r in with_codes:
        for protocol in PROTOCOLS:
            cells = " | ".join(ndcg_interval(r, protocol, m) for m in CODE_ROWS)
            lines.append(f"| {r['target']} | {protocol} | {r['mix']} | {r['variant']} | {cells} |")
    return lines


def in_domain_rows(records: list) -> list:
    """Lines of the in-domain table (--in-domain): the zero-shot rows / SASRec+ trained on the target itself,
    on the LOO users it has lists for."""
    found = [(r, t) for r in records for t in r["tables"] if t.startswith("loo vs sasrec_in_domain")]
    if not found:
        return []
    methods = ("model", "model[dense]", "priors", "content_knn")
    lines = ["", "## How far from in-domain training: NDCG@10 / SASRec+ trained on the target (LOO, same users)", "",
             "| target | mix | variant | SASRec+ NDCG@10 | " + " | ".join(methods) + " | users |",
             "|---|---|---|---|" + "---|" * len(methods) + "---|"]
    for r, table in found:
        reference = row_of(r, table, "sasrec_in_domain")
        cells = " | ".join(ratio_text(row_of(r, table, m)) for m in methods)
        users = r["results"]["loo"]["given_covered"]["sasrec_in_domain"]
        lines.append(f"| {r['target']} | {r['mix']} | {r['variant']} | {reference['NDCG@10']:.4f} | {cells} | {users} |")
    return lines


def tables(records: list) -> str:
    records = ordered(records)
    lines = ["## Pretraining", "", "| mix | variant | domains | interactions | steps | tokens | seconds | tokens/s |",
             "|---|---|---|---|---|---|---|---|"]
    seen = set()
    for r in sorted(records, key=lambda r: (r["interactions"], r["mix"], r["variant"])):
        if (r["mix"], r["variant"]) not in seen:
            seen.add((r["mix"], r["variant"]))
            p = r["pretrain"]
            lines.append(f"| {r['mix']} | {r['variant']} | {len(r['datasets'])} | {r['interactions']:,} | "
                         f"{p['max_steps']} | {p['tokens_seen']:,} | {p['seconds']:.0f} | {p['tokens_per_s']:.0f} |")
    lines += ["", "## Zero-shot on the held-out targets (NDCG@10, 95% bootstrap intervals over users)", "",
              "model: the score weights fitted on the fit domains; dense alone: the dense head by itself, which is "
              "also how an exported model scores without a fit.", "",
              "| target | protocol | mix | variant | interactions | checkpoint | fit on | model | priors | content kNN "
              "| model / priors | model / content kNN | dense alone | dense alone / priors |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for protocol in PROTOCOLS:
        for r in records:
            lines.append(f"| {r['target']} | {protocol} | {r['mix']} | {r['variant']} | {r['interactions']:,} | "
                         f"{r['best']} | {'+'.join(r['fit_domains'])} | {ndcg_interval(r, protocol)} | "
                         f"{ndcg_interval(r, protocol, 'priors')} | {ndcg_interval(r, protocol, 'content_knn')} | "
                         f"{ratio_text(row_of(r, protocol + ' vs priors'))} | {ratio_text(row_of(r, protocol))} | "
                         f"{dense_text(r, protocol)} | {ratio_text(row_of(r, protocol + ' vs priors', 'model[dense]'))} |")
    lines += code_rows(records) + in_domain_rows(records)
    curve = []
    groups = {}
    for r in records:
        groups.setdefault((r["target"], r["variant"]), []).append(r)
    for (target, variant), group in sorted(groups.items()):
        if len(group) < 2:
            continue
        small, large = group[0], group[-1]
        for protocol in PROTOCOLS:
            for method in ("model", "model[dense]"):
                result = paired(small, large, protocol, method)
                if result is not None:
                    ratio, lo, hi, users = result
                    curve.append(f"| {target} | {protocol} | {variant} | {method} | {small['mix']} | {large['mix']} | "
                                 f"{ratio:.3f} [{lo:.3f}, {hi:.3f}] | {users} |")
    lines += ["", "## Does the curve rise? Largest mix / smallest mix (NDCG@10, same users)", ""]
    if not curve:
        lines.append("No target has two mixes in these results: no curve to compare.")
    else:
        lines += ["| target | protocol | variant | method | smallest | largest | ratio [95% CI] | users |",
                  "|---|---|---|---|---|---|---|---|"] + curve
    return "\n".join(lines) + "\n"


def write_report(records: list, path, argv: list) -> str:
    from bench.report import header

    text = (f"# Zero-shot quality against the pretraining data (bench/scaling.py)\n\n{header(argv)}\n"
            "Mixes, what each leaves out and why: recgpt/data/mixes.py and `<out>/mixes/<mix>/mix.json`. Checkpoint "
            "and score weights are chosen on the fit domains only; priors = content kNN + popularity, the same fit "
            "with the model's components at 0.\n\n" + tables(records))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(text)
    return text


def plot_curve(records: list, path) -> None:
    """NDCG@10 against pretraining interactions, one panel per target and protocol; content kNN and priors as
    horizontal lines (their mean over the mixes: they do not depend on the pretraining)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    from recgpt.predict.metrics import bootstrap_mean

    targets = sorted({r["target"] for r in records})
    fig, axes = plt.subplots(len(PROTOCOLS), len(targets), figsize=(4 * len(targets), 6.5), squeeze=False)
    for col, target in enumerate(targets):
        mine = ordered([r for r in records if r["target"] == target])
        for row, protocol in enumerate(PROTOCOLS):
            ax = axes[row][col]
            for variant in sorted({r["variant"] for r in mine}):
                points = [(r["interactions"], *bootstrap_mean(r["results"][protocol]["ndcg_per_user"]["model"]))
                          for r in mine if r["variant"] == variant]
                x, y, lo, hi = (np.array(v) for v in zip(*points))
                ax.errorbar(x, y, yerr=[y - lo, hi - y], marker="o", capsize=3, label=f"model ({variant})")
            for method, style in (("content_knn", "--"), ("priors", ":")):
                values = [np.mean(r["results"][protocol]["ndcg_per_user"][method]) for r in mine
                          if method in r["results"][protocol]["ndcg_per_user"]]
                if values:
                    ax.axhline(float(np.mean(values)), linestyle=style, color="gray" if method == "priors" else "black",
                               label={"content_knn": "content kNN"}.get(method, method))
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # minor labels crowd a short range
            ax.set_title(f"{target} ({protocol})")
            ax.set_xlabel("pretraining interactions")
            ax.set_ylabel("NDCG@10")
            ax.legend(fontsize=7)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
