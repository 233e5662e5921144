"""Prediction outputs: metrics.json, metrics.md, recommendations.parquet and plots/*.png (matplotlib Agg)."""
from pathlib import Path

import pandas as pd

from recgpt.io import write_json
from recgpt.predict.metrics import METRICS


def markdown_table(result: dict) -> str:
    ks = result["ks"]
    lines = [f"# {result['dataset']} / {result['protocol']}", "",
             f"strategy `{result['strategy']}`, scoring `{result['scoring']}`, horizon {result['horizon']}, "
             f"allow_history {result['allow_history']}, users evaluated {result['counts'].get('evaluated')}", "",
             "| method | metric | " + " | ".join(f"@{k}" for k in ks) + " |",
             "|---|---|" + "---|" * len(ks)]
    for method, values in result["methods"].items():
        for metric in (*METRICS, "Coverage"):
            cells = [f"{values.get(f'{metric}@{k}', float('nan')):.4f}" for k in ks]
            lines.append(f"| {method} | {metric} | " + " | ".join(cells) + " |")
    versus = {k: v for k, v in (result.get("model_vs") or {}).items() if isinstance(v, dict)}
    if versus:  # model / each row, paired over users
        lines += ["", f"model / row, {result['model_vs']['metric']} (95% bootstrap interval over users): " + ", ".join(
            f"{name} {v['ratio']:.3f} [{v['lo']:.3f}, {v['hi']:.3f}]" for name, v in versus.items())]
    lines += ["", "Counts: " + ", ".join(f"{k} {v}" for k, v in result["counts"].items())]
    if result.get("repeats"):  # allow_history=auto: what the catalog's log said (recgpt.predict.repeats)
        lines += ["", "History items (allow_history auto): "
                  + ", ".join(f"{k} {v}" for k, v in result["repeats"].items())]
    if result.get("notes"):
        lines += ["", *[f"- {note}" for note in result["notes"]]]
    return "\n".join(lines) + "\n"


def recommendations_frame(user_ids, recs, scores, item_ids) -> pd.DataFrame:
    rows = [(user, rank + 1, item_ids[item], float(score))
            for user, rec, sc in zip(user_ids, recs, scores) for rank, (item, score) in enumerate(zip(rec, sc))]
    return pd.DataFrame(rows, columns=["user_id", "rank", "item_id", "score"]).astype(
        {"user_id": "string", "rank": "int32", "item_id": "string", "score": "float64"})


def plot_metrics_vs_k(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = result["ks"]
    fig, axes = plt.subplots(1, len(METRICS), figsize=(4 * len(METRICS), 3.2))
    for ax, metric in zip(axes, METRICS):
        for method, values in result["methods"].items():
            ax.plot(ks, [values[f"{metric}@{k}"] for k in ks], marker="o", label=method)
        ax.set_title(metric)
        ax.set_xlabel("K")
        ax.set_xticks(ks)
    axes[0].legend()
    fig.suptitle(f"{result['dataset']} / {result['protocol']}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_by_position(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = max(result["ks"])
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for method, by_k in result["by_position"].items():
        rates = by_k[str(k)] if str(k) in by_k else by_k[k]
        ax.plot(range(1, len(rates) + 1), rates, marker="o", label=method)
    ax.set_xlabel("position of the target in the horizon")
    ax.set_ylabel(f"hit rate @{k}")
    ax.legend()
    ax.set_title(f"{result['dataset']}: hit@{k} by horizon position")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(out_dir, result: dict, recommendations: pd.DataFrame) -> Path:
    out = Path(out_dir)
    (out / "plots").mkdir(parents=True, exist_ok=True)
    recommendations.to_parquet(out / "recommendations.parquet", index=False)
    plot_metrics_vs_k(result, out / "plots" / "metrics_vs_k.png")
    if result.get("by_position"):
        plot_by_position(result, out / "plots" / "by_position.png")
    (out / "metrics.md").write_text(markdown_table(result))
    write_json(out / "metrics.json", result)  # last: a folder with metrics.json is complete
    return out
