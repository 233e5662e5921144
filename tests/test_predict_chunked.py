"""Scoring a catalog in chunks (ItemScorer.top_k, content kNN, the fp16 item vectors) gives what scoring it whole
gives: on the real ml-100k catalog (1,682 items, MiniLM vectors) cut into chunks of 97 items, with a code-only
model and with a hybrid of code, dense, content-kNN and popularity components, whose standardization needs the
whole catalog's mean and spread."""
import numpy as np
import pytest
import torch

from fixtures_model import dense_decoder
from recgpt.predict.baselines import content_knn_scores
from recgpt.predict.horizon import recommend_lists
from recgpt.predict.ranking import merge_top_k
from recgpt.predict.scoring import ItemScorer, ItemVectors

pytestmark = pytest.mark.usefixtures("one_thread")


def whole(scorer, histories, k, exclude):
    """The reference: log_probs over the whole catalog, excluded rows masked, a stable sort."""
    logp = scorer.log_probs(histories).clone()
    for b, rows in enumerate(exclude):
        logp[b, list(rows)] = float("-inf")
    vals, rows = torch.sort(logp, dim=1, descending=True, stable=True)
    return vals[:, :k], rows[:, :k]


@pytest.fixture(scope="module")
def fp16_catalog(ml100k_catalog, catalog_emb):
    return ml100k_catalog.__class__.from_codes(ml100k_catalog.item_ids, ml100k_catalog.codes,
                                               ml100k_catalog.slot_vocab_sizes, catalog_emb.half(),
                                               popularity=np.arange(ml100k_catalog.n_items) % 13)


@pytest.mark.parametrize("weights", [None, {"code": 0.3, "dense": 0.5, "knn": 0.2, "pop": 0.4}])
def test_top_k_in_chunks_equals_the_whole_catalog(fp16_catalog, ml100k_histories, weights):
    cat = fp16_catalog
    model = dense_decoder(cat.slot_vocab_sizes, cat.text_emb.shape[1], score_weights=weights or {"code": 1.0},
                          center_text=True)
    scorer = ItemScorer(model, cat.codes, cat.trie, cat.text_emb, "exact", popularity=cat.popularity)
    histories = ml100k_histories[:24]
    exclude = [h[-3:] for h in histories]
    want_vals, want_rows = whole(scorer, histories, 10, exclude)
    scorer.chunk_items = 97  # 18 chunks, the last one short
    vals, rows = scorer.top_k(histories, 10, exclude)
    assert torch.allclose(vals, want_vals, atol=1e-4)
    assert (rows == want_rows).float().mean() > 0.99  # a rank may swap only between scores equal within 1e-4
    assert not any(set(map(int, r)) & set(e) for r, e in zip(rows, exclude))
    # the exact strategy goes through top_k; one chunk holding the whole catalog gives the same lists
    scorer.chunk_items = 4096
    lists, _ = recommend_lists(scorer, histories, 10, "exact", allow_history=False)
    want = whole(scorer, histories, 10, [set(h) for h in histories])[1].tolist()
    assert np.mean([a == b for x, y in zip(lists, want) for a, b in zip(x, y)]) > 0.99
    assert all(len(x) == 10 and not set(x) & set(h) for x, h in zip(lists, histories))


def test_merge_keeps_ties_to_the_smaller_row():
    scores = torch.tensor([[1.0, 3.0, 3.0, 0.0, 3.0, 3.0, 2.0, 3.0, float("-inf")],
                           [0.5] * 9])
    best = None
    for lo in range(0, 9, 4):
        best = merge_top_k(best, scores[:, lo:lo + 4], lo, 3)
    vals, rows = torch.sort(scores, dim=1, descending=True, stable=True)
    assert torch.equal(best[1], rows[:, :3]) and torch.equal(best[0], vals[:, :3])


def test_item_vectors_read_fp16_as_centered_float_rows(catalog_emb):
    vectors = ItemVectors(catalog_emb.half(), center=True, chunk=100)
    want = catalog_emb.half().float() - catalog_emb.half().float().mean(0)
    assert vectors.vectors.dtype == torch.float16 and len(vectors) == len(catalog_emb)
    assert torch.allclose(vectors[5:900], want[5:900], atol=1e-6)
    assert torch.allclose(vectors[torch.tensor([[3, 1], [7, 7]])], want[torch.tensor([[3, 1], [7, 7]])], atol=1e-6)


