"""Corpus build at 1x and 10x: rows/s and peak RSS, each scale measured in a fresh process.

The 10x corpus holds ten copies of every shared dataset with user and item ids remapped ("<id>~<copy>"), so
every dataset is ten times longer and wider. Goal: peak RSS at 10x <= 1.5 x peak RSS at 1x.

Usage: python bench/corpus.py [--workdir DIR] [data.raw_root=../shared/data]
"""
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DATASETS = ["ml-100k", "amazon_games", "yelp", "lastfm", "amazon_scientific", "steam"]


def make_scaled(src: Path, dst: Path, copies: int) -> int:
    """Write `copies` id-remapped copies of a prepared dataset, one copy at a time; returns interactions."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    dst.mkdir(parents=True, exist_ok=True)
    inter = pq.read_table(src / "interactions.parquet")
    items = pq.read_table(src / "items.parquet", columns=["item_id", "text"])

    def remap(table, columns, k):
        for name in columns:
            i = table.schema.get_field_index(name)
            table = table.set_column(i, name, pc.binary_join_element_wise(
                table.column(name).cast(pa.string()), pa.scalar(str(k)), "~"))
        return table

    with pq.ParquetWriter(dst / "interactions.parquet", inter.schema) as w:
        for k in range(copies):
            w.write_table(remap(inter, ["user_id", "item_id"], k), row_group_size=1 << 17)  # as prepare_dataset
    with pq.ParquetWriter(dst / "items.parquet", items.schema.set(0, pa.field("item_id", pa.string()))) as w:
        for k in range(copies):
            w.write_table(remap(items, ["item_id"], k))
    manifest = json.loads((src / "manifest.json").read_text())
    manifest.update(name=dst.name, scaled_copies=copies)
    (dst / "manifest.json").write_text(json.dumps(manifest))
    return inter.num_rows * copies


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM). Unlike ru_maxrss, it is not inherited from the forking parent."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # macOS etc.: may include the parent's


def measure(prepared_root: str, corpus_dir: str, names: list) -> dict:
    """Runs in the child process: build the corpus, report time and peak RSS."""
    from recgpt.config.data import DataConfig
    from recgpt.data.corpus import build_corpus
    from recgpt.io import read_manifest

    import datasets  # noqa: F401  (imported by the build anyway: count it in the baseline)

    rss_before = peak_rss_mb()
    cfg = DataConfig(prepared_root=prepared_root, corpus_dir=corpus_dir, datasets=names)
    start = time.perf_counter()
    out = build_corpus(cfg)
    seconds = time.perf_counter() - start
    splits = read_manifest(out)["counts"]["splits"]
    rows = sum(s["interactions"] for s in splits.values())
    return {"rows": rows, "seconds": seconds, "rows_per_s": rows / seconds,
            "peak_rss_mb": peak_rss_mb(), "rss_after_imports_mb": rss_before}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "--child":
        print(json.dumps(measure(argv[1], argv[2], argv[3].split(","))))
        return 0
    from recgpt.config import config_from_argv, load_dataset_spec
    from recgpt.data import prepare_dataset
    from recgpt.io import claim_until_exit

    cfg, args = config_from_argv(argv, __doc__.splitlines()[0],
                                 extra=lambda p: p.add_argument("--workdir", default=None))
    work = Path(args.workdir or tempfile.mkdtemp(prefix="recgpt-bench-corpus-"))
    claim_until_exit(work, key="--workdir")  # a folder of this bench's (or a new one), one run at a time
    results = {}
    for scale in (1, 10):
        root = work / f"prepared_x{scale}"
        names = []
        for name in DATASETS:
            base = work / "prepared" / name
            if not (base / "manifest.json").is_file():
                prepare_dataset(load_dataset_spec(name), cfg.data.raw_root, base)
            names.append(f"{name}_x{scale}")
            if not (root / names[-1] / "manifest.json").is_file():
                make_scaled(base, root / names[-1], scale)
        corpus = work / f"corpus_x{scale}"
        child = subprocess.run([sys.executable, __file__, "--child", str(root), str(corpus), ",".join(names)],
                               check=True, capture_output=True, text=True)
        results[scale] = json.loads(child.stdout.strip().splitlines()[-1])
        shutil.rmtree(corpus, ignore_errors=True)
        r = results[scale]
        print(f"{scale:>2}x: {r['rows']:>10,} interactions in {r['seconds']:6.1f}s = {r['rows_per_s']:>10,.0f} rows/s; "
              f"peak RSS {r['peak_rss_mb']:7.1f} MB (after imports {r['rss_after_imports_mb']:.1f} MB)")
    ratio = results[10]["peak_rss_mb"] / results[1]["peak_rss_mb"]
    print(f"rows ratio 10x/1x: {results[10]['rows'] / results[1]['rows']:.2f}; "
          f"peak RSS ratio 10x/1x: {ratio:.2f} (goal <= 1.5); "
          f"throughput ratio 10x/1x: {results[10]['rows_per_s'] / results[1]['rows_per_s']:.2f}")
    print(f"work folder: {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
