"""`recgpt tokenize embed|fit|assign`: parse config, call the package functions, print a summary.

- `embed [--items FOLDER]`: embed the items of a corpus (default data.corpus_dir) or of a prepared dataset
  folder into embed.output_dir (default: <that folder>/embeddings). Several processes share the work:
  `accelerate launch --num_processes P -m recgpt.cli tokenize embed ...` (one cache, one output folder).
- `fit`: fit tokenizer.kind on tokenizer.embeddings_dir (default: embed.output_dir, else
  <data.corpus_dir>/embeddings); write the tokenizer folder and the item codes to tokenizer.output_dir and
  print the report table.
- `assign --embeddings FOLDER`: codes for another dataset's embeddings with the fitted tokenizer at
  tokenizer.output_dir, written beside them (codes.safetensors + item_ids.json).
"""
import sys
from pathlib import Path

from recgpt.config import config_from_argv, config_to_dict
from recgpt.config.errors import check_device
from recgpt.io import ArtifactError, check_replaceable, guarded_output, is_kind, sha256_file, staged_folder, write_manifest
from recgpt.logging import is_main_process, print0

USAGE = "usage: recgpt tokenize {embed|fit|assign} [--config FILE] [key=value ...]"


def read_items(folder: Path):
    """(item ids, texts) of a corpus (rows in item_index order) or of a prepared dataset folder."""
    if (folder / "sequences").exists():
        from recgpt.data import load_corpus

        items = load_corpus(folder).items.sort_values("item_index")
    else:
        from recgpt.data import load_prepared

        items = load_prepared(folder).items
    return items["item_id"].astype(str).tolist(), items["text"].tolist()


def embed_main(argv) -> int:
    from recgpt.tokenizer.embed import embed_items

    cfg, args = config_from_argv(argv, "embed item text (docs/artifacts.md: Item embeddings)",
                                 lambda p: p.add_argument("--items", help="corpus or prepared dataset folder"))
    source = Path(args.items or cfg.data.corpus_dir)
    out = Path(cfg.embed.output_dir or source / "embeddings")
    ids, texts = read_items(source)  # a missing source is named before anything is created
    inputs = [source / "items.parquet"]
    check_replaceable(out, "item embeddings", "embed.output_dir", is_kind("embed"), inputs)  # every process
    if not is_main_process():  # under accelerate launch: every process embeds its share into the cache
        embed_items(ids, texts, cfg.embed)
        return 0
    with guarded_output(out, "item embeddings", "embed.output_dir", is_kind("embed"), inputs):
        emb = embed_items(ids, texts, cfg.embed)  # the main process writes the one output folder
        with staged_folder(out, "item embeddings", "embed.output_dir", is_kind("embed")) as tmp:
            emb.save(tmp)
    print0(f"{len(ids)} items ({emb.n_empty_text} with empty text, embedded as {cfg.embed.placeholder!r}) "
           f"-> {out} [{emb.model}, dim {emb.dim}]")
    return 0


def embeddings_dir(cfg) -> Path:
    return Path(cfg.tokenizer.embeddings_dir or cfg.embed.output_dir or Path(cfg.data.corpus_dir) / "embeddings")


def fit_main(argv) -> int:
    from recgpt.tokenizer.base import CODES_FILE, save_item_codes
    from recgpt.tokenizer.embed import EMBEDDINGS_FILE, load_embeddings
    from recgpt.tokenizer.fit import fit_tokenizer
    from recgpt.tokenizer.report import format_report

    from recgpt.config.tokenizer import KINDS

    cfg, _ = config_from_argv(argv, f"fit the item tokenizer (docs/artifacts.md: Tokenizer); tokenizer.kind is one "
                                    f"of {', '.join(KINDS)}")
    source, out = embeddings_dir(cfg), Path(cfg.tokenizer.output_dir)
    check_device(cfg.tokenizer.device, "tokenizer.device")
    with guarded_output(out, "tokenizer", "tokenizer.output_dir", is_kind("tokenizer"), [source]):
        emb = load_embeddings(source, mmap=True)  # streamed from disk in batches
        tok = fit_tokenizer(emb, cfg.tokenizer)
        codes = tok.assign(emb, item_ids=emb.item_ids)
        with staged_folder(out, "tokenizer", "tokenizer.output_dir", is_kind("tokenizer"), inputs=[source]) as tmp:
            tok.save(tmp)
            save_item_codes(tmp / CODES_FILE, emb.item_ids, codes)
            write_manifest(tmp, {"stage": "tokenizer", "embeddings": str(source),
                                 "embeddings_sha256": sha256_file(source / EMBEDDINGS_FILE),
                                 "counts": {"items": len(emb.item_ids)}, "config": config_to_dict(cfg.tokenizer)})
    print0(format_report(tok.report))
    print0(f"tokenizer and item codes -> {out}")
    return 0


def assign_main(argv) -> int:
    from recgpt.tokenizer.base import CODES_FILE, load_tokenizer, save_item_codes
    from recgpt.tokenizer.collisions import collision_stats
    from recgpt.tokenizer.embed import load_embeddings

    cfg, args = config_from_argv(argv, "encode another dataset's items with a fitted tokenizer",
                                 lambda p: p.add_argument("--embeddings", required=True, help="embeddings folder"))
    folder = Path(args.embeddings)  # written into (codes beside the embeddings): an embed folder, not the tokenizer's
    with guarded_output(folder, "item embeddings", "--embeddings", is_kind("embed"), [cfg.tokenizer.output_dir]):
        tok = load_tokenizer(cfg.tokenizer.output_dir)
        emb = load_embeddings(folder, mmap=True)
        codes = tok.encode(emb)
        save_item_codes(folder / CODES_FILE, emb.item_ids, tok.assign(emb, item_ids=emb.item_ids))
    stats = collision_stats(codes)
    print0(f"{stats['n_items']} items, collision rate before resolution {stats['collision_rate']:.3%} "
           f"-> {Path(args.embeddings) / CODES_FILE}")
    return 0


def main(argv) -> int:
    commands = {"embed": embed_main, "fit": fit_main, "assign": assign_main}
    if not argv or argv[0] not in commands:
        print0(USAGE, file=sys.stderr)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    try:
        if sys.argv[0] == "recgpt tokenize":  # set by recgpt.cli: usage lines name the subcommand
            sys.argv[0] = f"recgpt tokenize {argv[0]}"
        return commands[argv[0]](argv[1:])
    except (ArtifactError, ValueError) as e:  # bad input: one clear line, no traceback, exit 2 (1 is for bugs)
        print0(f"recgpt tokenize {argv[0]}: {e}", file=sys.stderr)
        return 2
