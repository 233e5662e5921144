"""bench/rerank.py on real data: a scaling-shaped folder (ml-100k scored by a real export, a re-ranker trained on
it with lastfm as the fit domain): the table holds each protocol's rows from recgpt predict's own reports, ml-100k's
fine-tuning row starts from that re-ranker, a rerun resumes without training or predicting again, the moonshot
row pairs the re-ranker's lists with in-domain lists on the users those cover, and with no mix named the fine-tuning
table stands alone; the curve's re-rankers train with --rerank-set's keys and pair with another run's on the same
users only, and a mix between mix01 and the largest joins the curve (its own column, paired with mix01, plotted)."""
import json
import os

import pytest

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_bench_tables_recgpt_predict_reports_and_resumes(prepared_dir, exported_model, embed_config, tmp_path,
                                                               monkeypatch):
    from bench import rerank
    from recgpt.data.mixes import Mix

    scaling = tmp_path / "scaling"
    (scaling / "prepared").mkdir(parents=True)
    for name in ("ml-100k", "lastfm"):
        os.symlink(prepared_dir(name), scaling / "prepared" / name)
    mix = scaling / "mixes" / "mixA"
    (mix / "targets" / "ml-100k" / "ckpt").mkdir(parents=True)
    os.symlink(exported_model.parent, mix / "targets" / "ml-100k" / "ckpt" / "run")
    monkeypatch.setattr("recgpt.data.mixes.plan_mixes", lambda plan: [Mix("mixA", ("ml-100k", "lastfm"), ("ml-100k",))])
    monkeypatch.setattr(rerank, "MIXES", {"a": ("mixA", "lastfm")})
    monkeypatch.setattr(rerank, "FOUNDATIONS", {"ml-100k": "a"})
    monkeypatch.setattr(rerank, "VALID_USERS", {"ml-100k": 100})
    args = ["--scaling", str(scaling), "--run", "run", "--embed-cache", str(embed_config.cache_dir), "--steps", "2",
            "--users", "100", "--out", str(tmp_path / "out"), "--report", str(tmp_path / "table.md"),
            "--finetune", "ml-100k", "--finetune-steps", "2", "--finetune-users", "150"]
    assert rerank.main(args) == 0
    table = (tmp_path / "table.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith(("| ml-100k | loo |", "| ml-100k | cold |"))]
    assert [r.split(" | ")[1] for r in rows] == ["loo", "cold"]
    config = json.loads((tmp_path / "out" / "a" / "config.json").read_text())
    assert config["sources"] == ["ml-100k"] and config["fit_domains"] == ["lastfm"]
    report = json.loads((tmp_path / "out" / "predict" / "ml-100k-loo" / "metrics.json").read_text())
    assert f"{report['methods']['model']['NDCG@10']:.4f}" in rows[0] and report["weights"]["mode"] == "reranker"
    tuned = [line.split(" | ") for line in table.splitlines() if line.startswith("| ml-100k | 150 |")]
    assert len(tuned) == 1 and len(tuned[0]) == 8
    ft = json.loads((tmp_path / "out" / "finetune" / "ml-100k-fine-tuned" / "config.json").read_text())
    scratch = json.loads((tmp_path / "out" / "finetune" / "ml-100k-scratch" / "config.json").read_text())
    assert ft["init_from"] == str(tmp_path / "out" / "a") and scratch["init_from"] is None
    assert ft["fit_domains"] == scratch["fit_domains"] == ["ml-100k, held-out users"]
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "out").rglob("*.json")}
    assert rerank.main(args) == 0  # resumes: nothing trained or predicted again, the same table
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "out").rglob("*.json")} == stamps
    assert [line for line in (tmp_path / "table.md").read_text().splitlines() if line.startswith("|")] == [
        line for line in table.splitlines() if line.startswith("|")]
    # the moonshot: in-domain lists (here the re-ranker's own, for every other user) paired on the users they cover
    import pandas as pd

    recs = pd.read_parquet(tmp_path / "out" / "predict" / "ml-100k-loo" / "recommendations.parquet")
    half = sorted(recs["user_id"].unique())[::2]
    given = tmp_path / "in_domain" / "ml-100k-loo" / "sasrec"
    given.mkdir(parents=True)
    recs[recs["user_id"].isin(half)].to_parquet(given / "recommendations.parquet")
    assert rerank.main([*args, "--in-domain", str(tmp_path / "in_domain")]) == 0
    moon = [line.split(" | ") for line in (tmp_path / "table.md").read_text().splitlines()
            if line.startswith("| ml-100k |") and len(line.split(" | ")) == 6]
    assert len(moon) == 1 and moon[0][1] == str(len(half)) and moon[0][2] == moon[0][3]
    assert moon[0][4] == "1.000 [1.000, 1.000]" and moon[0][5].endswith("] |")  # the fine-tuned one beside it
    # no mix named: the fine-tuning table alone, from the same foundation, nothing trained or scored again
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "out").rglob("*.json")}
    assert rerank.main([*args[:args.index("--finetune")], "--mixes", *args[args.index("--finetune"):]]) == 0
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "out").rglob("*.json")} == stamps
    text = (tmp_path / "table.md").read_text()
    assert "| ml-100k | loo |" not in text and [line.split(" | ") for line in text.splitlines()
                                                if line.startswith("| ml-100k | 150 |")] == tuned


