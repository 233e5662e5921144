"""bench/balance.py: its table on real ml-100k (MiniLM titles) against recgpt's own content kNN, and the rule
that sets the popularity weight from a catalog statistic, on planted balances."""
import math

import numpy as np
import pytest

from bench import balance

pytestmark = pytest.mark.usefixtures("one_thread")


def test_table_at_zero_weight_is_content_knn_and_popularity_helps_on_ml100k(prepared_dir, real_embeddings,
                                                                           tokenizer_cache_dir):
    from recgpt.predict.baselines import content_knn
    from recgpt.predict.metrics import ranking_metrics
    from recgpt.predict.protocols import build_test_cases
    from recgpt.predict.transfer import ItemRows, read_interactions

    folder = prepared_dir("ml-100k")
    result = balance.domain_table(folder, str(tokenizer_cache_dir), 300)
    catalog = ItemRows(real_embeddings.item_ids)
    cases = build_test_cases(read_interactions(folder), catalog, "loo", 1, 0, 300)
    vectors = np.asarray(real_embeddings.vectors, dtype=np.float32)
    lists = content_knn(cases.histories, vectors - vectors.mean(0), 10, allow_history=False)  # centered
    knn = ranking_metrics(lists, cases.targets, [10])["NDCG@10"]
    assert result["users"] == len(cases) == 300
    assert np.mean(result["table"]["raw"]["0.0"]) == pytest.approx(knn, abs=1e-4)
    assert np.mean(result["table"]["catalog"]["0.0"]) == pytest.approx(knn, abs=1e-4)
    # movies follow popularity: some weight on it beats content alone by a wide margin (2.5x measured)
    assert max(np.mean(v) for v in result["table"]["raw"].values()) > 1.5 * knn
    assert 0 < result["stats"]["concentration"] < 1 and abs(result["stats"]["coherence"]) < 1
    # the own-history tables: content alone (w = 1) ranks as content kNN; without a prior (s = 0) each user's
    # choice is the w with the highest own-item gain
    own = result["own"]["loo"]
    assert np.mean(np.asarray(own["ndcg"])[:, -1]) == pytest.approx(knn, abs=1e-4)
    assert sum(g is not None for g in own["own"]) > 0.9 * len(cases)
    points = balance.self_points(own["own"], np.ones(len(balance.WEIGHTS)), 0.0)
    assert all(g is None or g[p] == max(g) for g, p in zip(own["own"], points))
    assert len(result["own"]["cold"]["ndcg"]) == 300
    # the log prior: the log's own-item gains per w, from its sequences before the targets (never a target)
    for protocol in ("loo", "cold"):
        log = np.asarray(result["own"][protocol]["log"])
        curve = np.asarray(result["own"][protocol]["ndcg"]).mean(0)
        assert log.shape == (len(balance.WEIGHTS),) and ((0 < log) & (log <= 1)).all()
        assert curve[int(np.argmax(log))] > 0.8 * curve.max()  # the log's balance is near the targets' best


def planted(stat: float) -> dict:
    """A domain whose best popularity weight grows with its statistic: NDCG falls with the log distance to it."""
    best = math.exp(math.log(0.01) + 2.0 * stat)
    means = {str(a): 0.1 * math.exp(-abs(math.log(a + 1e-3) - math.log(best + 1e-3))) for a in balance.GRID}
    return {"stats": {"concentration": stat, "coherence": 0.0}, "means": {"raw": means}}


def test_the_rule_recovers_a_planted_balance_that_no_fixed_weight_fits():
    results = {f"d{i}": planted(s) for i, s in enumerate(np.linspace(0.0, 2.5, 8))}
    held, others = "d3", [d for d in results if d != "d3"]
    params = balance.rule(results, "raw", "concentration", others)
    by_rule = results[held]["means"]["raw"][balance.apply_rule(params, results[held]["stats"]["concentration"])]
    fixed = results[held]["means"]["raw"][balance.best_fixed(results, "raw", others)]
    best = balance.oracle(results[held], "raw")[1]
    assert by_rule > 0.9 * best and fixed < 0.6 * best
    # a statistic that says nothing (coherence is the same everywhere) gives the fixed weight back
    flat = balance.rule(results, "raw", "coherence", others)
    assert balance.apply_rule(flat, 0.0) == balance.best_fixed(results, "raw", others)


def planted_own(seed: int, informative: bool, users: int = 200) -> dict:
    """Each user likes one w (NDCG 1 there, 0 elsewhere), most users the same one; the own item says which
    (informative) or nothing (a random gain per w)."""
    rng = np.random.default_rng(seed)
    n = len(balance.WEIGHTS)
    liked = np.where(rng.random(users) < 0.6, 3, rng.integers(0, n, users))
    ndcg = np.eye(n)[liked]
    own = (np.eye(n)[liked] * 0.9 + 0.05) if informative else rng.random((users, n))
    log = (np.eye(n)[rng.choice(liked, users)] * 0.9 + 0.05) if informative else rng.random((users, n))
    return {p: {"ndcg": ndcg.tolist(), "own": own.tolist(), "log": log.mean(0).tolist()} for p in ("loo", "cold")}


@pytest.mark.parametrize("informative", [True, False])
def test_strength_is_chosen_on_the_sources_by_what_the_own_item_says(informative):
    from types import SimpleNamespace

    results = {f"d{i}": {"own": planted_own(i, informative)} for i in range(5)}
    results["t"] = {"own": planted_own(9, informative)}
    plan = SimpleNamespace(targets=("t",), fit_domains={"t": ["d0"]})
    text, (kind, strength) = balance.self_report(results, plan)
    row = next(line for line in text.splitlines() if line.startswith("| t (target) | loo |")).split("|")
    fixed, own = float(row[4].split(":")[1]), float(row[5 if kind == "fit" else 6])
    if informative:  # the own item finds every user's w: far above the best single w, which the prior gives
        assert strength < max(balance.STRENGTHS) and fixed == pytest.approx(1.0) and own > 1.3
        assert float(row[7].split()[0]) > 1.3
    else:  # noise: a prior of the fit strong enough to outweigh the own item is chosen (the log's says nothing)
        assert kind == "fit" and strength >= 1.0 and 0.9 * fixed < own <= fixed
