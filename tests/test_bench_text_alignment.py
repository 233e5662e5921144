"""bench/text_alignment.py end to end on real data: MiniLM vectors of three shared domains, an adapter trained on
the one source domain, the epoch chosen on the fit domain, both targets scored. The domains are the three with the
shortest item texts (lastfm artists, MovieLens titles), so that embedding them stays a small part of the run."""
import json

import pytest

from bench import text_alignment

PLAN = {"domains": ["ml-100k", "ml-1m", "lastfm"], "fit_domains": {"ml-100k": ["ml-1m"], "ml-1m": ["ml-100k"]},
        "near": {}, "related_kept": {}, "shared_order": ["lastfm"], "sizes": [1]}


@pytest.mark.slow
def test_adapter_is_chosen_on_fit_domains_and_never_trained_on_a_target(prepared_dir, embed_config, tmp_path):
    from recgpt.tokenizer.align import TextAdapter

    prepared = tmp_path / "prepared"
    for name in PLAN["domains"]:
        (prepared / name).mkdir(parents=True)
        for table in ("interactions.parquet", "items.parquet"):
            (prepared / name / table).symlink_to(prepared_dir(name) / table)
    (tmp_path / "plan.json").write_text(json.dumps(PLAN))
    out, report = tmp_path / "out", tmp_path / "report.md"
    assert text_alignment.main(["--plan", str(tmp_path / "plan.json"), "--prepared", str(prepared), "--out", str(out),
                                "--report", str(report), "--epochs", "2", "--hidden", "64", "--max-users", "300",
                                "--embed-cache", embed_config.cache_dir]) == 0

    trained = json.loads((out / "default" / "mix01" / "train.json").read_text())
    assert trained["datasets"] == ["lastfm"] and trained["pairs"]["lastfm"] > 1000
    assert [e["epoch"] for e in trained["epochs"]] == [0, 1, 2]
    assert trained["epochs"][-1]["loss"] < trained["epochs"][0]["loss"]
    text = report.read_text()
    for target, fit in (("ml-100k", "ml-1m"), ("ml-1m", "ml-100k")):
        scores = [e["fit_ndcg"][fit] for e in trained["epochs"]]
        folder = out / "default" / "mix01" / f"for-{target}"
        meta = json.loads((folder / "adapter.json").read_text())
        assert meta["epoch"] == scores.index(max(scores)) and meta["chosen_on"] == [fit]
        assert target not in meta["trained_on"]
        assert meta["center"] and TextAdapter.load(folder).center  # learned over, and centers, each catalog
        for protocol in ("loo", "cold"):
            assert f"| {target} | {protocol} | 300 | {meta['epoch']} ({fit}) |" in text

    with pytest.raises(SystemExit):  # a plan naming an unknown key is refused before anything runs
        (tmp_path / "bad.json").write_text(json.dumps({**PLAN, "target": "x"}))
        text_alignment.main(["--plan", str(tmp_path / "bad.json"), "--out", str(tmp_path / "bad")])
    with pytest.raises(SystemExit):  # so is a target the plan does not have
        text_alignment.main(["--plan", str(tmp_path / "plan.json"), "--targets", "lastfm", "--out", str(tmp_path / "bad")])
    assert not (tmp_path / "bad").exists()
