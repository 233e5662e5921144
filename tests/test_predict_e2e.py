"""The Python API and the CLI end to end: an exported model folder (real tokenizer fitted on real ml-100k
text, randomly initialised real decoder) predicting on a real prepared dataset; bad input."""
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from fixtures_predict import fit_small_tokenizer
from recgpt.predict import Recommender
from recgpt.cli import main as recgpt_main


def main(argv) -> int:
    return recgpt_main(["predict", *argv])

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def recommender(exported_model):
    return Recommender.from_pretrained(exported_model)


def test_recommend_item_ids_and_scores(recommender, ml100k_catalog, ml100k_histories):
    ids = ml100k_catalog.item_ids
    histories = [[ids[r] for r in h] for h in ml100k_histories[:5]]
    out = recommender.recommend(histories, k=10)
    assert len(out.item_ids) == 5 and all(len(r) == 10 and len(set(r)) == 10 for r in out.item_ids)
    assert all(ml100k_catalog.rows(r)[1] == 0 for r in out.item_ids)
    assert all(s == sorted(s, reverse=True) for s in out.scores)
    # the same through the trie beam: every item it finds carries that item's exact log-prob (scored over the
    # whole catalog), and a beam of 30 finds most of the exact top 10
    beam = Recommender.from_pretrained(recommender_path(recommender), scoring="trie", beam_size=30)
    out_beam = beam.recommend(histories, k=10)
    full = recommender.recommend(histories, k=ml100k_catalog.n_items)
    exact_score = {(u, i): s for u, (r, ss) in enumerate(zip(full.item_ids, full.scores)) for i, s in zip(r, ss)}
    for u, (r, ss) in enumerate(zip(out_beam.item_ids, out_beam.scores)):
        assert len(r) == 10
        for i, s in zip(r, ss):
            assert s == pytest.approx(exact_score[(u, i)], abs=1e-4)
    shared = [len(set(b) & set(e)) for b, e in zip(out_beam.item_ids, out.item_ids)]
    assert sum(shared) >= 0.5 * 10 * len(histories), shared
    assert sum(b[0] == e[0] for b, e in zip(out_beam.item_ids, out.item_ids)) >= len(histories) - 1
    excluded = recommender.recommend(histories, k=10, allow_history=False)
    assert all(not set(r) & set(h) for r, h in zip(excluded.item_ids, histories))
    auto = recommender.recommend(histories, k=10, allow_history="auto")  # no log to read repeats from: excluded
    assert auto.item_ids == excluded.item_ids and any("the catalog has no log" in n for n in auto.notes)
    long = recommender.recommend(histories[:2], k=5, horizon=3, strategy="rra", n_samples=2, allow_history="auto")
    assert any("strategy rra, so they are excluded" in n for n in long.notes)
    assert all(len(r) >= 1 and len(set(r)) == len(r) for r in long.item_ids)


def recommender_path(rec):
    return Path(rec.model.name_or_path)


def test_unknown_and_empty_histories(recommender, ml100k_catalog):
    ids = ml100k_catalog.item_ids
    out = recommender.recommend([[ids[0], "no-such-item", ids[5]], ["nope"]], k=3, on_empty="skip")
    assert out.unknown_history_items == 2 and out.empty_histories == [1]
    assert len(out.item_ids[0]) == 3 and out.item_ids[1] == []
    with pytest.raises(ValueError, match="history 1 has no item in the catalog"):
        recommender.recommend([[ids[0]], ["nope"]], k=3)
    with pytest.raises(ValueError, match="history 0 has no item"):
        recommender.recommend([[]], k=3)
    with pytest.raises(ValueError, match="larger than the catalog"):
        recommender.recommend([[ids[0]]], k=ml100k_catalog.n_items + 1)
    with pytest.raises(ValueError, match="horizon: must be >= 1"):
        recommender.recommend([[ids[0]]], k=3, horizon=0)
    with pytest.raises(TypeError, match="list of item-id lists"):
        recommender.recommend([ids[0], ids[1]], k=3)


