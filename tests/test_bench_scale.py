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
