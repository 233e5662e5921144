"""Multi-step strategies on a hand-made next-item distribution (rankings computed by hand)."""
import pytest
import torch

from fixtures_predict import TableScorer
from recgpt.predict.horizon import recommend_lists, reciprocal_rank_scores

# row = the history's last item, column = the next item
TABLE = [[0.1, 0.5, 0.4, 0.0],
         [0.4, 0.0, 0.3, 0.3],
         [0.0, 0.1, 0.0, 0.9],
         [0.25, 0.25, 0.25, 0.25]]
COLD = 1e-4  # a temperature this low makes sampling follow the most likely item


def test_reciprocal_rank_aggregation_by_hand():
    sequences = torch.tensor([[[0, 1, 2], [1, 0, -1], [2, 1, 0]]])
    scores = reciprocal_rank_scores(sequences, 4)[0]
    assert scores[:3].tolist() == pytest.approx([1 + 1 / 2 + 1 / 3, 1 / 2 + 1 + 1 / 2, 1 / 3 + 1])
    assert scores[3] == float("-inf")  # never generated: not recommended


def test_greedy_appends_the_chosen_item_and_continues():
    scorer = TableScorer(TABLE)
    recs, scores = recommend_lists(scorer, [[0]], k=2, strategy="greedy")
    assert recs == [[1, 0]]  # 1 (p .5), then from 1 the best item not already listed: 0 (p .4)
    assert scores[0] == pytest.approx([torch.log(torch.tensor(0.5)).item(), torch.log(torch.tensor(0.4)).item()])
    assert scorer.calls == [[[0]], [[0, 1]]]  # the second step's history includes the first choice


def test_allow_history_false_excludes_the_users_items():
    recs, _ = recommend_lists(TableScorer(TABLE), [[0]], k=2, strategy="greedy", allow_history=False)
    assert recs[0][0] == 1 and recs[0][1] in (2, 3) and 0 not in recs[0]
    recs, _ = recommend_lists(TableScorer(TABLE), [[3, 0]], k=4, strategy="exact", allow_history=False)
    assert recs == [[1, 2]]  # 3 and 0 are history; the list is shorter than k rather than repeating


def test_item_beam_finds_the_better_sequence_than_greedy():
    # greedy: 1 (.5) then 0 (.4) = .20; beam of 2 keeps 2 (.4), whose best follower is 3 (.9) = .36
    recs, _ = recommend_lists(TableScorer(TABLE), [[0]], k=2, strategy="beam", beam_size=2)
    assert recs == [[2, 3]]


def test_rra_by_hand():
    # every sampled sequence is [1, 0] at a near-zero temperature: score(1) = 3 * 1, score(0) = 3 * 1/2
    recs, scores = recommend_lists(TableScorer(TABLE), [[0]], k=4, strategy="rra", steps=2, n_samples=3,
                                   temperature=COLD)
    assert recs == [[1, 0]] and scores[0] == pytest.approx([3.0, 1.5])


@pytest.mark.parametrize("allow_history,expected", [(True, [2, 0, 1, 3]), (False, [2, 1, 3])])
def test_ra_by_hand(allow_history, expected):
    # step 1 from [0]: row 0; step 2 from the chosen 1: row 1; summed over 2 samples:
    # 2 * ([.1,.5,.4,0] + [.4,0,.3,.3]) = [1.0, 1.0, 1.4, 0.6]; ties to the smaller item; history 0 removed after
    recs, scores = recommend_lists(TableScorer(TABLE), [[0]], k=4, strategy="ra", steps=2, n_samples=2,
                                   temperature=COLD, allow_history=allow_history)
    assert recs == [expected]
    full = {0: 1.0, 1: 1.0, 2: 1.4, 3: 0.6}
    assert scores[0] == pytest.approx([full[i] for i in expected])


def test_sampling_is_seeded_per_user_and_never_repeats():
    uniform = TableScorer([[0.1] * 10 for _ in range(10)])
    histories = [[0], [3], [5]]
    a, _ = recommend_lists(uniform, histories, k=10, strategy="sample", seed=7)
    b, _ = recommend_lists(uniform, histories, k=10, strategy="sample", seed=7)
    c, _ = recommend_lists(uniform, histories, k=10, strategy="sample", seed=8)
    assert a == b and a != c
    assert all(sorted(r) == list(range(10)) for r in a)  # 10 steps over 10 items: a permutation, no repeat
    alone, _ = recommend_lists(uniform, histories[1:2], k=10, strategy="sample", seed=7, keys=[1])
    assert alone[0] == a[1]  # a user's draw does not depend on the rest of the batch


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown strategy"):
        recommend_lists(TableScorer(TABLE), [[0]], k=2, strategy="nucleus")
    with pytest.raises(ValueError, match="steps must be >= 1"):
        recommend_lists(TableScorer(TABLE), [[0]], k=2, strategy="rra", steps=0)
    with pytest.raises(ValueError, match="k must be >= 1"):
        recommend_lists(TableScorer(TABLE), [[0]], k=0)


def test_gumbel_noise_equals_the_per_row_reference():
    from recgpt.predict.horizon import gumbel_noise, gumbel_noise_reference

    for keys, step, n_items, seed in (([0, 1, 2], 0, 7, 0), (range(40, 90, 3), 4, 1682, 11), ([5], 9, 1, 3)):
        assert torch.equal(gumbel_noise(keys, step, n_items, seed), gumbel_noise_reference(keys, step, n_items, seed))
    assert torch.equal(gumbel_noise([8], 2, 50, 1)[0], gumbel_noise([3, 8, 4], 2, 50, 1)[1])  # batch-independent
    noise = gumbel_noise(range(64), 1, 2000, 0).double().flatten()
    assert abs(noise.mean().item() - 0.5772) < 0.02 and abs(noise.var().item() - torch.pi ** 2 / 6) < 0.05