def test_catalog_is_encoded_with_the_models_tokenizer(recommender, prepared_dir, embed_config, ml100k_catalog):
    rec = Recommender.from_pretrained(recommender_path(recommender), embed_cfg=embed_config)
    catalog = rec.set_catalog_from_prepared(prepared_dir("ml-100k"))  # embeds (cached) and encodes zero-shot
    assert catalog.item_ids == ml100k_catalog.item_ids
    assert torch.equal(catalog.codes, ml100k_catalog.codes)
    assert catalog.stats["embed_model"] == rec.tokenizer.embed_model


def test_a_different_tokenizer_is_refused(exported_model, real_embeddings, tmp_path):
    other = fit_small_tokenizer(real_embeddings, seed=1)  # same slot sizes, other weights
    other.save(tmp_path / "other")
    with pytest.raises(ValueError, match="tokenizer mismatch.*weights differ"):
        Recommender.from_pretrained(exported_model, tokenizer_dir=tmp_path / "other")
    bigger = fit_small_tokenizer(real_embeddings, kind="rqkmeans", seed=0)
    bigger.dedup_size = 7
    bigger.save(tmp_path / "bigger")
    with pytest.raises(ValueError, match="tokenizer mismatch.*slot vocab sizes"):
        Recommender.from_pretrained(exported_model, tokenizer_dir=tmp_path / "bigger")


def test_cli_writes_the_report(exported_model, prepared_dir, embed_config, tmp_path):
    dataset = prepared_dir("ml-100k")
    common = [f"predict.model_dir={exported_model}", f"embed.cache_dir={embed_config.cache_dir}",
              "predict.max_users=60", "predict.ks=[1,5,10]"]
    out = tmp_path / "loo"
    assert main(["--dataset", str(dataset), *common, f"predict.output_dir={out}"]) == 0
    result = json.loads((out / "metrics.json").read_text())
    assert set(result["methods"]) == {"model", "recency", "popularity", "content_knn"}
    assert result["counts"]["evaluated"] == 60 and result["allow_history"] == "auto"
    assert result["repeats"]["repeat_share_top"] == 0  # ml-100k's users never rate a movie twice: none placed
    assert 0 <= result["methods"]["model"]["HR@10"] <= 1 and "Coverage@10" in result["methods"]["model"]
    recs = pd.read_parquet(out / "recommendations.parquet")
    assert list(recs.columns) == ["user_id", "rank", "item_id", "score"] and len(recs) == 600
    assert (out / "plots" / "metrics_vs_k.png").stat().st_size > 0
    assert "| recency | HR |" in (out / "metrics.md").read_text()
    # predict.weights=self (the default) needs the score fit's grid: an export without one is scored with its
    # stored weights, and the report says so
    assert result["weights"]["mode"] == "fitted" and any("holds no fitted weight grid" in n for n in result["notes"])
    assert result["weights"]["priors_users_per_weights"] is None  # no fitted grid: no priors row

    horizon = exported_model.parent / "predict" / "ml-100k-horizon"  # the default place: <run>/predict/...
    assert main(["--dataset", str(dataset), "--horizon", "3", "--strategy", "greedy", *common,
                 "predict.max_users=8", "predict.ks=[1,5]", "predict.scoring=trie", "predict.beam_size=2",
                 "predict.allow_history=true"]) == 0
    result = json.loads((horizon / "metrics.json").read_text())
    assert result["horizon"] == 3 and len(result["by_position"]["model"]["5"]) == 3
    assert result["scoring"] == "trie"
    recs = pd.read_parquet(horizon / "recommendations.parquet")
    assert (recs.groupby("user_id")["item_id"].nunique() == 5).all()  # beam widened to k: full lists, no repeat
    assert (horizon / "plots" / "by_position.png").is_file()