def test_content_knn_in_chunks_and_in_fp16(catalog_emb, ml100k_histories):
    histories = ml100k_histories[:8]
    full = content_knn_scores(histories, catalog_emb)
    assert torch.allclose(content_knn_scores(histories, catalog_emb, chunk=97), full, atol=1e-6)
    part = content_knn_scores(histories, catalog_emb, items=slice(100, 400), chunk=64)
    assert torch.allclose(part, full[:, 100:400], atol=1e-6)
    assert torch.allclose(content_knn_scores(histories, catalog_emb.half()), full, atol=2e-3)


def test_moments_merged_over_chunks_standardize_as_the_whole_row():
    from recgpt.predict.scoring import add_moments, row_moments, standardize

    gen = torch.Generator().manual_seed(0)
    scores = torch.randn(5, 1000, generator=gen) * 3 + 7
    scores[torch.rand(5, 1000, generator=gen) < 0.2] = float("-inf")  # the trie beam's and LIGER's -inf entries
    scores[4, :] = float("-inf")  # a row with nothing finite stays -inf
    acc = None
    for lo in range(0, 1000, 137):
        acc = add_moments(acc, scores[:, lo:lo + 137])
    mean, std = row_moments(acc)
    want = standardize(scores)
    for lo in range(0, 1000, 137):
        got = standardize(scores[:, lo:lo + 137], mean, std)
        assert torch.equal(torch.isfinite(got), torch.isfinite(want[:, lo:lo + 137]))
        assert torch.allclose(got[torch.isfinite(got)], want[:, lo:lo + 137][torch.isfinite(got)], atol=1e-5)


def test_content_knn_lists_in_chunks_equal_one_chunk(catalog_emb, ml100k_histories):
    from recgpt.predict.baselines import content_knn

    histories = ml100k_histories[:20]
    whole_lists = content_knn(histories, catalog_emb, 10, allow_history=False, chunk=1 << 20)
    assert content_knn(histories, catalog_emb.half(), 10, allow_history=False, chunk=97, batch_size=7) == \
        content_knn(histories, catalog_emb.half(), 10, allow_history=False, chunk=1 << 20)
    scores = content_knn_scores(histories, catalog_emb)
    for row, h, got in zip(scores, histories, content_knn(histories, catalog_emb, 10, allow_history=False, chunk=97)):
        row[list(h)] = float("-inf")
        assert got == torch.sort(row, descending=True, stable=True)[1][:10].tolist()
        assert not set(got) & set(h)
    assert all(len(x) == 10 for x in whole_lists)


def test_trie_top_k_in_passes_of_few_users_equals_one_pass(fp16_catalog, ml100k_histories, monkeypatch):
    """The trie beam scores the whole catalog per history: a catalog of millions takes few histories per pass
    (SCORE_BYTES); the lists are those of one pass."""
    import recgpt.predict.ranking as ranking

    cat = fp16_catalog
    model = dense_decoder(cat.slot_vocab_sizes, cat.text_emb.shape[1], score_weights={"code": 1.0})
    scorer = ItemScorer(model, cat.codes, cat.trie, cat.text_emb, "trie", beam_size=8)
    histories, exclude = ml100k_histories[:11], [h[-2:] for h in ml100k_histories[:11]]
    want_vals, want_rows = scorer.top_k(histories, 10, exclude)
    calls = []
    monkeypatch.setattr(ranking, "SCORE_BYTES", 4 * cat.n_items * 4)  # 4 histories per pass
    original = scorer.state
    monkeypatch.setattr(scorer, "state", lambda h: calls.append(len(h)) or original(h))
    vals, rows = scorer.top_k(histories, 10, exclude)
    assert calls == [4, 4, 3]
    assert torch.equal(rows, want_rows) and torch.allclose(vals, want_vals, atol=1e-5)
    assert torch.isfinite(vals).any() and (~torch.isfinite(vals)).any()  # beam items, then -inf outside the beam
