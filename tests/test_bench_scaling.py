"""bench/scaling.py end to end at a tiny budget on the bundled sample, and its resumption.

The run is real (prepare, corpus, embed, tokenizer, pretraining, selection and score fit on the fit domain,
zero-shot scoring) except the text encoder: a fixed vector per text (from its hash) stands in for MiniLM, whose
CPU pass over the sample's long Amazon descriptions alone takes minutes. Its cache is the test's own.
"""
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest

from bench import scaling
from bench.scaling_report import tables

PLAN = {"domains": ["sample_ml-100k", "sample_amazon_scientific", "sample_steam"],
        "fit_domains": {"sample_steam": ["sample_amazon_scientific"]}, "near": {}, "related_kept": {},
        "shared_order": ["sample_ml-100k"], "sizes": [1]}


def table_of(path: Path) -> str:
    """A report file without the time it was written (bench/report.py's header): what a resumed run must repeat."""
    return re.sub(r"^written: .*$", "", path.read_text(), flags=re.M)


def hashed_vectors(encoder, texts, batch_size):
    seeds = [int(hashlib.sha256(t.encode()).hexdigest()[:8], 16) for t in texts]
    vectors = np.stack([np.random.default_rng(s).standard_normal(64) for s in seeds]).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@pytest.mark.slow
def test_resumed_scaling_bench_gives_the_same_table(tmp_path, monkeypatch):
    from recgpt.tokenizer import embed

    monkeypatch.setattr(embed, "load_encoder", lambda *args: None)
    monkeypatch.setattr(embed, "encode", hashed_vectors)
    (tmp_path / "plan.json").write_text(json.dumps(PLAN))
    out = tmp_path / "out"
    argv = ["--plan", str(tmp_path / "plan.json"), "--out", str(out), "--steps", "6", "--max-users", "150",
            "--fit-users", "100", "--report", str(tmp_path / "scaling.md"), "--png", str(tmp_path / "scaling.png"),
            "data.raw_root=data/sample", "train.eval_every=3", "train.save_every=3", "tokenizer.epochs=2",
            "eval.zero_shot_users=100", f"embed.cache_dir={tmp_path / 'cache'}"]
    assert scaling.main(argv) == 0
    first = table_of(tmp_path / "scaling.md")
    assert re.search(r"^command: `python bench/scaling.py --", first, re.M)  # bench/report.py's header
    assert re.search(r"^commit: [0-9a-f]{40}", first, re.M)
    result = out / "results" / "default" / "mix01" / "sample_steam.json"
    record = json.loads(result.read_text())
    assert record["best"] in ("step-00000003", "step-00000006")
    assert record["fit_domains"] == ["sample_amazon_scientific"]
    assert "sample_steam" not in record["datasets"] and "sample_amazon_scientific" not in record["datasets"]
    assert "| sample_steam | loo | mix01 | default |" in first and (tmp_path / "scaling.png").stat().st_size > 0
    manifest = json.loads((out / "mixes" / "mix01" / "mix.json").read_text())
    assert manifest["datasets"] == ["sample_ml-100k"] and manifest["interactions"] == record["interactions"] > 0

    stats = out / "mixes" / "mix01" / "ckpt" / "default" / "pretrain_stats.json"
    made = stats.stat().st_mtime_ns
    assert scaling.main(argv) == 0  # everything cached: nothing runs again
    assert table_of(tmp_path / "scaling.md") == first and stats.stat().st_mtime_ns == made
    result.unlink()  # stopped after the pretraining: selection, fit and scoring run again
    assert scaling.main(argv) == 0
    assert table_of(tmp_path / "scaling.md") == first and stats.stat().st_mtime_ns == made
    assert json.loads(result.read_text())["tables"] == record["tables"]

    with pytest.raises(SystemExit, match="other settings"):  # a cached result is never mixed with other settings
        scaling.main([*argv, "--max-users", "100"])

    # the weights best on the target's own users (a diagnostic): read from the results, nothing trained or rescored
    assert scaling.main([*argv, "--fit-bound"]) == 0
    assert table_of(tmp_path / "scaling.md") == first and json.loads(result.read_text()) == record
    bound = (tmp_path / "scaling_fit_bound.md").read_text()
    assert "| sample_steam | cold | mix01 |" in bound
    cells = next(line for line in bound.splitlines() if line.startswith("| sample_steam | loo | mix01 |")).split("|")
    model, priors = float(cells[5].split()[0]), float(cells[6].split()[0])
    methods = record["results"]["loo"]["methods"]  # the fitted rows (grid points too; ties may rank otherwise)
    assert model >= priors and model >= methods["model"]["NDCG@10"] - 0.01 and priors >= methods["priors"]["NDCG@10"] - 0.01
    assert float(cells[7]) == pytest.approx(model / priors, abs=1e-3)

    # per-user weights chosen on each user's own history (a diagnostic beside the fitted rows, nothing trained)
    assert scaling.main([*argv, "--self-weights"]) == 0
    assert table_of(tmp_path / "scaling.md") == first and json.loads(result.read_text()) == record
    rows = (tmp_path / "scaling_self_weights.md").read_text()
    assert "| sample_steam | cold | mix01 | log |" in rows and "| sample_steam | cold | mix01 | fit |" in rows
    for prior in ("log", "fit"):  # the prior from the target's log (as shipped), or from the fit domain
        cells = next(line for line in rows.splitlines()
                     if line.startswith(f"| sample_steam | loo | mix01 | {prior} |")).split("|")
        assert float(cells[5]) == pytest.approx(methods["priors"]["NDCG@10"], abs=0.01)  # the fitted rows: the tables'
        assert float(cells[6]) == pytest.approx(methods["model"]["NDCG@10"], abs=0.01)
        assert float(cells[9].split()[0]) == pytest.approx(float(cells[8]) / float(cells[5]), abs=1e-3)

    # a variant with a code head beside the dense one: its LIGER rows (every item of the target is unseen)
    codes = ["--name", "codes", "--fit", "code,dense,knn,pop", *argv,
             "model.codes={head: parallel, embedding: fsq_grid, output: full}"]
    assert scaling.main(codes) == 0
    report = table_of(tmp_path / "scaling.md")
    assert "## The generative path" in report and "| sample_steam | loo | mix01 | codes |" in report
    raw = json.loads((out / "results" / "codes" / "mix01" / "sample_steam.json").read_text())["results"]["loo"]
    per_user = raw["ndcg_per_user"]
    assert {"model[code]", "model[beam]", "model[liger]"} <= set(per_user)
    assert len(per_user["model[liger]"]) == len(per_user["model[beam]"]) == len(raw["user_ids"])

    # another score fit on the default variant's pretraining: linked, never trained again
    assert scaling.main(["--name", "src", "--pretrained-variant", "default", "--fit-users", "60", *argv]) == 0
    run = out / "mixes" / "mix01" / "ckpt" / "src"
    assert stats.stat().st_mtime_ns == made and (run / "step-00000006").is_symlink()
    assert json.loads((run / "pretrain_stats.json").read_text()) == json.loads(stats.read_text())
    src = json.loads((out / "results" / "src" / "mix01" / "sample_steam.json").read_text())
    assert src["settings"]["pretrained_variant"] == "default" and src["best"] == record["best"]
    with pytest.raises(SystemExit, match="no finished pretraining"):
        scaling.main(["--name", "other", "--pretrained-variant", "missing", *argv])
    with pytest.raises(SystemExit):  # a mix or target the plan does not have: one line, nothing run
        scaling.main(["--name", "unknown", "--mixes", "mix01,mix99", *argv])
    assert not (out / "mixes" / "mix99").exists() and not (out / "results" / "unknown").exists()

    # the in-domain reference (--in-domain): lists that hold each user's last item first, scored on the same users
    import pandas as pd

    inter = pd.read_parquet(out / "prepared" / "sample_steam" / "interactions.parquet")
    last = inter.sort_values(["user_id", "position"], kind="stable").groupby("user_id")["item_id"].last()
    lists = out / "in_domain" / "sample_steam-loo" / "sasrec"
    lists.mkdir(parents=True)
    pd.DataFrame({"user_id": last.index.astype(str), "item_id": last.to_numpy().astype(str), "rank": 1}).to_parquet(
        lists / "recommendations.parquet")
    assert scaling.main(["--name", "near", "--pretrained-variant", "default", "--in-domain", str(out / "in_domain"),
                         *argv]) == 0
    report = table_of(tmp_path / "scaling.md")
    assert "## How far from in-domain training" in report
    row = next(line for line in report.splitlines() if line.startswith("| sample_steam | mix01 | near |"))
    assert float(row.split("|")[4]) > 0.5  # the last item first: most users hit at rank 1
    assert scaling.main(["--name", "near", "--self-weights", "--in-domain", str(out / "in_domain"), *argv]) == 0
    far = (tmp_path / "scaling_self_weights.md").read_text().split("How far from SASRec+")[1]
    row = next(line for line in far.splitlines() if line.startswith("| sample_steam | mix01 | log |")).split("|")
    assert float(row[5]) > 0.5 and float(row[6].split()[0]) < 0.5  # those lists hold the target first