def test_cli_bad_input(capsys, exported_model):
    assert main(["--dataset", "no-such-dataset", f"predict.model_dir={exported_model}"]) == 2
    err = capsys.readouterr().err
    assert "unknown dataset 'no-such-dataset'" in err and "steam" in err and "amazon_games" in err
    assert main(["--cold", "--horizon", "5", "--dataset", "steam"]) == 2
    assert "different protocols" in capsys.readouterr().err
    assert main(["--horizon", "0", "--dataset", "steam"]) == 2
    assert "predict.horizon: must be >= 1" in capsys.readouterr().err


def test_flags_and_overrides_in_any_order():
    from recgpt.predict.cli import parse

    cfg = parse(["predict.max_users=7", "--dataset", "steam", "predict.ks=[1,2]", "--horizon", "4", "--strategy", "ra"])
    p = cfg.predict
    assert (p.dataset, p.protocol, p.horizon, p.strategy, p.max_users, p.ks) == ("steam", "horizon", 4, "ra", 7, [1, 2])
    assert parse(["--cold", "--dataset", "x", "predict.protocol=loo"]).predict.protocol == "loo"  # explicit key wins


def test_launch_script_lists_known_datasets():
    proc = subprocess.run([sys.executable, str(REPO / "launch" / "predict.py"), "--dataset", "nope"],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 2 and "known:" in proc.stderr and "steam" in proc.stderr


def test_cli_missing_model_is_named(capsys, prepared_dir, tmp_path):
    assert main(["--dataset", str(prepared_dir("ml-100k")), f"predict.model_dir={tmp_path / 'nothing'}"]) == 2
    assert f"no model at {tmp_path / 'nothing'}" in capsys.readouterr().err


def test_the_recorded_tokenizer_hash_is_checked(exported_model, tmp_path):
    import shutil

    from recgpt.io import write_json
    from recgpt.tokenizer.base import tokenizer_hash

    best = tmp_path / "best"
    shutil.copytree(exported_model, best)
    write_json(best / "source.json", {"tokenizer_hash": tokenizer_hash(best / "tokenizer", best / "codes.safetensors")})
    assert Recommender.from_pretrained(best).catalog.n_items > 0
    write_json(best / "source.json", {"tokenizer_hash": "0" * 64})
    with pytest.raises(ValueError, match="tokenizer mismatch.*trained with tokenizer hash 0000"):
        Recommender.from_pretrained(best)


@pytest.mark.slow
def test_a_tiny_pretrained_run_end_to_end(tiny_run, tiny_train_cfg, prepared_dir, embed_config, tmp_path_factory):
    """The real pipeline's artifacts: a pretrained tiny run, its checkpoint selection export, then predict."""
    import shutil

    from recgpt.evaluate import select_checkpoints

    run = tmp_path_factory.mktemp("pretrained") / "tiny"
    shutil.copytree(tiny_run, run)
    select_checkpoints(tiny_train_cfg(output_root=run.parent), run)
    dataset = prepared_dir("ml-100k")
    assert main(["--dataset", str(dataset), f"predict.model_dir={run}", f"embed.cache_dir={embed_config.cache_dir}",
                 "predict.max_users=80", "predict.ks=[1,10]"]) == 0
    result = json.loads((run / "predict" / "ml-100k-loo" / "metrics.json").read_text())
    assert result["counts"]["evaluated"] == 80 and result["model_dir"] == str(run / "best")
    # on this trained model too, a beam as wide as the catalog finds the exhaustive top 10
    rec = Recommender.from_pretrained(run, embed_cfg=embed_config)
    catalog = rec.set_catalog_from_prepared(dataset)
    histories = [[catalog.item_ids[r] for r in range(i, i + 12)] for i in range(0, 40, 8)]
    exact = rec.recommend(histories, k=10)
    wide = Recommender(rec.model, catalog=catalog, scoring="trie", beam_size=catalog.n_items).recommend(histories, k=10)
    assert wide.item_ids == exact.item_ids
    assert torch.allclose(torch.tensor(wide.scores), torch.tensor(exact.scores), atol=1e-4)
