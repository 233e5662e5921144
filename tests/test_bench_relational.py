"""bench/relational.py: the log's co-occurrence (counted on planted sequences), a source never counting the transition
it trains on, and on real ml-100k (MiniLM titles) the untrained re-ranker returning its base rule, beta 0 returning the
shipped per-user rule, and training lowering the re-ranker's loss on held-out draws."""
import numpy as np
import pytest

from bench import relational

pytestmark = pytest.mark.usefixtures("one_thread")


def raw_counts(cn, occ):
    """The co-occurrence counts behind the normalized matrix (C[a, b] / sqrt(occ a occ b))."""
    return np.rint(cn.toarray() * np.sqrt(np.outer(occ, occ))).astype(int)


def test_cooccurrence_counts_pairs_within_the_window_both_ways_never_an_item_with_itself():
    rows = [[0, 1, 2, 3, 4], [2, 0, 0], [4]]
    cn, occ = relational.cooc_matrix(rows, 6, window=3)
    want = np.zeros((6, 6), int)
    for seq in rows:
        for i, a in enumerate(seq):
            for b in seq[i + 1:i + 4]:
                if a != b:
                    want[a, b] += 1
                    want[b, a] += 1
    counts = raw_counts(cn, occ)
    assert (counts == want).all() and (np.diag(counts) == 0).all()
    assert counts[0, 4] == 0 and counts[1, 4] == 1  # 4 positions apart: outside the window
    assert counts[2, 0] == 2 + 1  # 2 -> 0 in the second row once, 0 -> 2 in the first once: both directions
    np.testing.assert_allclose(occ, want.sum(1) + 1)
    assert occ[5] == 1 and cn[5].nnz == 0  # an item of no sequence co-occurs with nothing


@pytest.fixture(scope="module")
def ml100k(prepared_dir, real_embeddings, tokenizer_cache_dir):
    folder = prepared_dir("ml-100k")
    return {"folder": folder, "cache": str(tokenizer_cache_dir),
            "source": relational.Domain(folder, str(tokenizer_cache_dir), "loo", train=True),
            "held": relational.Domain(folder, str(tokenizer_cache_dir), "loo")}


def test_a_source_never_counts_the_transition_it_trains_on(ml100k):
    source, held = ml100k["source"], ml100k["held"]
    train_counts = raw_counts(source.cn, source.occ)
    held_counts = raw_counts(held.cn, held.occ)
    assert all(len(s) >= 3 for s in source.sequences)
    # each trained transition (the last of a sequence) is counted at least once less than in the log before the
    # targets, which held-out domains read: the pair the ranker learns from is never among its inputs
    pairs = [(s[-2], s[-1]) for s in source.sequences if s[-2] != s[-1]]
    assert len(pairs) > 0.9 * len(source.sequences)
    assert all(held_counts[a, b] - train_counts[a, b] >= 1 for a, b in pairs)
    assert (train_counts <= held_counts).all()


def test_untrained_reranker_is_its_base_rule_and_beta_zero_is_the_shipped_rule(ml100k):
    from bench.balance import own_table, self_points
    from recgpt.predict.self_weights import LOG_STRENGTH

    held = ml100k["held"]
    users = 300
    _, untrained = relational.evaluate(relational.make_ranker(0), held, users, 100)
    base = relational.rule_ndcg(held, users, relational.COOC_BASE)
    np.testing.assert_allclose(untrained, base, atol=1e-6)
    own = own_table(held.inter, held.catalog, held.emb, "loo", users)
    log = np.asarray(own["log"])
    shipped = np.asarray(own["ndcg"])[np.arange(users), self_points(own["own"], log / log.max(), LOG_STRENGTH)]
    np.testing.assert_allclose(relational.rule_ndcg(held, users, 0.0), shipped, atol=1e-4)  # own_table rounds
    # the log's co-occurrence carries signal on movies: some beta beats the shipped rule alone (1.84x measured)
    assert max(relational.rule_ndcg(held, users, b).mean() for b in relational.BETAS[1:]) > 1.3 * shipped.mean()


def test_training_lowers_the_loss_on_draws_it_did_not_train_on(ml100k):
    import torch

    source = ml100k["source"]
    ranker = relational.make_ranker(0)
    opt = torch.optim.AdamW(ranker.parameters(), lr=1e-3, weight_decay=0.01)

    def held_loss() -> float:
        with torch.no_grad():
            rng = np.random.default_rng(123)  # the same draws each time, never the training stream's
            return float(np.mean([relational.listwise_loss(ranker, source, rng, 100).item() for _ in range(6)]))

    before = held_loss()
    rng = np.random.default_rng(0)
    for _ in range(120):
        loss = relational.listwise_loss(ranker, source, rng, 100)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert held_loss() < before - 0.02
