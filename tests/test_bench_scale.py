"""bench/scale.py's score stage on a small real run of its own pipeline: random unit vectors written chunk by
chunk, an FSQ tokenizer fitted and assigned by `recgpt tokenize`, then the catalog and exact top-10 scoring."""
import importlib.util
from pathlib import Path

from recgpt.tokenizer.cli import main as tokenize


def load_bench():
    # loaded by path: bench/ on sys.path would shadow packages
    spec = importlib.util.spec_from_file_location("bench_scale", Path(__file__).resolve().parents[1] / "bench" / "scale.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_score_stage_scores_every_user_over_the_whole_catalog(tmp_path):
    bench = load_bench()
    bench.write_random_embeddings(tmp_path / "embeddings", 2000, chunk=700)
    common = [f"tokenizer.output_dir={tmp_path / 'tokenizer'}", f"tokenizer.embeddings_dir={tmp_path / 'embeddings'}",
              "tokenizer.epochs=4", "tokenizer.batch_size=256"]
    assert tokenize(["fit", *common]) == 0
    assert tokenize(["assign", "--embeddings", str(tmp_path / "embeddings"), *common]) == 0
    result = bench.score_stage({"work": str(tmp_path)}, users=40, batch=16)  # raises on a list shorter than 10
    assert result["items"] == result["rows"] == 2000
    assert result["code_users_s"] > 0 and result["users_s"] > 0 and result["peak_rss_mb"] > 0


def test_corpus_stage_holds_every_replicated_row(tmp_path, monkeypatch):
    """A replicated table domain at 2 copies goes through prepare and corpus under its bench name: the real
    configs/datasets spec of the same name must not re-prepare the shared 1x table inside the corpus stage."""
    import pyarrow.parquet as pq

    bench = load_bench()
    raw_root = Path(__file__).resolve().parents[2] / "shared" / "data"
    monkeypatch.setattr(bench, "CORE", [])
    monkeypatch.setattr(bench, "TABLES", ["amazon14_beauty"])
    job = {"work": str(tmp_path / "x2"), "raw_root": str(raw_root), "base": str(tmp_path / "base"), "copies": 2,
           "items": 100}
    bench.child("setup", job)
    prepared = bench.child("prepare", job)["rows"]
    one = pq.ParquetFile(raw_root / "amazon14_beauty" / "amazon14_beauty.inter.parquet").metadata.num_rows
    assert one < prepared <= 2 * one  # duplicates dropped within a copy, never across copies
    corpus = bench.child("corpus", job)["rows"]  # raises unless every prepared row is in or counted dropped
    assert corpus > one


def test_catalog_build_maps_every_id_to_its_row():
    result = load_bench().catalog_build({"items": 3000})  # raises when the id lookup disagrees with the ids' order
    assert result["rows"] == 3000 and result["peak_over_mb"] >= 0
