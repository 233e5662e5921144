"""KV cache (recgpt.model.cache, recgpt.predict.rollout): cached states and rollouts equal re-encoding.

Real ml-100k histories over the real catalog (RQ-KMeans codes of MiniLM embeddings), a code model of either head
and a text_dense model (text input, pooled content query, gated popularity: the learned parts moved off their
zero start so the state matters). max_items is 20 and the histories are cut to lengths around it, so rollouts
cross the window (the cache encodes those rows again) as well as staying inside it.
"""
import pytest
import torch

from recgpt.model.cache import KVCache, append_items
from recgpt.predict.horizon import recommend_lists
from recgpt.predict.rollout import CachedRollout, HistoryRollout
from recgpt.predict.scoring import ItemScorer, history_inputs

LENGTHS = (1, 4, 9, 15, 18, 19, 20, 33)  # max_items = 20: inside, crossing during a 10-step rollout, beyond


def cut(histories, lengths=LENGTHS):
    long = [h for h in histories if len(h) >= max(lengths)]
    return [list(long[i % len(long)][:n]) for i, n in enumerate(lengths)]


@pytest.fixture(scope="module")
def popularity(prepared_dir, ml100k_catalog):
    from recgpt.data import load_prepared
    from recgpt.data.popularity import counts_of_ids

    inter = load_prepared(prepared_dir("ml-100k")).interactions
    return counts_of_ids(ml100k_catalog.item_ids, inter["item_id"])


def text_dense_decoder(slot_vocab_sizes, dim, seed=0):
    from recgpt.model import ItemCodeDecoder, ItemCodeDecoderConfig

    torch.manual_seed(seed)
    config = ItemCodeDecoderConfig.from_recipe("text_dense", slot_vocab_sizes, embed_dim=dim, n_layers=2, d_model=32,
                                               n_heads=4, d_ff=64, dropout=0.0, max_items=20)
    model = ItemCodeDecoder(config).eval()
    head = model.dense_head
    with torch.no_grad():  # as if trained: the popularity weight and gate read the state, the pool is weighted
        for p in (*head.popularity_scale.parameters(), head.recency, head.attention):
            p.normal_(std=0.5)
    return model


@pytest.fixture(scope="module")
def scorers(make_decoder, ml100k_catalog, catalog_emb, popularity):
    cat = ml100k_catalog
    text_dense = lambda: text_dense_decoder(list(cat.slot_vocab_sizes), catalog_emb.shape[1], seed=5)  # noqa: E731
    return {"parallel": lambda: ItemScorer(make_decoder("parallel", seed=1), cat.codes, cat.trie),
            "autoregressive": lambda: ItemScorer(make_decoder("autoregressive", seed=2), cat.codes, cat.trie,
                                                 beam_size=30),
            "text_dense": lambda: ItemScorer(text_dense(), cat.codes, cat.trie, catalog_emb, popularity=popularity)}


@pytest.mark.parametrize("head", ["parallel", "autoregressive", "text"])
def test_appended_states_equal_re_encoding(head, one_thread, make_decoder, ml100k_catalog, catalog_emb,
                                           ml100k_histories):
    cat = ml100k_catalog
    if head == "text":
        model = text_dense_decoder(list(cat.slot_vocab_sizes), catalog_emb.shape[1], seed=3)
        text = catalog_emb
    else:
        model, text = make_decoder(head, seed=3), None
    histories = cut(ml100k_histories, (1, 2, 7, 11, 16))  # left-padded to 16 items; 4 steps stay under 20
    cache = KVCache.empty(model, len(histories))
    state = model.history_state(**history_inputs(histories, cat.codes, 20, text), past=cache)
    reference = model.history_state(**history_inputs(histories, cat.codes, 20, text))
    assert torch.allclose(state, reference, atol=1e-5)
    assert cache.n_items.tolist() == [1, 2, 7, 11, 16]
    for step in range(4):
        new = torch.tensor([h[(step * 7 + 3) % len(h)] for h in ml100k_histories[: len(histories)]])
        histories = [h + [int(i)] for h, i in zip(histories, new)]
        state = append_items(model, cache, cat.codes[new].long(), None if text is None else text[new])
        reference = model.history_state(**history_inputs(histories, cat.codes, 20, text))
        assert torch.allclose(state, reference, atol=1e-5), (step, (state - reference).abs().max())
        assert (state - model.history_state(**history_inputs([h[:-1] for h in histories], cat.codes, 20, text))
                ).abs().max() > 1e-2  # the appended item changes the state: the check above has teeth
    assert cache.n_items.tolist() == [5, 6, 11, 15, 20]
    with pytest.raises(ValueError, match="max_items"):  # a full row is encoded again, never appended to
        append_items(model, cache, cat.codes[new].long(), None if text is None else text[new])