def test_the_curve_trains_with_the_given_keys_and_pairs_with_another_run(prepared_dir, embed_config, tmp_path,
                                                                          monkeypatch):
    from bench import rerank
    from recgpt.data.mixes import Mix

    scaling = tmp_path / "scaling"
    (scaling / "prepared").mkdir(parents=True)
    for name in ("ml-100k", "lastfm"):
        os.symlink(prepared_dir(name), scaling / "prepared" / name)
    monkeypatch.setattr("recgpt.data.mixes.plan_mixes", lambda plan: [
        Mix("mix01", ("ml-100k",), ()), Mix("mix03", ("ml-100k", "lastfm"), ()),
        Mix("mix12-x", ("ml-100k", "lastfm"), ("ml-100k",))])
    monkeypatch.setattr(rerank, "MIXES", {"mix12": ("mix12-x", "lastfm")})
    monkeypatch.setattr(rerank, "FOUNDATIONS", {"ml-100k": "mix12"})
    base = ["--scaling", str(scaling), "--embed-cache", str(embed_config.cache_dir), "--steps", "2", "--mixes",
            "--curve-steps", "2", "--users", "100"]
    first, other = tmp_path / "first", tmp_path / "other"
    assert rerank.main([*base, "--out", str(first), "--report", str(tmp_path / "a.md"), "--rerank-set",
                        "rerank.hidden=16"]) == 0
    # the curve's largest is the table's re-ranker (the same command), both trained with the given key
    assert not (first / "curve" / "mix12-mix12").exists()
    assert [json.loads((f / "config.json").read_text())["hidden"] for f in
            (first / "mix12", first / "curve" / "mix12-mix01")] == [16, 16]
    assert rerank.main([*base, "--out", str(other), "--report", str(tmp_path / "b.md"), "--against", str(first)]) == 0
    assert json.loads((other / "mix12" / "config.json").read_text())["hidden"] == 64
    with pytest.raises(SystemExit, match="begun with --rerank-set rerank.hidden=16"):  # resumed without its keys
        rerank.main([*base, "--out", str(first), "--report", str(tmp_path / "a.md")])
    paired = [line.split(" | ") for line in (tmp_path / "b.md").read_text().splitlines()
              if line.startswith("| ml-100k |") and len(line.split(" | ")) == 8]
    assert [p[1] for p in paired] == ["loo", "cold"]
    for p in paired:  # largest and mix01 of this run against the first run's: the ratio of the two means
        for mine, theirs, ratio in ((p[2], p[3], p[4]), (p[5], p[6], p[7])):
            assert abs(float(ratio.split()[0]) - float(mine) / float(theirs)) < 0.01
    # a mix between on the curve: trained like mix01 (the fit domain never a source), paired against mix01, plotted
    assert rerank.main([*base, "--out", str(first), "--report", str(tmp_path / "a.md"), "--rerank-set",
                        "rerank.hidden=16", "--curve-mixes", "mix01", "mix03", "--curve-png",
                        str(tmp_path / "c.png")]) == 0
    assert json.loads((first / "curve" / "mix12-mix03" / "config.json").read_text())["sources"] == ["ml-100k"]
    text = (tmp_path / "a.md").read_text()
    assert "| target | protocol | base rule | mix01 | mix03 | largest |" in text
    assert "| mix03 / mix01 | largest / mix01 |" in text
    between = [line.split(" | ") for line in text.splitlines()
               if line.startswith("| ml-100k |") and len(line.split(" | ")) == 4]
    assert [b[1] for b in between] == ["loo", "cold"] and (tmp_path / "c.png").stat().st_size > 10_000
    for wrong in (["mix03"], ["mix01", "mix12-x"]):  # without the smallest, or the largest among them
        with pytest.raises(SystemExit, match="--curve-mixes"):
            rerank.main([*base, "--out", str(first), "--report", str(tmp_path / "a.md"), "--rerank-set",
                         "rerank.hidden=16", "--curve-mixes", *wrong])
    with pytest.raises(SystemExit, match="other users"):
        rerank.main([*base[:-1], "50", "--out", str(tmp_path / "few"), "--report", str(tmp_path / "c.md"),
                     "--against", str(first)])
