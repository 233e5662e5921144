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
