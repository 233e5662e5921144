"""Metrics and baselines against hand-computed cases."""
import math

import pytest

from recgpt.predict import baselines
from recgpt.predict.metrics import coverage, position_hit_rates, ranking_metrics

L3 = math.log2(3)


def test_single_target_by_hand():
    m = ranking_metrics([[3, 1, 2, 5]], [[1]], [1, 3])
    assert m["HR@1"] == 0 and m["Recall@1"] == 0 and m["NDCG@1"] == 0 and m["MRR@1"] == 0
    assert m["HR@3"] == 1 and m["Recall@3"] == 1
    assert m["NDCG@3"] == pytest.approx(1 / L3)
    assert m["MRR@3"] == pytest.approx(0.5)


def test_target_set_by_hand():
    recs, targets = [[1, 9, 2, 8]], [[2, 1, 7]]
    m = ranking_metrics(recs, targets, [1, 2, 4])
    assert (m["HR@1"], m["Recall@1"], m["NDCG@1"], m["MRR@1"]) == (1, pytest.approx(1 / 3), 1, 1)
    assert m["Recall@2"] == pytest.approx(1 / 3)
    assert m["NDCG@2"] == pytest.approx(1 / (1 + 1 / L3))
    assert m["Recall@4"] == pytest.approx(2 / 3)
    assert m["NDCG@4"] == pytest.approx((1 + 0.5) / (1 + 1 / L3 + 0.5))


def test_mean_over_users_short_lists_and_repeated_targets():
    # user 2's list is shorter than K (and padded with -1); user 3's target set repeats an item: it counts once
    recs = [[4, 5], [7, -1, -1], [6, 2, 3]]
    targets = [[5], [8], [3, 3, 9]]
    m = ranking_metrics(recs, targets, [3])
    assert m["HR@3"] == pytest.approx(2 / 3)
    assert m["MRR@3"] == pytest.approx((0.5 + 0 + 1 / 3) / 3)
    assert m["Recall@3"] == pytest.approx((1 + 0 + 0.5) / 3)
    assert m["NDCG@3"] == pytest.approx((1 / L3 + 0 + 0.5 / (1 + 1 / L3)) / 3)


def test_metrics_bad_input():
    with pytest.raises(ValueError, match="2 recommendation lists but 1"):
        ranking_metrics([[1], [2]], [[1]], [1])
    with pytest.raises(ValueError, match="user 0 has no target"):
        ranking_metrics([[1]], [[]], [1])


def test_position_hit_rates_and_coverage_by_hand():
    rates = position_hit_rates([[1, 9, 2, 8], [2, 7]], [[2, 1, 7], [7, 2]], [2])
    assert rates[2] == [0.5, 1.0, 0.0]  # position 0: user 2's 7 is in its top 2, user 1's 2 is not
    assert coverage([[0, 1], [1, 2]], 10, [1, 2]) == {"Coverage@1": 0.2, "Coverage@2": 0.3}


def test_recency_is_most_recent_distinct_first():
    assert baselines.recency([[5, 3, 5, 7, 3], [1]], 3) == [[3, 7, 5], [1]]


def test_popularity_counts_histories_only():
    histories = [[1, 2, 2], [2, 3]]
    assert baselines.item_popularity(histories) == [2, 1, 3]
    assert baselines.popularity(histories, 2) == [[2, 1], [2, 1]]
    assert baselines.popularity(histories, 2, allow_history=False) == [[3], [1]]


def test_content_knn_by_hand():
    import torch

    # unit vectors e0=(1,0), e1=(0,1), e2=(1,1)/sqrt2, e3=(1,-1)/sqrt2; e0 stored 5x longer (cosine ignores it)
    emb = torch.tensor([[5.0, 0.0], [0.0, 1.0], [1.0, 1.0], [1.0, -1.0]])
    # history [3, 0, 1], last 2 items: user = (1 * e1 + 0.7 * e0) / 1.7 (item 3 is outside the window)
    user = torch.tensor([0.7, 1.0]) / 1.7
    assert torch.allclose(baselines.user_vectors([[3, 0, 1]], emb, last=2, decay=0.7)[0], user)
    cos = [0.7 / 1.2207, 1 / 1.2207, 1.7 / (2 ** 0.5 * 1.2207), -0.3 / (2 ** 0.5 * 1.2207)]
    scores = baselines.content_knn_scores([[3, 0, 1]], emb, last=2, decay=0.7)[0]
    assert scores.tolist() == pytest.approx(cos, abs=1e-4)
    assert baselines.content_knn([[3, 0, 1]], emb, 4, last=2) == [[2, 1, 0, 3]]
    # history excluded: only item 2 is left (0, 1 and 3 are the user's own)
    assert baselines.content_knn([[3, 0, 1]], emb, 4, allow_history=False, last=2) == [[2]]
    # the whole history (default last 5): u = e1 + 0.7 e0 + 0.49 e3 ~ (1.0465, 0.6535), so e0 now ranks above e1
    # (cosines 0.974, 0.848, 0.530, 0.225 for items 2, 0, 1, 3)
    assert baselines.content_knn([[3, 0, 1]], emb, 4) == [[2, 0, 1, 3]]
    assert baselines.baseline_lists("content_knn", [[1]], 1, item_emb=emb) == [[1]]
    with pytest.raises(ValueError, match="content_knn needs the catalog's item text embeddings"):
        baselines.baseline_lists("content_knn", [[1]], 1)


def test_sampled_negatives_by_hand():
    import numpy as np

    from recgpt.predict.metrics import sampled_negative_metrics

    scores = np.tile(np.arange(200, dtype=float), (3, 1))  # item i scores i
    histories, targets = [[199, 198], [5], []], [[197], [0], [150]]
    m = sampled_negative_metrics(scores, histories, targets, 100, [1, 10], seed=0)
    # sums over the cases: case 0 ranks first (every negative < 197), case 1 last, case 2 ~25th of 101
    assert m["HR@1"] == 1 and m["NDCG@1"] == 1
    assert m["HR@10"] == 1 and m["NDCG@10"] == pytest.approx(1.0)
    again = sampled_negative_metrics(scores, histories, targets, 100, [10], seed=0)
    assert again["HR@10"] == m["HR@10"]  # the same draws per (seed, case)
    ties = sampled_negative_metrics(np.zeros((1, 50)), [[]], [[3]], 10, [1, 10])
    assert ties["HR@10"] == 0  # a tie counts against the target
    assert sampled_negative_metrics(scores[:1], [list(range(190))], [[195]], 100, [10])["HR@10"] == 1
    with pytest.raises(ValueError, match="one target"):
        sampled_negative_metrics(scores[:1], [[]], [[1, 2]], 10, [10])