def test_self_curve_pairs_the_users_of_the_smallest_and_the_largest_mix():
    small = {f"u{i}": 0.1 for i in range(40)}
    large = {**{f"u{i}": 0.2 for i in range(40)}, "u99": 1.0}  # u99: scored on one mix only, left out
    by_mix = {("t", "loo", "log"): [(300, "mix03", {"u0": 5.0}), (100, "mix01", small), (900, "mix09", large)],
              ("t", "cold", "log"): [(100, "mix01", small)]}
    lines = scaling.self_curve(by_mix)
    rows = [line for line in lines if line.startswith("| t |")]
    assert rows == ["| t | loo | log | mix01 | mix09 | 2.000 [2.000, 2.000] | 40 |"]
    assert scaling.self_curve({("t", "loo", "log"): [(100, "mix01", small)]}) == []


def test_curve_table_pairs_users_of_the_two_mixes():
    """largest / smallest on the users both scored: the same per-user values give 1.0 whatever their order."""
    values = np.random.default_rng(0).random(50)
    ids = [f"u{i}" for i in range(50)]

    def record(mix, interactions, order):
        per_user = {"model": values[order].tolist(), "priors": values[order].tolist(),
                    "content_knn": values[order].tolist(), "model[dense]": values[order].tolist()}
        protocol = {"user_ids": [ids[i] for i in order], "ndcg_per_user": per_user}
        return {"mix": mix, "target": "t", "variant": "v", "interactions": interactions, "datasets": [mix],
                "best": "step-1", "fit_domains": ["f"], "tables": {}, "results": {"loo": protocol, "cold": protocol},
                "pretrain": {"max_steps": 1, "tokens_seen": 1, "seconds": 1.0, "tokens_per_s": 1.0}}

    text = tables([record("big", 100, np.arange(50)[::-1]), record("small", 10, np.arange(50))])
    assert "| t | loo | v | model | small | big | 1.000 [1.000, 1.000] | 50 |" in text
    assert "| t | cold | v | model[dense] | small | big | 1.000 [1.000, 1.000] | 50 |" in text
    one_mix = tables([record("big", 100, np.arange(50))])  # one mix per target: said, not an empty table
    assert "No target has two mixes" in one_mix and "| smallest | largest |" not in one_mix
