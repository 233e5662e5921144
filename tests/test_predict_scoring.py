"""Exact scoring and the batched trie beam against their references, on real ml-100k codes and histories
(a randomly initialised real ItemCodeDecoder: these are mechanism tests, the model need not be trained)."""
import pytest
import torch

from recgpt.predict.beam import (leaves_to_item_scores, model_head, reference_beam_search, trie_beam_search)
from recgpt.predict.catalog import Catalog
from recgpt.predict.recommender import Recommender
from recgpt.predict.scoring import ItemScorer, history_inputs, reference_item_scores
from recgpt.predict.trie import python_trie

HEADS = ["parallel", "autoregressive"]
pytestmark = pytest.mark.usefixtures("one_thread")  # tiny matrices: one thread, no thrashing on shared cores


@pytest.mark.parametrize("head", HEADS)
def test_exact_equals_one_item_at_a_time(head, make_decoder, ml100k_catalog, ml100k_histories):
    model = make_decoder(head)
    scorer = ItemScorer(model, ml100k_catalog.codes, ml100k_catalog.trie, mode="exact")
    histories = ml100k_histories[:4]
    exact = scorer.log_probs(histories)
    subset = torch.arange(0, ml100k_catalog.n_items, 7)
    ref = reference_item_scores(model, scorer.state(histories), ml100k_catalog.codes[subset])
    assert torch.allclose(exact[:, subset], ref, atol=1e-5)
    assert torch.allclose(exact, model.score_items(scorer.state(histories), ml100k_catalog.codes), atol=1e-5)
    # every item of the catalog scored, and (for a real tokenizer's codes) the item probabilities sum to <= 1
    assert torch.isfinite(exact).all() and (exact.exp().sum(1) <= 1 + 1e-4).all()


@pytest.mark.parametrize("head", HEADS)
def test_full_width_beam_equals_exhaustive(head, make_decoder, ml100k_catalog, ml100k_histories):
    model = make_decoder(head, seed=1)
    cat = ml100k_catalog
    exact = ItemScorer(model, cat.codes, cat.trie, mode="exact").log_probs(ml100k_histories[:6])
    beam = ItemScorer(model, cat.codes, cat.trie, mode="trie", beam_size=cat.n_items).log_probs(ml100k_histories[:6])
    assert torch.isfinite(beam).all()  # a beam as wide as the catalog finds every item
    assert torch.allclose(beam, exact, atol=1e-4)
    assert torch.equal(beam.topk(10).indices, exact.topk(10).indices)


@pytest.mark.parametrize("head", HEADS)
def test_batched_beam_equals_per_user_python_beam(head, make_decoder, ml100k_catalog, ml100k_histories):
    model = make_decoder(head, seed=2)
    cat, width = ml100k_catalog, 6
    scorer = ItemScorer(model, cat.codes, cat.trie, mode="trie", beam_size=width)
    state = scorer.state(ml100k_histories[:5])
    leaves, scores = trie_beam_search(model, state, cat.trie, width)
    ref_trie = python_trie(cat.codes)
    for b in range(state.shape[0]):
        one = state[b:b + 1]
        step = lambda prefix: model.next_code_logprobs(one, torch.tensor([prefix], dtype=torch.long).view(1, -1))[0]
        ref = reference_beam_search(step, ref_trie, len(cat.slot_vocab_sizes), first=width, per_beam=None, keep=width)
        got_items = [cat.trie.leaf_item[cat.trie.leaf_ptr[leaf]].item() for leaf in leaves[b].tolist()]
        assert got_items == [rows[0] for _, rows in ref]
        assert torch.allclose(scores[b], torch.tensor([s for s, _ in ref]), atol=1e-5)


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("width", [1, 3, 20])
def test_beam_returns_only_real_items(head, width, make_decoder, ml100k_catalog, ml100k_histories):
    model = make_decoder(head, seed=width)
    cat = ml100k_catalog
    state = ItemScorer(model, cat.codes, cat.trie).state(ml100k_histories[:8])
    leaves, scores = trie_beam_search(model, state, cat.trie, width)
    assert (leaves >= 0).all() and torch.isfinite(scores).all()
    assert (scores[:, :-1] >= scores[:, 1:]).all()  # best first
    catalog_tuples = {tuple(r) for r in cat.codes.tolist()}
    assert all(tuple(t) in catalog_tuples for t in cat.trie.leaf_codes[leaves.flatten()].tolist())
    # the beam's score of a tuple is that item's exact log-prob
    exact = model.score_items(state, cat.codes)
    items = leaves_to_item_scores(cat.trie, leaves, scores)
    found = torch.isfinite(items)
    assert torch.allclose(items[found], exact[found], atol=1e-4)


def test_colliding_items_stay_recommendable(make_decoder, ml100k_catalog, ml100k_histories):
    codes = ml100k_catalog.codes.clone()
    codes[11] = codes[10]  # force an unresolved collision: two items, one code tuple
    cat = Catalog.from_codes(ml100k_catalog.item_ids, codes, ml100k_catalog.slot_vocab_sizes)
    assert cat.stats["items_sharing_a_tuple"] == 1
    model = make_decoder("autoregressive")
    histories = ml100k_histories[:3]
    beam = ItemScorer(model, cat.codes, cat.trie, mode="trie", beam_size=cat.n_items).log_probs(histories)
    assert torch.isfinite(beam[:, [10, 11]]).all() and torch.equal(beam[:, 10], beam[:, 11])


def test_history_inputs_truncate_to_context_keeping_recent(ml100k_catalog):
    codes = ml100k_catalog.codes
    inputs = history_inputs([[1, 2, 3, 4, 5], [9]], codes, max_items=3)
    assert inputs["segment"].tolist() == [[1, 1, 1], [0, 0, 1]]
    assert inputs["item_pos"].tolist() == [[0, 1, 2], [0, 0, 0]]
    assert torch.equal(inputs["codes"][0], codes[[3, 4, 5]]) and torch.equal(inputs["codes"][1, 2], codes[9])
    with pytest.raises(ValueError, match="history 1 is empty"):
        history_inputs([[1], []], codes, max_items=3)


@pytest.mark.parametrize("strategy,scoring", [("exact", "exact"), ("exact", "trie"), ("rra", "exact"),
                                              ("greedy", "exact")])
def test_predictions_do_not_change_with_batch_size(strategy, scoring, make_decoder, ml100k_catalog, ml100k_histories):
    model = make_decoder("parallel", seed=4)
    histories = ml100k_histories[:9]
    out = []
    for batch_size in (1, 4, 64):
        rec = Recommender(model, catalog=ml100k_catalog, scoring=scoring, beam_size=15, batch_size=batch_size)
        out.append(rec.recommend_rows(histories, k=5, horizon=2, strategy=strategy, n_samples=2))
    for recs, scores in out[1:]:
        assert recs == out[0][0]
        assert torch.allclose(torch.tensor(scores), torch.tensor(out[0][1]), atol=1e-4)
    assert model_head(model) == "parallel"
