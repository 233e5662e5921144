"""model.dense_popularity: the dense score's learned popularity term, against a brute-force loop and a hand
softmax, its training counts against the corpus, and its prediction-time prior counting the histories scored.
Real ml-100k items and MiniLM embeddings (session fixtures); the trainer on the real tiny corpus."""
import math
from collections import Counter

import pytest
import torch
import torch.nn.functional as F

from recgpt.model.dense import reference_dense_scores
from recgpt.predict import Recommender
from tests.fixtures_model import dense_decoder

pytestmark = pytest.mark.usefixtures("one_thread")


def popularity_decoder(slot_vocab_sizes, dim, trained=True, **kw):
    randomize = ("tower", "query", "popularity_scale") if trained else ()
    return dense_decoder(slot_vocab_sizes, dim, randomize=randomize, dense_query_skip=True, dense_popularity=True,
                         dense_negatives="catalog", **kw)


def test_popularity_scores_equal_the_loop_and_start_at_zero(ml100k_catalog, catalog_emb):
    sizes, dim = ml100k_catalog.slot_vocab_sizes, catalog_emb.shape[1]
    state, items = torch.randn(3, ml100k_catalog.codes.shape[1], 32), catalog_emb[:40]
    own, popularity = catalog_emb[[3, 8, 13]], torch.log1p(torch.arange(40.0) % 7)
    head = popularity_decoder(sizes, dim).dense_head
    with torch.no_grad():
        fast = head.scores(state, items, own, popularity)
        assert torch.allclose(fast, reference_dense_scores(head, state, items, own, popularity), atol=1e-5)
        weight = head.popularity_weight(state)
        plain = fast - weight[:, None] * popularity[None]  # the term is s_b * log popularity, nothing else
        assert weight.abs().min() > 1e-3 and torch.allclose(plain, head.scores(state, items, own, popularity * 0))
    untrained = popularity_decoder(sizes, dim, trained=False).dense_head
    with torch.no_grad():  # an untrained head ignores popularity: last-item kNN as without the switch
        cosine = F.normalize(own, dim=-1) @ F.normalize(items, dim=-1).t()
        assert torch.allclose(untrained.scores(state, items, own, popularity), cosine, atol=1e-5)
    with pytest.raises(ValueError, match="log popularity"):
        head.scores(state, items, own)


def test_content_gate_scales_the_cosine_and_matches_the_loop(ml100k_catalog, catalog_emb):
    """dense_content_gate: (1 + g_b) * cosine + s_b * log popularity, both from the state; untrained, g_b = 0."""
    sizes, dim = ml100k_catalog.slot_vocab_sizes, catalog_emb.shape[1]
    state, items = torch.randn(3, ml100k_catalog.codes.shape[1], 32), catalog_emb[:40]
    own, popularity = catalog_emb[[3, 8, 13]], torch.log1p(torch.arange(40.0) % 7)
    gated = popularity_decoder(sizes, dim, dense_content_gate=True, dense_query_state=False,
                               dense_item_tower=False).dense_head
    with torch.no_grad():
        fast = gated.scores(state, items, own, popularity)
        assert torch.allclose(fast, reference_dense_scores(gated, state, items, own, popularity), atol=1e-5)
        scale = gated.popularity_scale(state.mean(dim=1))
        cosine = F.normalize(own, dim=-1) @ F.normalize(items, dim=-1).t()  # content only, no tower
        want = (1 + scale[:, 1:]) * cosine + scale[:, :1] * popularity[None]
        assert torch.allclose(fast, want, atol=1e-5) and (scale[:, 1] - scale[0, 1]).abs().max() > 1e-3
    untrained = popularity_decoder(sizes, dim, trained=False, dense_content_gate=True).dense_head
    with torch.no_grad():
        assert torch.allclose(untrained.scores(state, items, own, popularity), cosine, atol=1e-5)


def test_infonce_with_popularity_matches_a_loop(ml100k_catalog, catalog_emb):
    """Own target + sampled items of its dataset; each candidate's logit adds s_b * its log popularity."""
    head = popularity_decoder(ml100k_catalog.slot_vocab_sizes, catalog_emb.shape[1]).dense_head
    states = torch.randn(4, ml100k_catalog.codes.shape[1], 32)
    rows, groups = [5, 9, 5, 2], torch.tensor([0, 0, 0, 1])
    negatives, negative_groups = [9, 30, 31, 40], torch.tensor([0, 0, 1, 1])
    pop = {i: math.log1p(i % 5) for i in range(50)}
    with torch.no_grad():
        got = head.infonce_sum(states, catalog_emb[rows], catalog_emb[rows], groups, catalog_emb[negatives],
                               negative_groups, False, torch.tensor([pop[i] for i in rows]),
                               torch.tensor([pop[i] for i in negatives]))
        queries, weight, want = head.queries(states, catalog_emb[rows]), head.popularity_weight(states), 0.0
        for m, (item, group) in enumerate(zip(rows, groups.tolist())):
            own = sorted({item} | {i for i, g in zip(negatives, negative_groups.tolist()) if g == group})
            logits = (queries[m] @ head.items(catalog_emb[own]).t()
                      + weight[m] * torch.tensor([pop[i] for i in own])) / head.temperature
            want += float(-F.log_softmax(logits, 0)[own.index(item)])
    assert float(got) == pytest.approx(want, rel=1e-5)
    with pytest.raises(ValueError, match="log popularity"):
        head.infonce_sum(states, catalog_emb[rows], catalog_emb[rows], groups, catalog_emb[negatives],
                         negative_groups, False)


