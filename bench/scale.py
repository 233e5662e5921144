"""Every stage at growing scale: the real shared domains replicated with remapped user and item ids, each stage
in a fresh process; wall time, rows/s and peak RSS per stage and scale, and each one's growth.

Domains: the 13 text domains of ../shared/data (ml-100k, amazon_games, yelp, lastfm, amazon_scientific, steam
and the seven parquet tables amazon14_*, amazon18_electronic, foodcom; ml-1m left out: MovieLens twice).
A scale is `copies[:items]`: every domain `copies` times over, ids "<id>~<copy>" (users and items), and the
tokenizer stages on `items` random unit vectors (default: copies x the domains' item count).
Stages (each a child process; peak RSS is the child's own VmHWM, also os.wait4's ru_maxrss):
- prepare: `prepare_dataset` of the seven table domains from their replicated raw parquet files (the other six
  formats are replicated from their prepared folders, untimed);
- corpus: `build_corpus` of all 13 (interactions/s);
- fit: `recgpt tokenize fit` (fsq, 1 epoch) on the random vectors, read memory-mapped (items/s);
- assign: `recgpt tokenize assign`: the catalog's codes with the fitted tokenizer (items/s);
- score: the catalog of all those items (codes, trie, fp16 vectors memory-mapped) and exact top-10 scoring of
  1,000 users over it with an untrained text_dense model with a code head, code alone and code + dense (`score_stage`; its rows
  are the catalog's items, its rows/s the (user, item) pairs scored by code + dense per second).
Each scale's folder is deleted before the next; its disk use is printed first.

    python bench/scale.py --scales 1,10:5000000,35:15000000 [--workdir DIR] [--raw-root ../shared/data]
    python bench/scale.py --scales 1,10,35 --stages prepare,corpus   # interactions alone (docs/scale.md)
    python bench/scale.py --cache-keys 1e6,3e6  # the embedding cache's key lookup alone (cache_keys)
    python bench/scale.py --catalog-items 15e6   # Catalog.from_codes alone (catalog_build)
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])  # the repo, not bench/

CORE = ["ml-100k", "amazon_games", "yelp", "lastfm", "amazon_scientific", "steam"]
TABLES = ["amazon14_beauty", "amazon14_book", "amazon14_clothing", "amazon14_electronic", "amazon14_health",
          "amazon18_electronic", "foodcom"]
DIM = 384


def scaled(name: str) -> str:
    """A replicated domain's name: no configs/datasets spec has it, so build_corpus uses its prepared folder as
    is. Under its own name, the real spec would find the folder stale (another spec, other source bytes) and
    prepare the shared 1x data again inside the corpus stage."""
    return f"{name}~s"


def table_spec(name: str, folder: Path):
    """The spec of a replicated raw table, named scaled(name); its files keep the raw name."""
    from recgpt.config.data import DatasetSpec, TextConfig

    return DatasetSpec(name=scaled(name), format="table", path=str(folder),
                       files={"inter": f"{name}.inter.parquet", "item": f"{name}.item.parquet"},
                       columns={"user": "user_id", "item": "item_id", "timestamp": "timestamp"},
                       text=TextConfig(fields=["title"]))


def remap(table, columns, k: int):
    import pyarrow as pa
    import pyarrow.compute as pc

    for name in columns:
        i = table.schema.get_field_index(name)
        table = table.set_column(i, name, pc.binary_join_element_wise(
            table.column(name).cast(pa.string()), pa.scalar(str(k)), "~"))
    return table


def replicate_raw(src: Path, dst: Path, name: str, copies: int) -> None:
    """The raw parquet table `copies` times, one copy after another (each user's rows stay together)."""
    import pyarrow.parquet as pq

    dst.mkdir(parents=True, exist_ok=True)
    for kind, columns in (("inter", ["user_id", "item_id"]), ("item", ["item_id"])):
        table = pq.read_table(src / f"{name}.{kind}.parquet")
        with pq.ParquetWriter(dst / f"{name}.{kind}.parquet", remap(table, columns, 0).schema) as w:
            for k in range(copies):
                w.write_table(remap(table, columns, k), row_group_size=1 << 17)


def write_random_embeddings(folder: Path, n: int, seed: int = 0, chunk: int = 1 << 18) -> None:
    """n random unit vectors (fp16) as an embeddings folder, written chunk by chunk (never all in memory)."""
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    header = json.dumps({"__metadata__": {"model": "all-MiniLM-L6-v2", "dim": str(DIM), "n_empty_text": "0"},
                         "embeddings": {"dtype": "F16", "shape": [n, DIM], "data_offsets": [0, n * DIM * 2]}})
    header += " " * (-len(header) % 8)
    rng = np.random.default_rng(seed)
    with open(folder / "embeddings.safetensors", "wb") as f:
        f.write(len(header).to_bytes(8, "little") + header.encode())
        for start in range(0, n, chunk):
            x = rng.standard_normal((min(chunk, n - start), DIM), dtype=np.float32)
            f.write((x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float16).tobytes())
    with open(folder / "item_ids.json", "w") as f:
        json.dump([f"v{i}" for i in range(n)], f)
    (folder / "manifest.json").write_text(json.dumps({"stage": "embed", "model": "all-MiniLM-L6-v2"}))


def status_mb(field: str = "VmHWM") -> float:
    """A /proc/self/status memory field in MB: VmHWM (peak resident), RssAnon / RssFile (now: heap vs mapped
    file pages, which the kernel may drop)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cache_keys(job: dict, setup: bool) -> dict:
    """The embedding cache's key lookup at n texts: setup writes n random digests (and fp16 vectors of dim 8)
    as shards of 4,096 (untimed); the timed child opens the cache, builds its lookup (len) and asks missing()
    for the n stored digests shuffled plus n/2 absent ones."""
    import numpy as np

    from recgpt.tokenizer.cache import EmbeddingCache

    n, folder, rng = job["keys"], Path(job["work"]) / "cache", np.random.default_rng(0)
    shas = [rng.bytes(32).hex() for _ in range(n)]
    if setup:
        cache = EmbeddingCache(folder, "bench")
        for start in range(0, n, 4096):
            part = shas[start:start + 4096]
            cache.add(part, rng.standard_normal((len(part), 8)).astype(np.float16))
        return {"keys": n}
    query = [shas[i] for i in rng.permutation(n)] + [rng.bytes(32).hex() for _ in range(n // 2)]
    base = status_mb("VmRSS")
    began = time.perf_counter()
    cache = EmbeddingCache(folder, "bench")
    if len(cache) != n:
        raise SystemExit(f"scale: cache holds {len(cache)} keys, not {n}")
    built = time.perf_counter()
    missing = cache.missing(query)
    done = time.perf_counter()
    if not np.array_equal(missing, np.arange(n, len(query))):
        raise SystemExit("scale: missing() disagrees with what was stored")
    lookup_mb = sum(a.nbytes for a in (cache._prefix, cache._shard, cache._row)) / 2**20
    return {"rows": n, "seconds": done - began, "build_s": built - began, "missing_s": done - built,
            "rows_per_s": len(query) / max(done - built, 1e-9), "base_rss_mb": base, "lookup_mb": lookup_mb,
            "peak_rss_mb": status_mb(),
            "end_anon_mb": status_mb("RssAnon"), "end_file_mb": status_mb("RssFile")}


def catalog_build(job: dict) -> dict:
    """`Catalog.from_codes` of n ids ("v<i>") and random codes (slot sizes 256/256/256/64): its id lookup and
    trie; what it holds after and at its peak, over the process before it."""
    import numpy as np

    from recgpt.predict.catalog import Catalog

    n, rng = job["items"], np.random.default_rng(0)
    ids = [f"v{i}" for i in range(n)]
    codes = np.stack([rng.integers(0, v, n) for v in (256, 256, 256, 64)], 1)
    base, began = status_mb("VmRSS"), time.perf_counter()
    catalog = Catalog.from_codes(ids, codes, [256, 256, 256, 64])
    seconds = time.perf_counter() - began
    if catalog.rows(ids[:1000] + ["absent"]) != (list(range(min(n, 1000))), 1):
        raise SystemExit("scale: the catalog's id lookup disagrees with the ids' order")
    return {"rows": n, "seconds": seconds, "held_mb": status_mb("VmRSS") - base,
            "peak_over_mb": status_mb() - base}


def score_stage(job: dict, users: int = 1000, history: int = 20, batch: int = 250) -> dict:
    """The catalog of every item vector (the codes `assign` wrote, the fp16 vectors memory-mapped, an untrained
    2 x 64 text_dense model with a code head) and the top 10 of `users` random 20-item histories scored exactly over it, `batch` users
    at a time: by the code head alone (one pass over the catalog) and by code + dense (two passes: the hybrid's
    standardization needs each component's mean and spread). ItemScorer.top_k holds one chunk of scores at a time."""
    import warnings

    import numpy as np
    import torch

    from recgpt.model import ItemCodeDecoder, ItemCodeDecoderConfig
    from recgpt.predict.catalog import Catalog
    from recgpt.predict.horizon import recommend_lists
    from recgpt.predict.scoring import ItemScorer
    from recgpt.tokenizer import load_embeddings, load_item_codes, load_tokenizer

    work, began = Path(job["work"]), time.perf_counter()
    ids, codes = load_item_codes(work / "embeddings" / "codes.safetensors")
    with warnings.catch_warnings():  # a read-only memmap: the scorer never writes to it
        warnings.simplefilter("ignore")
        vectors = torch.from_numpy(load_embeddings(work / "embeddings", mmap=True).vectors)
    sizes = load_tokenizer(work / "tokenizer").slot_vocab_sizes
    catalog = Catalog.from_codes(ids, codes, sizes, vectors)
    del ids, codes
    torch.manual_seed(0)
    model = ItemCodeDecoder(ItemCodeDecoderConfig.from_recipe(  # the recommended recipe with a code head beside
        "text_dense", sizes, embed_dim=DIM, n_layers=2, d_model=64, n_heads=4, d_ff=128, dropout=0.0, max_items=50,
        codes={"head": "parallel", "embedding": "lookup", "output": "full"})).eval()
    catalog_s = time.perf_counter() - began
    rng = np.random.default_rng(0)
    histories = [rng.integers(0, catalog.n_items, history).tolist() for _ in range(users)]
    seconds = {}
    for name, weights in (("code", {"code": 1.0}), ("code+dense", {"code": 0.5, "dense": 0.5})):
        model.config.score_weights = weights
        start = time.perf_counter()
        scorer = ItemScorer(model, catalog.codes, catalog.trie, catalog.text_emb, "exact")
        for lo in range(0, users, batch):
            lists, _ = recommend_lists(scorer, histories[lo:lo + batch], 10, "exact", allow_history=False)
            if any(len(r) != 10 for r in lists):
                raise SystemExit(f"scale: {name} scoring returned a list shorter than 10")
        seconds[name] = time.perf_counter() - start
    # rows: the catalog's items; rows/s: (user, item) pairs scored per second by code + dense
    return {"rows": catalog.n_items, "seconds": seconds["code+dense"],
            "rows_per_s": users * catalog.n_items / seconds["code+dense"], "users_s": users / seconds["code+dense"],
            "catalog_s": catalog_s, "code_users_s": users / seconds["code"], "items": catalog.n_items,
            "peak_rss_mb": status_mb(), "end_anon_mb": status_mb("RssAnon"), "end_file_mb": status_mb("RssFile")}


def child(stage: str, job: dict) -> dict:
    """One stage in this (fresh) process; returns rows, seconds and this process's peak RSS."""
    from recgpt.config.data import DataConfig

    if stage.startswith("cache"):
        return cache_keys(job, stage == "cache-setup")
    if stage == "score":
        return score_stage(job)
    if stage == "catalog":
        return catalog_build(job)
    work, raw_root = Path(job["work"]), job["raw_root"]
    if stage == "setup":  # replicate the inputs (untimed): raw tables, the other formats' prepared folders
        from recgpt.config import load_dataset_spec
        from recgpt.data import prepare_dataset

        import importlib.util

        # bench/corpus.py's make_scaled: prepared folders replicated with remapped ids (loaded by path: bench/
        # on sys.path would shadow packages such as `tokenizers`)
        spec = importlib.util.spec_from_file_location("bench_corpus", Path(__file__).with_name("corpus.py"))
        bench_corpus = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(bench_corpus)
        make_scaled = bench_corpus.make_scaled

        import pyarrow.parquet as pq

        for name in TABLES:
            replicate_raw(Path(raw_root) / name, work / "raw" / name, name, job["copies"])
        for name in CORE:
            base = Path(job["base"]) / name
            if not (base / "manifest.json").is_file():
                prepare_dataset(load_dataset_spec(name), raw_root, base)
            make_scaled(base, work / "prepared" / scaled(name), job["copies"])
        items = job["items"] or job["copies"] * sum(
            pq.ParquetFile(p / "items.parquet").metadata.num_rows for p in (Path(job["base"]) / n for n in CORE)) \
            + job["copies"] * sum(pq.ParquetFile(Path(raw_root) / n / f"{n}.item.parquet").metadata.num_rows
                                  for n in TABLES)
        write_random_embeddings(work / "embeddings", items)
        return {"items": items}
    began, rows = time.perf_counter(), 0
    if stage == "prepare":
        from recgpt.data import prepare_dataset
        from recgpt.io import read_manifest

        import pandas  # noqa: F401  (imported by every importer: not part of the stage's growth)

        began = time.perf_counter()
        for name in TABLES:
            out = prepare_dataset(table_spec(name, work / "raw" / name), raw_root, work / "prepared" / scaled(name))
            rows += read_manifest(out)["counts"]["interactions"]
    elif stage == "corpus":
        import pyarrow.parquet as pq

        from recgpt.data.corpus import build_corpus
        from recgpt.io import read_manifest

        import datasets  # noqa: F401

        began = time.perf_counter()
        cfg = DataConfig(prepared_root=str(work / "prepared"), corpus_dir=str(work / "corpus"),
                         datasets=[scaled(n) for n in CORE + TABLES])
        counts = read_manifest(build_corpus(cfg))["counts"]
        rows = sum(s["interactions"] for s in counts["splits"].values())
        given = sum(pq.ParquetFile(work / "prepared" / scaled(n) / "interactions.parquet").metadata.num_rows
                    for n in CORE + TABLES)
        dropped = sum(c["short_sequence_items_dropped"] for c in counts["per_dataset"].values())
        if rows + dropped != given:  # every prepared row is in the corpus or counted as dropped
            raise SystemExit(f"scale: the corpus holds {rows:,} + {dropped:,} dropped of {given:,} prepared rows")
    else:
        from recgpt.tokenizer.cli import main as tokenize

        import torch  # noqa: F401

        began = time.perf_counter()
        common = [f"tokenizer.output_dir={work / 'tokenizer'}", f"tokenizer.embeddings_dir={work / 'embeddings'}",
                  "tokenizer.epochs=1", "tokenizer.batch_size=1024", "tokenizer.dedup_size=1024"]
        argv = ["fit", *common] if stage == "fit" else ["assign", "--embeddings", str(work / "embeddings"), *common]
        if tokenize(argv):
            raise SystemExit(f"scale: tokenize {stage} failed")
        rows = job["items"]
    seconds = time.perf_counter() - began
    return {"rows": rows, "seconds": seconds, "rows_per_s": rows / max(seconds, 1e-9), "peak_rss_mb": status_mb(),
            "end_anon_mb": status_mb("RssAnon"), "end_file_mb": status_mb("RssFile")}


def run_stage(stage: str, job: dict) -> dict:
    proc = subprocess.Popen([sys.executable, __file__, "--child", stage, json.dumps(job)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    out, err = proc.stdout.read(), proc.stderr.read()
    if proc.returncode:
        raise SystemExit(f"scale: stage {stage} failed ({proc.returncode}):\n{err[-3000:]}")
    result = json.loads(out.strip().splitlines()[-1])
    result["wait4_maxrss_mb"] = usage.ru_maxrss / 1024
    return result


def disk_gb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e9


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "--child":
        print(json.dumps(child(argv[1], json.loads(argv[2]))))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", default="1,10:5000000,35:15000000")
    parser.add_argument("--stages", default="prepare,corpus,fit,assign,score")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--raw-root", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    parser.add_argument("--cache-keys", default=None, help="only the embedding cache's lookup at these key counts")
    parser.add_argument("--catalog-items", default=None, help="only Catalog.from_codes at these item counts")
    args = parser.parse_args(argv)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="recgpt-bench-scale-")).resolve()  # table specs join it
    if args.cache_keys:
        return cache_main(work, [int(float(n)) for n in args.cache_keys.split(",")])
    for n in [int(float(n)) for n in args.catalog_items.split(",")] if args.catalog_items else []:
        r = run_stage("catalog", {"items": n})
        print(f"catalog of {n:,} ids and codes built in {r['seconds']:.1f}s: holds {r['held_mb']:.0f} MB, peaks "
              f"{r['peak_over_mb']:.0f} MB over the process before it", flush=True)
    if args.catalog_items:
        return 0
    results, stages = {}, args.stages.split(",")
    for spec in args.scales.split(","):
        copies, _, items = spec.partition(":")
        copies = int(copies)
        folder = work / f"x{copies}-{items or 'all'}"
        shutil.rmtree(folder, ignore_errors=True)
        job = {"work": str(folder), "raw_root": args.raw_root, "base": str(work / "base"), "copies": copies,
               "items": int(items) if items else 0}
        job["items"] = run_stage("setup", job)["items"]
        label = f"{copies}x, {job['items'] / 1e6:.2f} M items"
        print(f"scale {label}: inputs {disk_gb(folder):.1f} GB", flush=True)
        for stage in stages:
            r = results.setdefault(stage, {})[label] = run_stage(stage, job)
            print(f"  {stage:8s} {r['rows']:>12,} rows in {r['seconds']:7.1f}s = {r['rows_per_s']:>10,.0f}/s, "
                  f"peak RSS {r['peak_rss_mb']:7.0f} MB (wait4 {r['wait4_maxrss_mb']:.0f} MB; at the end anon "
                  f"{r['end_anon_mb']:.0f} MB, file pages {r['end_file_mb']:.0f} MB)", flush=True)
            if stage == "score":
                print(f"           catalog of {r['items']:,} items built in {r['catalog_s']:.1f}s; users/s over it: "
                      f"code {r['code_users_s']:.1f}, code + dense {r['users_s']:.1f}", flush=True)
        print(f"  disk at the end of {copies}x: {disk_gb(folder):.1f} GB (deleted now)", flush=True)
        shutil.rmtree(folder, ignore_errors=True)
    print("\n| stage | scale | rows | rows x | seconds x | rows/s x | peak RSS MB | RSS x |")
    print("|---|---|---|---|---|---|---|---|")
    for stage, by in results.items():
        a = next(iter(by.values()))  # the first scale given is the reference
        for label, r in by.items():
            print(f"| {stage} | {label} | {r['rows']:,} | {r['rows'] / a['rows']:.2f} | "
                  f"{r['seconds'] / a['seconds']:.2f} | {r['rows_per_s'] / a['rows_per_s']:.2f} | "
                  f"{r['peak_rss_mb']:.0f} | {r['peak_rss_mb'] / a['peak_rss_mb']:.2f} |")
    print(f"work folder {work} (prepared 1x domains kept in base/)")
    return 0


def cache_main(work: Path, counts: list[int]) -> int:
    for n in counts:
        job = {"work": str(work / f"keys{n}"), "keys": n}
        shutil.rmtree(job["work"], ignore_errors=True)
        run_stage("cache-setup", job)
        r = run_stage("cache", job)
        grown = r["peak_rss_mb"] - r["base_rss_mb"]
        print(f"cache {n:,} keys ({disk_gb(Path(job['work'])):.2f} GB): build {r['build_s']:.2f}s, missing() of "
              f"{n + n // 2:,} shas {r['missing_s']:.2f}s; per million keys {r['seconds'] / n * 1e6:.2f}s and "
              f"{grown / n * 1e6:.0f} MB peak RSS over the {r['base_rss_mb']:.0f} MB before "
              f"(peak {r['peak_rss_mb']:.0f} MB; the lookup's arrays {r['lookup_mb']:.0f} MB)", flush=True)
        shutil.rmtree(job["work"], ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
