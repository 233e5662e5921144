"""model.dense.popularity: the dense score's learned popularity term, against a brute-force loop and a hand
softmax, its training counts against the corpus, and the catalog's own popularity at prediction (one user scored
alone gets what it gets in a batch). Real ml-100k items and MiniLM embeddings (session fixtures); the trainer on the
real tiny corpus."""
import math
from collections import Counter

import pytest
import torch
import torch.nn.functional as F

from recgpt.model.dense import reference_dense_scores
from recgpt.predict import Recommender
from tests.fixtures_model import dense_decoder

pytestmark = pytest.mark.usefixtures("one_thread")


def popularity_decoder(slot_vocab_sizes, dim, trained=True, **dense):
    spec = {"query": "content_state", "negatives": "catalog", "catalog_negatives": 64, "popularity": "scale", **dense}
    randomize = [p for p in ("tower", "query", "popularity_scale")
                 if trained and (p != "tower" or spec.get("item_tower", True)) and (p != "query" or spec["query"] != "content")]
    return dense_decoder(slot_vocab_sizes, dim, randomize=randomize, dense=spec)


def test_popularity_scores_equal_the_loop_and_start_at_zero(ml100k_catalog, catalog_emb):
    sizes, dim = ml100k_catalog.slot_vocab_sizes, catalog_emb.shape[1]
    torch.manual_seed(1)
    state, items = torch.randn(3, ml100k_catalog.codes.shape[1], 32), catalog_emb[:40]
    own, popularity = catalog_emb[[3, 8, 13]], torch.log1p(torch.arange(40.0) % 7)
    head = popularity_decoder(sizes, dim).dense_head
    with torch.no_grad():
        fast = head.scores(state, items, own, popularity)
        assert torch.allclose(fast, reference_dense_scores(head, state, items, own, popularity), atol=1e-5)
        weight = head.popularity_weight(state)
        plain = fast - weight[:, None] * popularity[None]  # the term is s_b * log popularity, nothing else
        assert weight.abs().min() > 1e-3
        assert torch.allclose(plain, head.scores(state, items, own, popularity * 0), atol=1e-5)
    untrained = popularity_decoder(sizes, dim, trained=False).dense_head
    with torch.no_grad():  # an untrained head ignores popularity: last-item kNN as without the switch
        cosine = F.normalize(own, dim=-1) @ F.normalize(items, dim=-1).t()
        assert torch.allclose(untrained.scores(state, items, own, popularity), cosine, atol=1e-5)
    with torch.no_grad():  # a catalog without an interaction log: scored without the popularity term
        assert torch.allclose(head.scores(state, items, own), plain, atol=1e-5)


def test_content_gate_scales_the_cosine_and_matches_the_loop(ml100k_catalog, catalog_emb):
    """popularity=gated: (1 + g_b) * cosine + s_b * log popularity, both from the state; untrained, g_b = 0."""
    sizes, dim = ml100k_catalog.slot_vocab_sizes, catalog_emb.shape[1]
    torch.manual_seed(1)
    state, items = torch.randn(3, ml100k_catalog.codes.shape[1], 32), catalog_emb[:40]
    own, popularity = catalog_emb[[3, 8, 13]], torch.log1p(torch.arange(40.0) % 7)
    gated = popularity_decoder(sizes, dim, popularity="gated", query="content", item_tower=False).dense_head
    with torch.no_grad():
        fast = gated.scores(state, items, own, popularity)
        assert torch.allclose(fast, reference_dense_scores(gated, state, items, own, popularity), atol=1e-5)
        scale = gated.popularity_scale(state.mean(dim=1))
        cosine = F.normalize(own, dim=-1) @ F.normalize(items, dim=-1).t()  # content only, no tower
        want = (1 + scale[:, 1:]) * cosine + scale[:, :1] * popularity[None]
        assert torch.allclose(fast, want, atol=1e-5) and (scale[:, 1] - scale[0, 1]).abs().max() > 1e-3
    untrained = popularity_decoder(sizes, dim, trained=False, popularity="gated").dense_head
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


def test_prediction_reads_the_catalog_popularity_and_one_user_alone_equals_a_batch(ml100k_catalog, catalog_emb,
                                                                                     prepared_dir):
    """The dense component equals the head's scores with log(1 + the catalog's own counts); a user scored alone
    gets exactly the list (and the scores) it gets inside a batch of 500 other users."""
    model = popularity_decoder(ml100k_catalog.slot_vocab_sizes, catalog_emb.shape[1], popularity="gated",
                               query="content", item_tower=False, pool=5)
    counts = torch.arange(ml100k_catalog.n_items) % 13
    catalog = ml100k_catalog.__class__.from_codes(ml100k_catalog.item_ids, ml100k_catalog.codes,
                                                  ml100k_catalog.slot_vocab_sizes, catalog_emb, popularity=counts)
    rec = Recommender(model, catalog=catalog)
    from recgpt.data import load_prepared
    from recgpt.predict.protocols import build_test_cases

    inter = load_prepared(prepared_dir("ml-100k")).interactions
    histories = [h[-12:] for h in build_test_cases(inter, catalog, "loo", max_users=500, seed=2).histories]
    assert len(histories) == 500
    scorer = rec.scorer
    part = histories[:7]
    dense = scorer.components(part, scorer.state(part), {"dense"})["dense"]
    recent = torch.stack([torch.stack([catalog_emb[h[-1 - k]] if k < len(h) else torch.zeros(catalog_emb.shape[1])
                                       for k in range(5)]) for h in part])
    want = model.dense_scores(scorer.state(part), scorer.catalog_emb, recent, torch.log1p(counts.float()))
    assert torch.allclose(dense, want, atol=1e-5)
    batch, batch_scores = rec.recommend_rows(histories, 10, 1, "exact", allow_history=False)
    for i in (0, 137, 499):
        alone, alone_scores = rec.recommend_rows([histories[i]], 10, 1, "exact", allow_history=False)
        assert alone[0] == batch[i]
        assert torch.allclose(torch.tensor(alone_scores[0]), torch.tensor(batch_scores[i]), atol=1e-5)
    assert all(not set(r) & set(h) for r, h in zip(batch, histories))
    # a catalog without an interaction log: the same head scores without its popularity term, and says so
    bare = Recommender(model, catalog=catalog.with_popularity(None))
    assert bare.scorer.without_popularity and not rec.scorer.without_popularity
    plain = bare.scorer.components(part, bare.scorer.state(part), {"dense"})["dense"]
    assert torch.allclose(plain, model.dense_scores(scorer.state(part), scorer.catalog_emb, recent), atol=1e-5)


def test_training_counts_and_the_real_trainer(tiny_train_cfg, tiny_tokenizer):
    """Training popularity is log(1 + occurrences in the corpus's training sequences); the switch trains
    through the real trainer (its scale moves off zero) and refuses in-batch candidates."""
    from recgpt.config.errors import ConfigError
    from recgpt.evaluate import load_checkpoint_model
    from recgpt.train import checkpoint as ckpt
    from recgpt.train.inputs import load_training_inputs
    from recgpt.train.trainer import pretrain

    args = ["model.recipe=text_dense", "model.dense.catalog_negatives=64", "model.dense.popularity=scale",
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
    with pytest.raises((ConfigError, ValueError), match="model.dense.popularity"):
        tiny_train_cfg(*args, "model.dense.negatives=in_batch")
