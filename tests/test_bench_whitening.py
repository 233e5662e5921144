"""bench/whitening.py: the per-catalog ZCA forms on real ml-100k (MiniLM titles), its centered row against recgpt's
own content kNN, the log's gains, and the report's label-free choices."""
import numpy as np
import pytest

from bench import whitening

pytestmark = pytest.mark.usefixtures("one_thread")


def test_forms_whiten_the_catalog_and_keep_the_centered_rows(real_embeddings):
    x = np.asarray(real_embeddings.vectors, np.float64)
    x -= x.mean(0)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    forms = whitening.whitened(x)
    assert set(forms) == {whitening.CENTERED, *(f"eps {e:g}" for e in whitening.EPS)}
    assert np.allclose(forms[whitening.CENTERED], x, atol=1e-6)

    def spread(v):  # largest / median eigenvalue of the rows' covariance: 1 for isotropic rows
        values = np.linalg.eigvalsh(np.cov(np.asarray(v, np.float64), rowvar=False))
        return values[-1] / np.median(values)

    spreads = [spread(forms[f"eps {e:g}"]) for e in whitening.EPS]
    assert spread(x) > 10 * spreads[0]  # MiniLM titles are far from isotropic; the smallest eps nearly whitens
    assert all(a <= b * 1.01 for a, b in zip(spreads, spreads[1:]))  # the larger eps, the less whitened


def test_domain_result_on_ml100k_matches_content_knn_and_reads_the_log(prepared_dir, real_embeddings,
                                                                      tokenizer_cache_dir):
    from recgpt.predict.baselines import content_knn
    from recgpt.predict.metrics import ranking_metrics
    from recgpt.predict.protocols import build_test_cases
    from recgpt.predict.transfer import ItemRows, read_interactions

    folder = prepared_dir("ml-100k")
    result = whitening.domain_result(folder, str(tokenizer_cache_dir), 200, ("loo",))["loo"]
    cases = build_test_cases(read_interactions(folder), ItemRows(real_embeddings.item_ids), "loo", 1, 0, 200)
    vectors = np.asarray(real_embeddings.vectors, dtype=np.float32)
    lists = content_knn(cases.histories, vectors - vectors.mean(0), 10, allow_history=False)
    assert result["users"] == len(cases) == 200
    assert np.mean(result["ndcg"][whitening.CENTERED]) == pytest.approx(
        ranking_metrics(lists, cases.targets, [10])["NDCG@10"], abs=1e-4)
    assert result["log_rows"] > 500  # up to 2,000 of the log's sequences before the targets
    assert all(0 < g <= 1 for g in result["log_gain"].values())
    assert len(set(result["log_gain"].values())) > 1  # the forms rank the log differently


def test_report_chooses_on_sources_and_on_each_log_never_on_targets():
    users = 50
    rng = np.random.default_rng(0)

    def domain(best: str, log_best: str) -> dict:
        forms = [whitening.CENTERED, *(f"eps {e:g}" for e in whitening.EPS)]
        ndcg = {f: (rng.random(users) * (2.0 if f == best else 1.0)).tolist() for f in forms}
        gain = {f: 0.2 if f == log_best else 0.1 for f in forms}
        return {"loo": {"users": users, "ndcg": ndcg, "log_gain": gain, "log_rows": 10}}

    results = {"s1": domain("eps 1", "eps 1"), "s2": domain("eps 1", whitening.CENTERED),
               "t": domain("eps 0.03", "eps 10")}  # the target's own best is never what the sources choose
    text = whitening.report(results, ("t",), users)
    assert "chosen: **eps 1**" in text
    target_row = next(line for line in text.splitlines() if line.startswith("| t (target)"))
    assert "| eps 0.03: " in target_row and "| eps 10 |" in target_row  # oracle shown; the log's own choice used
    s2_row = next(line for line in text.splitlines() if line.startswith("| s2 "))
    assert "| centered | 1.000 [1.000, 1.000] |" in s2_row


def test_refuses_a_missing_domain_and_targets_alone_writing_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RECGPT_BENCH_DOCS", str(tmp_path / "docs"))
    out = tmp_path / "out"
    for target in ("steam", "yelp"):  # present, so that what is refused is asking for targets alone
        (tmp_path / "prepared" / target).mkdir(parents=True)
        (tmp_path / "prepared" / target / "interactions.parquet").touch()
    for domains, says in (("nope,ml-100k", "nope"), ("steam,yelp", "only held-out targets")):
        with pytest.raises(SystemExit) as exit_:
            whitening.main(["--prepared", str(tmp_path / "prepared"), "--domains", domains, "--out", str(out)])
        assert exit_.value.code == 2 and says in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "docs").exists()
