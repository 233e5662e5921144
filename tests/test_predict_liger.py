"""LIGER's hybrid (predict.scoring=liger) on the real ml-100k catalog: the trie beam's items plus every item the
model never saw in pretraining, re-ranked by the model's score without its code component."""
import pytest
import torch

from fixtures_model import dense_decoder
from recgpt.predict.beam import beam_item_scores
from recgpt.predict.recommender import Recommender
from recgpt.predict.scoring import ItemScorer, combine

WEIGHTS = {"code": 0.3, "dense": 0.5, "knn": 0.2}


@pytest.fixture(scope="module")
def text_catalog(ml100k_catalog, catalog_emb):
    return ml100k_catalog.__class__.from_codes(ml100k_catalog.item_ids, ml100k_catalog.codes,
                                               ml100k_catalog.slot_vocab_sizes, catalog_emb)


def liger_scorer(model, catalog, unseen, beam_size=10):
    return ItemScorer(model, catalog.codes, catalog.trie, catalog.text_emb, "liger", beam_size, unseen=unseen)


def test_candidates_are_the_beam_and_every_unseen_item(text_catalog, ml100k_histories):
    model = dense_decoder(text_catalog.slot_vocab_sizes, text_catalog.text_emb.shape[1], score_weights=WEIGHTS)
    unseen = torch.rand(text_catalog.n_items, generator=torch.Generator().manual_seed(0)) < 0.3
    scorer = liger_scorer(model, text_catalog, unseen)
    histories = ml100k_histories[:16]
    state = scorer.state(histories)
    keep = scorer.candidates(state)
    beam = torch.isfinite(beam_item_scores(model, state, scorer.trie, 10))
    assert keep[:, unseen].all()  # every item never seen in pretraining, for every user
    assert torch.equal(keep[:, ~unseen], beam[:, ~unseen])  # the seen ones only where the beam found them
    assert (beam & ~unseen[None]).sum(1).min() > 0  # the beam does propose seen items
    got = scorer.log_probs(histories)
    assert torch.equal(torch.isfinite(got), keep)
    # inside the candidates: the model's score without the code component, as the exact hybrid would give it
    rerank = {"dense": 0.5, "knn": 0.2}
    by_hand = combine(scorer.components(histories, state, set(rerank)), rerank).masked_fill(~keep, float("-inf"))
    assert torch.allclose(got, by_hand.log_softmax(1), atol=1e-5)


def test_everything_unseen_is_the_dense_side_over_the_whole_catalog(text_catalog, ml100k_histories):
    """Leave-one-domain-out: no target item was seen in pretraining, so liger ranks as the exact score without
    codes (what bench/scaling.py reports as the model's dense side); nothing seen: the beam's items alone."""
    model = dense_decoder(text_catalog.slot_vocab_sizes, text_catalog.text_emb.shape[1], score_weights=WEIGHTS)
    histories = ml100k_histories[:12]
    everything = liger_scorer(model, text_catalog, torch.ones(text_catalog.n_items, dtype=torch.bool))
    liger = everything.log_probs(histories)
    model.config.score_weights = {"dense": 0.5, "knn": 0.2}
    exact = ItemScorer(model, text_catalog.codes, text_catalog.trie, text_catalog.text_emb, "exact").log_probs(histories)
    assert torch.allclose(liger, exact, atol=1e-5)
    nothing = liger_scorer(model, text_catalog, torch.zeros(text_catalog.n_items, dtype=torch.bool))
    state = nothing.state(histories)
    assert torch.equal(nothing.candidates(state), torch.isfinite(beam_item_scores(model, state, nothing.trie, 10)))


def test_recommender_marks_unseen_items_by_their_namespaced_ids(text_catalog, ml100k_histories, exported_model):
    model = dense_decoder(text_catalog.slot_vocab_sizes, text_catalog.text_emb.shape[1], score_weights=WEIGHTS)
    ids = [str(i) for i in text_catalog.item_ids]
    seen = [f"ml-100k:{i}" for i in ids[::2]]  # as the corpus names them: <dataset>:<item id>
    rec = Recommender(model, scoring="liger", beam_size=10, pretrained_items=seen)
    rec.namespace = "ml-100k"
    rec.use_catalog(text_catalog)
    unseen = rec.scorer.unseen.tolist()
    assert unseen == [i % 2 == 1 for i in range(len(ids))]
    recs, _ = rec.recommend_rows(ml100k_histories[:8], k=20, allow_history=False)
    state = rec.scorer.state(ml100k_histories[:8])
    keep = rec.scorer.candidates(state)
    assert all(keep[u, r].all() for u, r in enumerate(map(torch.as_tensor, recs)))
    assert all(len(r) == 20 for r in recs)
    # from_pretrained reads what the export was trained on from its item_ids.json
    loaded = Recommender.from_pretrained(exported_model)
    assert loaded.pretrained_items == frozenset(map(str, loaded.catalog.item_ids))


def test_liger_refuses_what_it_cannot_score(text_catalog, make_decoder):
    dim = text_catalog.text_emb.shape[1]
    unseen = torch.zeros(text_catalog.n_items, dtype=torch.bool)
    with pytest.raises(ValueError, match="needs both"):
        liger_scorer(make_decoder("parallel"), text_catalog, unseen)  # a code head alone
    with pytest.raises(ValueError, match="needs both"):
        liger_scorer(dense_decoder(text_catalog.slot_vocab_sizes, dim, codes=None), text_catalog, unseen)
    model = dense_decoder(text_catalog.slot_vocab_sizes, dim, score_weights=WEIGHTS)
    with pytest.raises(ValueError, match="item_ids.json"):
        liger_scorer(model, text_catalog, None)
    with pytest.raises(ValueError, match="item_ids.json"):
        liger_scorer(model, text_catalog, unseen[:5])
