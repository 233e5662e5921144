"""Convert an exported model of the earlier flat config format (recgpt 0.1: `dense_dim`, `code_loss_weight`,
`dense_query_skip`, ...) into the current one: `python -m recgpt.model.legacy <folder> <new folder>`.

The flat keys map onto the `model:` sections; weights of parts the converted config does not build (a code head
trained with code_loss_weight 0, a dense query projection with dense_query_state false, an item tower that was
off) are dropped, since they never influenced a score; every other weight must load exactly. The new folder
holds the converted config.json and model.safetensors plus copies of the export's other files.
"""
import json
import shutil
import sys
from pathlib import Path

from recgpt.model.files import save_model


def convert_config(flat: dict) -> dict:
    """Flat 0.1 config.json -> ItemCodeDecoderConfig keyword arguments of the current format."""
    embed_dim = max(int(flat.get("text_dim", 0) or 0), int(flat.get("dense_dim", 0) or 0))
    codes = None
    if float(flat.get("code_loss_weight", 1.0)) > 0:
        codes = {"head": flat.get("head", "parallel"), "embedding": flat.get("code_embedding", "lookup"),
                 "output": flat.get("code_head", "full"), "tie_embeddings": bool(flat.get("tie_word_embeddings", True)),
                 "loss_weight": float(flat.get("code_loss_weight", 1.0))}
    dense = None
    if int(flat.get("dense_dim", 0) or 0) > 0:
        skip, state = bool(flat.get("dense_query_skip")), bool(flat.get("dense_query_state", True))
        popularity = ("gated" if flat.get("dense_content_gate") else "scale") if flat.get("dense_popularity") else "none"
        negatives = flat.get("dense_negatives", "in_batch")
        dense = {"query": "content_state" if skip and state else "content" if skip else "state",
                 "pool": max(1, int(flat.get("dense_query_pool", 0) or 0)),
                 "item_tower": bool(flat.get("dense_item_tower", True)), "negatives": negatives,
                 "catalog_negatives": 1024 if negatives == "catalog" else 0, "popularity": popularity,
                 "temperature": float(flat.get("dense_temperature", 0.05)),
                 "loss_weight": float(flat.get("dense_loss_weight", 1.0))}
    recipe = ("text_dense" if codes is None else "hybrid" if dense else "tiger" if codes["head"] == "autoregressive"
              else "code_text" if flat.get("text_dim") else "code")
    model = {"recipe": recipe, **{k: flat[k] for k in ("n_layers", "d_model", "n_heads", "d_ff", "dropout",
                                                        "max_items", "attention") if k in flat},
             "text_input": bool(flat.get("text_dim")), "center_text": bool(flat.get("center_text", False)),
             "codes": codes, "dense": dense,
             "behavior": {"target": bool(flat.get("behavior_target"))} if flat.get("n_behaviors") else None}
    return {"slot_vocab_sizes": flat["slot_vocab_sizes"], "model": model, "embed_dim": embed_dim,
            "slot_levels": flat.get("slot_levels"), "score_weights": flat.get("score_weights")}


def convert(folder, out) -> Path:
    """Write the converted export of `folder` into the new folder `out` (which must not exist)."""
    import torch
    from safetensors.torch import load_file

    from recgpt.model import ItemCodeDecoder, ItemCodeDecoderConfig

    folder, out = Path(folder), Path(out)
    if out.exists():
        raise FileExistsError(f"{out} exists: give a new folder for the converted model")
    flat = json.loads((folder / "config.json").read_text())
    if "model" in flat:
        raise ValueError(f"{folder / 'config.json'} is already of the current format")
    model = ItemCodeDecoder(ItemCodeDecoderConfig(**convert_config(flat)))
    own = model.state_dict()
    weights = {k: v.reshape(own[k].shape) if k in own and v.dim() == 0 and own[k].numel() == 1 else v
               for k, v in load_file(str(folder / "model.safetensors")).items()}  # 0.1's 0-dim pool attention
    unused = [k for k in weights if k not in own]
    never_scored = ("head.", "dense_head.query.", "dense_head.tower.")
    if any(not k.startswith(never_scored) for k in unused):
        raise ValueError(f"{folder}: weights {[k for k in unused if not k.startswith(never_scored)][:3]} have no "
                         "place in the converted model")
    missing, _ = model.load_state_dict({k: v for k, v in weights.items() if k in own}, strict=False)
    tied = set(getattr(model, "_tied_weights_keys", {}) or {})
    untrained = [k for k in missing if k not in tied and ".residual" not in k]
    if untrained:
        raise ValueError(f"{folder}: the converted model needs weights the export lacks: {untrained[:3]}")
    with torch.no_grad():  # a grid code embedding saved without its residual: the residual is zero
        for k in missing:
            if ".residual" in k:
                model.get_parameter(k).zero_()
    shutil.copytree(folder, out, ignore=shutil.ignore_patterns("config.json", "model.safetensors"))
    save_model(model, out)
    return out


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m recgpt.model.legacy <exported folder> <new folder>", file=sys.stderr)
        return 2
    try:
        print(f"converted: {convert(*argv)}")
    except (OSError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