@pytest.mark.parametrize("model", ["parallel", "autoregressive", "text_dense"])
def test_branching_rows_equal_re_encoding(model, one_thread, scorers, ml100k_histories):
    """Rows that repeat (beams), skip a step (-1) or outgrow max_items (encoded again) score as re-encoded."""
    scorer = scorers[model]()
    histories = cut(ml100k_histories, (3, 19, 20, 8))
    cached, reference = CachedRollout(scorer, histories), HistoryRollout(scorer, histories)
    steps = [([0, 0, 1, 2, 3], [10, 11, 12, -1, 13]), ([4, 3, 2, 1, 0, 0], [-1, 14, 15, 16, 17, -1]),
             ([5, 5, 1], [18, 19, 20])]
    for parents, items in steps:
        for rollout in (cached, reference):
            rollout.advance(parents, items)
        assert cached.histories == reference.histories
        a, b = cached.log_probs(), reference.log_probs()
        assert torch.equal(torch.isfinite(a), torch.isfinite(b))
        assert (a - b)[torch.isfinite(a)].abs().max() < 1e-5
    assert [len(h) for h in cached.histories] == [5, 5, 22]  # one row past max_items (encoded again)


@pytest.mark.parametrize("strategy", ["greedy", "sample", "beam", "rra", "ra"])
@pytest.mark.parametrize("model", ["parallel", "autoregressive", "text_dense"])
def test_cached_rollouts_equal_re_encoding(model, strategy, one_thread, scorers, ml100k_histories, monkeypatch):
    scorer = scorers[model]()
    histories = cut(ml100k_histories)
    kwargs = dict(k=10, strategy=strategy, allow_history=False, beam_size=4, n_samples=3, seed=2)
    if strategy in ("rra", "ra"):
        kwargs["steps"] = 6
    cached, encoded = [], []
    monkeypatch.setattr(scorer.model, "encode", record(scorer.model.encode, cached))
    recs, scores = recommend_lists(scorer, histories, **kwargs)
    scorer.kv_cache = False
    monkeypatch.setattr(scorer.model, "encode", record(scorer.model.encode, encoded))
    ref_recs, ref_scores = recommend_lists(scorer, histories, **kwargs)
    assert recs == ref_recs
    assert all(len(r) == 10 for r in recs) or strategy in ("rra", "ra")
    # log-probs of ~ -7 within 1e-5 relative: the states agree to ~5e-7, which the dense score (gate, popularity
    # weight, per-user standardization) amplifies to ~2e-5 absolute; re-encoding a batch vs one history at a time
    # differs by ~1e-5 itself
    for got, want in zip(scores, ref_scores):
        assert torch.allclose(torch.tensor(got), torch.tensor(want), atol=1e-5, rtol=1e-5)
    # cached: the distinct histories encoded once, then one item per row each step (and the rows past max_items
    # again); the reference encodes every grown history each step
    steps = kwargs.get("steps", 10)
    assert cached[0] == (len(histories), 20) and sum(width == 1 for _, width in cached) == steps - 1
    assert len(encoded) == steps and all(width == 20 for _, width in encoded)


def record(encode, shapes):
    """Wrap model.encode to note the (rows, items) of each call."""
    def wrapped(codes, *args, **kwargs):
        shapes.append(tuple(codes.shape[:2]))
        return encode(codes, *args, **kwargs)

    return wrapped


def test_the_reference_path_is_a_switch(scorers, ml100k_histories):
    scorer = scorers["parallel"]()
    assert isinstance(scorer.rollout(ml100k_histories[:2]), CachedRollout)
    scorer.kv_cache = False
    assert type(scorer.rollout(ml100k_histories[:2])) is HistoryRollout


@pytest.mark.parametrize("strategy", ["greedy", "sample", "beam", "rra", "ra"])
def test_multi_step_lists_do_not_depend_on_the_passes(strategy, one_thread, scorers, ml100k_histories):
    """A catalog of millions runs the multi-step strategies on a few histories at a time (score_bytes): the
    lists and scores are those of one pass over all histories."""
    scorer = scorers["text_dense"]()
    histories = cut(ml100k_histories)
    kwargs = dict(k=10, strategy=strategy, allow_history=False, beam_size=4, n_samples=3, seed=2, steps=6)
    whole, whole_scores = recommend_lists(scorer, histories, **kwargs)
    per_user = {"beam": 4, "rra": 3, "ra": 3}.get(strategy, 1)
    calls = []
    original = scorer.rollout
    scorer.rollout = lambda h: calls.append(len(h)) or original(h)
    parts, part_scores = recommend_lists(scorer, histories, score_bytes=4 * scorer.n_items * per_user * 3, **kwargs)
    copies = per_user if strategy in ("rra", "ra") else 1  # rra / ra roll out n_samples copies of each history
    assert calls == [3 * copies, 3 * copies, 2 * copies]  # 8 histories, 3 per pass
    assert parts == whole
    for got, want in zip(part_scores, whole_scores):
        assert torch.allclose(torch.tensor(got), torch.tensor(want), atol=1e-5, rtol=1e-5)
