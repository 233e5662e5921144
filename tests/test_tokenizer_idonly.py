"""Id-only item codes (no item text): co-occurrence SVD embeddings + hashed id through the usual tokenizer."""
import numpy as np
import pandas as pd
import pytest

from recgpt.config.tokenizer import TokenizerConfig
from recgpt.data import load_prepared
from recgpt.tokenizer.cooccurrence import cooccurrence_embeddings, hashed_id_vectors
from recgpt.tokenizer.fit import fit_tokenizer


def test_items_of_the_same_sessions_get_close_vectors_and_cold_items_are_counted():
    # two groups of items, each always seen together in sessions of its own users; item "z" never seen
    rows = []
    for user in range(12):
        group = ["a", "b", "c"] if user % 2 else ["x", "y"]
        for session in range(3):
            rows += [(f"u{user}", item, session * 10_000 + k) for k, item in enumerate(group)]
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    ids = ["a", "b", "c", "x", "y", "z"]
    emb = cooccurrence_embeddings(inter, ids, dim=4, context="session")
    v = emb.vectors.astype(np.float32)
    assert emb.n_empty_text == 1 and np.allclose(v[5], 0)
    assert v[0] @ v[1] > 0.99 and abs(v[0] @ v[3]) < 0.1
    with_id = cooccurrence_embeddings(inter, ids, dim=4, id_dims=8, id_weight=0.5)
    assert with_id.dim == 12 and "hashed-id8" in with_id.model
    assert len(np.unique(with_id.vectors, axis=0)) == 6  # the hashed part separates a, b and c


def test_hashed_id_vectors_depend_on_the_id_only():
    one = hashed_id_vectors(["7", "8", "9"], 16)
    other = hashed_id_vectors(["9", "7"], 16)
    assert np.allclose(one[[2, 0]], other) and np.allclose(np.linalg.norm(one, axis=1), 1)


@pytest.mark.slow
def test_id_only_codes_on_retailrocket_carry_cooccurrence(prepared_dir):
    """Real events, small codebooks: the hashed part removes the pile-up of items the events cannot tell
    apart, and consecutive items of one session share their first code far above chance."""
    retail = load_prepared(prepared_dir("retailrocket_mb"))
    inter, ids = retail.interactions, retail.items["item_id"].tolist()
    cfg = TokenizerConfig(kind="rqkmeans", n_codes=2, codebook_size=32, dedup_size=4096, kmeans_iters=10,
                          heldout=0.0, standardize=False)
    reports, firsts = {}, {}
    for name, id_dims in (("cooc", 0), ("cooc+id", 8)):
        emb = cooccurrence_embeddings(inter, ids, dim=16, id_dims=id_dims, id_weight=0.5)
        tok = fit_tokenizer(emb, cfg, progress=False)
        reports[name], firsts[name] = tok.report, tok.encode(emb)[:, 0]
    before = {name: r["collisions_before"] for name, r in reports.items()}
    print(before)
    assert before["cooc+id"]["max_items_per_tuple"] < before["cooc"]["max_items_per_tuple"]
    assert before["cooc+id"]["n_unique"] > before["cooc"]["n_unique"]
    index = pd.Index(ids)
    items = index.get_indexer(inter["item_id"])
    same_user = inter["user_id"].to_numpy()[1:] == inter["user_id"].to_numpy()[:-1]
    close = same_user & (np.diff(inter["timestamp"].to_numpy()) <= 1800) & (items[1:] != items[:-1])
    a, b = items[:-1][close], items[1:][close]
    first = firsts["cooc+id"]
    chance = (first[a] == first[np.random.default_rng(0).permutation(b)]).mean()
    assert (first[a] == first[b]).mean() > 3 * chance
