"""Tokenizer benchmark (not a test): FSQ-reshape (RecGPT), FSQ-mlp, RQ-VAE and RQ-KMeans on the merged
items of data.datasets (default: ml-100k, amazon_games, yelp, lastfm, amazon_scientific; ~42k items)
embedded with MiniLM, plus embedding throughput of recgpt's cached path vs sentence-transformers' encode.

    .venv/bin/python bench/tokenizers.py [--config FILE] [key=value ...] [--throughput-texts 1000]
    .venv/bin/python bench/tokenizers.py --rqvae-remedies   # RQ-VAE collapse and its remedies, per dataset

Budgets default to BENCH_DEFAULTS below (bf16 encoder, 10 epochs, 20 k-means iterations); FSQ-reshape is
run twice: on raw embeddings as RecGPT does, and with the per-dimension standardization every other
variant gets, to separate the two effects.

Prepared datasets and embeddings are cached under outputs/bench/ (embedding 42k texts once takes minutes).
"""
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path and its name would shadow the `tokenizers`
# package that sentence-transformers imports.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from recgpt.config import config_from_argv, load_dataset_spec
from recgpt.data import load_prepared, prepare_dataset
from recgpt.data.prepare import is_current
from recgpt.tokenizer.embed import embed_items, embed_texts, encode, load_encoder, load_embeddings
from recgpt.tokenizer.fit import fit_tokenizer

ROOT = Path("outputs/bench")
VARIANTS = {
    "fsq-reshape (RecGPT: raw input)": dict(kind="fsq", encoder="reshape", standardize=False),
    "fsq-reshape, standardized input": dict(kind="fsq", encoder="reshape"),
    "fsq-mlp": dict(kind="fsq", encoder="mlp"),
    "rqvae": dict(kind="rqvae"),
    "rqkmeans": dict(kind="rqkmeans"),
}


# RQ-VAE anti-collapse remedies (recgpt.tokenizer.rq), switched off one by one from the default.
REMEDIES = {
    "none (k-means init on the untrained encoder)": dict(rq_warmup_epochs=0, dead_code_steps=0, sinkhorn_iters=0),
    "dead-code restarts only": dict(rq_warmup_epochs=0, sinkhorn_iters=0),
    "dead-code restarts + Sinkhorn last level": dict(rq_warmup_epochs=0),
    "autoencoder warm-up only": dict(dead_code_steps=0, sinkhorn_iters=0),
    "all (default)": dict(),
}


def rqvae_remedies(emb, cfg, sets: list[str]) -> None:
    """Max items per tuple, collisions and dead codes per level of RQ-VAE fits, per dataset and merged."""
    lines = ["| items | remedies | max items/tuple | collisions | dead codes per level | relative mse | fit s |",
             "|---|---|---|---|---|---|---|"]
    print("\n".join(lines))
    for name in sets:
        rows = [i for i, item in enumerate(emb.item_ids) if name == "merged" or item.startswith(f"{name}:")]
        vectors = emb.vectors[rows]
        for label, overrides in REMEDIES.items():
            r = fit_tokenizer(vectors, replace(cfg.tokenizer, kind="rqvae", **overrides), embed_model=emb.model,
                              progress=False).report
            dead = " ".join(f"{d:.1%}" for d in r["dead_code_share"])
            lines.append(f"| {name} ({len(rows)}) | {label} | {r['max_items_per_tuple']} | "
                         f"{r['collisions_before']['collision_rate']:.2%} | {dead} | "
                         f"{r['reconstruction']['relative_mse']:.3f} | {r['fit_seconds']:.0f} |")
            print(lines[-1], flush=True)
    publish("tokenizers-rqvae-remedies", "\n".join(lines))


def publish(name: str, table: str) -> None:
    sys.path.append(str(Path(__file__).resolve().parents[1]))  # bench.report, with bench/ itself kept off the path
    from bench.report import write_table

    write_table(name, table)


def merged_items(cfg) -> tuple[list[str], list[str]]:
    ids, texts = [], []
    for name in cfg.data.datasets:
        spec, out = load_dataset_spec(name), ROOT / "prepared" / name
        if not is_current(out, spec, cfg.data.raw_root):
            prepare_dataset(spec, cfg.data.raw_root, out)
        items = load_prepared(out).items
        ids += [f"{name}:{i}" for i in items["item_id"].astype(str)]
        texts += items["text"].tolist()
    return ids, texts


