"""Tokenizer quality figures: reconstruction error, collisions, per-slot usage and entropy; a text table."""
import numpy as np
import torch

from recgpt.tokenizer.collisions import collision_stats


def reconstruction_errors(x: torch.Tensor, recon: torch.Tensor) -> dict:
    """mse per value; relative mse = error / variance around the mean (0 perfect, 1 = predicting the mean);
    mean cosine similarity between each embedding and its reconstruction."""
    if len(x) == 0:
        return {"mse": None, "relative_mse": None, "cosine": None}
    err = (x - recon).pow(2).sum(-1)
    var = (x - x.mean(0)).pow(2).sum(-1).sum().clamp_min(1e-12)
    cos = torch.nn.functional.cosine_similarity(x, recon, dim=-1)
    return {"mse": float(err.mean() / x.shape[1]), "relative_mse": float(err.sum() / var),
            "cosine": float(cos.mean())}


def slot_usage(codes: np.ndarray, vocab_sizes: list[int]) -> list[dict]:
    """Share of the slot's possible codes that some item uses, and the entropy of the code distribution
    (bits, and normalised by log2 of min(vocab, items): 1 = as spread as the item count allows)."""
    out = []
    for slot, vocab in enumerate(vocab_sizes):
        counts = np.bincount(codes[:, slot], minlength=vocab).astype(np.float64)
        p = counts[counts > 0] / counts.sum()
        entropy = float(-(p * np.log2(p)).sum())
        cap = np.log2(max(2, min(vocab, len(codes))))
        out.append({"slot": slot, "vocab": int(vocab), "used": int((counts > 0).sum()),
                    "usage": float((counts > 0).sum() / vocab), "entropy_bits": entropy,
                    "entropy_norm": float(entropy / cap)})
    return out


def build_report(kind: str, n_items: int, n_heldout: int, recon: dict, codes: np.ndarray,
                 assigned: np.ndarray, vocab_sizes: list[int], fit_seconds: float, extra: dict) -> dict:
    before, slots = collision_stats(codes), slot_usage(assigned, vocab_sizes)
    return {
        "kind": kind, "n_items": n_items, "n_heldout": n_heldout,
        "reconstruction_on": "heldout" if n_heldout else "train",
        "reconstruction": recon,
        "collisions_before": before,
        "collisions_after": collision_stats(assigned),
        # the tuple the disambiguation slot must absorb, and per code slot the share of codes no item uses
        "max_items_per_tuple": before["max_items_per_tuple"],
        "dead_code_share": [1.0 - s["usage"] for s in slots[:-1]],
        "slots": slots,
        "fit_seconds": fit_seconds, **extra,
    }


def format_report(report: dict) -> str:
    r, before, after = report["reconstruction"], report["collisions_before"], report["collisions_after"]

    def fmt(v):
        return "-" if v is None else f"{v:.4g}"

    lines = [
        f"tokenizer {report['kind']}: {report['n_items']} items, reconstruction on {report['n_heldout']} "
        f"{report['reconstruction_on']} items",
        "| metric | value |", "|---|---|",
        f"| reconstruction mse | {fmt(r['mse'])} |",
        f"| reconstruction relative mse | {fmt(r['relative_mse'])} |",
        f"| reconstruction cosine | {fmt(r['cosine'])} |",
        f"| collision rate before | {before['collision_rate']:.4%} (max {before['max_items_per_tuple']} items/tuple) |",
        f"| floor: items whose embedding an earlier item has | "
        f"{report['n_items'] - report.get('n_unique_embeddings', report['n_items'])} |",
        f"| collision rate after | {after['collision_rate']:.4%} |",
        f"| dead codes per slot | {' '.join(f'{d:.1%}' for d in report.get('dead_code_share', []))} |",
        f"| items over dedup capacity | {report.get('items_over_dedup_capacity', 0)} |",
        f"| fit seconds | {report['fit_seconds']:.1f} |",
        "", "| slot | vocab | used | usage | entropy bits | entropy norm |", "|---|---|---|---|---|---|",
    ]
    for s in report["slots"]:
        lines.append(f"| {s['slot']} | {s['vocab']} | {s['used']} | {s['usage']:.2%} | "
                     f"{s['entropy_bits']:.2f} | {s['entropy_norm']:.3f} |")
    return "\n".join(lines)