def test_prediction_counts_the_histories_scored(ml100k_catalog, catalog_emb, ml100k_histories):
    """The recommender sets the popularity prior from the histories of the call, label-free, and the dense
    component equals the head's scores with log(1 + count over those histories)."""
    model = popularity_decoder(ml100k_catalog.slot_vocab_sizes, catalog_emb.shape[1])
    catalog = ml100k_catalog.__class__.from_codes(ml100k_catalog.item_ids, ml100k_catalog.codes,
                                                  ml100k_catalog.slot_vocab_sizes, catalog_emb)
    rec = Recommender(model, catalog=catalog)
    histories = [list(h[-6:]) for h in ml100k_histories[:12]]
    recs, _ = rec.recommend_rows(histories, 10, 1, "exact", allow_history=False)
    counts = Counter(i for h in histories for i in h)
    want_pop = torch.log1p(torch.tensor([float(counts[i]) for i in range(catalog.n_items)]))
    assert torch.allclose(rec.scorer.prior.log_popularity(catalog.n_items, "cpu")[0], want_pop)
    scorer = rec.scorer
    dense = scorer.components(histories, scorer.state(histories), {"dense"})["dense"]
    last = scorer.catalog_emb[torch.tensor([h[-1] for h in histories])]
    want = model.dense_scores(scorer.state(histories), scorer.catalog_emb, last, want_pop)
    assert torch.allclose(dense, want, atol=1e-5)
    assert all(not set(r) & set(h) for r, h in zip(recs, histories))


def test_training_counts_and_the_real_trainer(tiny_train_cfg, tiny_tokenizer):
    """Training popularity is log(1 + occurrences in the corpus's training sequences); the switch trains
    through the real trainer (its scale moves off zero) and refuses in-batch candidates."""
    from recgpt.config.errors import ConfigError
    from recgpt.evaluate import load_checkpoint_model
    from recgpt.train import checkpoint as ckpt
    from recgpt.train.inputs import load_training_inputs
    from recgpt.train.trainer import pretrain

    args = ["model.dense_head=true", "model.use_text=true", "model.code_loss_weight=0", "model.dense_query_skip=true",
            "model.dense_negatives=catalog", "model.dense_catalog_negatives=64", "model.dense_popularity=true",
            f"train.text_embeddings_dir={tiny_tokenizer.parent / 'embeddings'}", "train.max_steps=3",
            "train.eval_every=3", "train.save_every=3"]
    cfg = tiny_train_cfg(*args)
    inputs = load_training_inputs(cfg)
    counts = Counter(i for s in inputs.train.column.to_pylist() for i in s)
    want = torch.log1p(torch.tensor([float(counts[i]) for i in range(len(inputs.codes))]))
    assert torch.allclose(inputs.item_popularity, want) and inputs.item_popularity.max() > math.log(3)
    summary = pretrain(cfg)
    complete, _ = ckpt.list_checkpoints(summary["run_dir"])
    head = load_checkpoint_model(complete[-1], ckpt.read_meta(complete[-1])).dense_head
    assert math.isfinite(summary["loss"]) and head.popularity_scale.bias.abs().sum() > 0
    with pytest.raises((ConfigError, ValueError), match="dense_popularity"):
        tiny_train_cfg(*args, "model.dense_negatives=in_batch")


def test_pool_decay_starts_as_the_content_knn_baseline(ml100k_catalog, catalog_emb, ml100k_histories):
    """dense_pool_decay=0.7: the untrained pooled query is the content kNN baseline's user vector (0.7^age mean
    of the last 5 items), so through the real scorer the untrained dense head equals content kNN's cosines."""
    from recgpt.predict.baselines import content_knn_scores

    model = dense_decoder(ml100k_catalog.slot_vocab_sizes, catalog_emb.shape[1], randomize=(), dense_query_skip=True,
                          dense_query_pool=5, dense_pool_decay=0.7, dense_query_state=False, dense_item_tower=False)
    assert torch.allclose(model.dense_head.recency, torch.tensor([0.0, 0.7, 0.49, 0.343, 0.2401]))
    catalog = ml100k_catalog.__class__.from_codes(ml100k_catalog.item_ids, ml100k_catalog.codes,
                                                  ml100k_catalog.slot_vocab_sizes, catalog_emb)
    scorer = Recommender(model, catalog=catalog).scorer
    histories = [list(h[-8:]) for h in ml100k_histories[:10]] + [list(ml100k_histories[10][-2:])]
    dense = scorer.components(histories, scorer.state(histories), {"dense"})["dense"]
    assert torch.allclose(dense, content_knn_scores(histories, catalog_emb), atol=1e-5)