def throughput(texts: list[str], embed_cfg) -> tuple[float, float]:
    """items/s of embed_texts (fresh cache: everything encoded and written) and of the model's own encode."""
    encoder = load_encoder(embed_cfg.model, embed_cfg.device, embed_cfg.dtype, embed_cfg.cache_dir)
    encode(encoder, texts[:64], embed_cfg.batch_size)  # warm-up
    ours, ref = [], []
    for rep in range(3):  # interleaved, alternating which goes first, best of three: the CPU is shared
        for which in ((0, 1) if rep % 2 == 0 else (1, 0)):
            start = time.perf_counter()
            if which == 0:
                with tempfile.TemporaryDirectory() as tmp:
                    embed_texts(texts, replace(embed_cfg, cache_dir=tmp))
                ours.append(len(texts) / (time.perf_counter() - start))
            else:
                encoder.encode(texts, batch_size=embed_cfg.batch_size, show_progress_bar=False)
                ref.append(len(texts) / (time.perf_counter() - start))
    return max(ours), max(ref)


# Modest budgets on a shared 2-core CPU (~10 min in all); later key=value arguments override them.
BENCH_DEFAULTS = ["embed.dtype=bfloat16", "tokenizer.epochs=10", "tokenizer.kmeans_iters=20",
                  f"embed.cache_dir={ROOT / 'embed_cache'}"]


def main(argv) -> int:
    overrides = [a for a in argv if "=" in a and not a.startswith("-")]
    # overrides first: a flag taking several values (--rqvae-sets) would swallow what follows it
    argv = BENCH_DEFAULTS + overrides + [a for a in argv if a not in overrides]

    def flags(parser):
        parser.add_argument("--throughput-texts", type=int, default=1000)
        parser.add_argument("--rqvae-remedies", action="store_true", help="only the RQ-VAE collapse table")
        parser.add_argument("--rqvae-sets", nargs="+", default=["ml-100k", "amazon_scientific", "merged"],
                            help="datasets of data.datasets (or 'merged') for --rqvae-remedies")

    cfg, args = config_from_argv(argv, __doc__, flags)
    embed_cfg = cfg.embed
    emb_dir = ROOT / "embeddings"
    ids, texts = merged_items(cfg)
    if (emb_dir / "item_ids.json").exists() and load_embeddings(emb_dir).item_ids == ids:
        emb = load_embeddings(emb_dir)
    else:
        start = time.perf_counter()
        emb = embed_items(ids, texts, embed_cfg)
        emb.save(emb_dir)
        print(f"embedded {len(ids)} items in {time.perf_counter() - start:.0f} s")
    print(f"{len(ids)} items from {', '.join(cfg.data.datasets)}; {emb.n_empty_text} with empty text; "
          f"{emb.model} dim {emb.dim}")
    if args.rqvae_remedies:
        rqvae_remedies(emb, cfg, args.rqvae_sets)
        return 0

    rows = []
    for name, overrides in VARIANTS.items():
        tcfg = replace(cfg.tokenizer, **overrides)
        tok = fit_tokenizer(emb, tcfg)
        r = tok.report
        usage = " ".join(f"{s['usage']:.1%}" for s in r["slots"][:-1])
        floor = r["n_items"] - r["n_unique_embeddings"]
        rows.append(f"| {name} | {r['reconstruction']['mse']:.3e} | {r['reconstruction']['relative_mse']:.3f} | "
                    f"{r['reconstruction']['cosine']:.3f} | {r['collisions_before']['collision_rate']:.3%} | "
                    f"{r['collisions_before']['max_items_per_tuple']} | {usage} | {r['fit_seconds']:.0f} |")
    print(f"\nheld-out reconstruction on {tok.report['n_heldout']} items; epochs={cfg.tokenizer.epochs}, "
          f"default tokenizer.encoder={type(cfg.tokenizer)().encoder}; {floor} items ({floor / len(ids):.3%}) have "
          f"an embedding identical to an earlier item's: no tokenizer can give them distinct codes")
    rows = ["| tokenizer | mse | relative mse | cosine | collisions before | max items/tuple | slot usage | fit s |",
            "|---|---|---|---|---|---|---|---|", *rows]
    print("\n".join(rows))
    publish("tokenizers", "\n".join(rows))

    sample = [t for t in texts if t.strip()][:: max(1, len(texts) // args.throughput_texts)][: args.throughput_texts]
    ours, ref = throughput(sample, embed_cfg)
    print(f"\nembedding throughput on {len(sample)} texts ({embed_cfg.model}, {embed_cfg.dtype}, batch "
          f"{embed_cfg.batch_size}): recgpt embed_texts {ours:.0f} items/s, sentence-transformers encode "
          f"{ref:.0f} items/s, ratio {ours / ref:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
