"""The tensor trie against a brute-force prefix scan over real item codes (ml-100k through a real tokenizer)."""
import pytest
import torch

from recgpt.predict.beam import leaves_to_item_scores
from recgpt.predict.trie import build_trie, python_trie, unique_rows


@pytest.mark.parametrize("dense_limit", [0, 1 << 22])  # CSR masks and dense masks
def test_masks_equal_brute_force_prefix_scan(ml100k_catalog, dense_limit):
    codes, sizes = ml100k_catalog.codes, ml100k_catalog.slot_vocab_sizes
    trie = build_trie(codes, sizes, dense_limit=dense_limit)
    rows = codes.tolist()
    for depth in range(len(sizes)):
        prefixes = sorted({tuple(r[:depth]) for r in rows})
        nodes = torch.zeros(len(prefixes), dtype=torch.long)
        for d in range(depth):  # walk each prefix down the trie
            nodes = trie.child(d, nodes, torch.tensor([p[d] for p in prefixes]))
        assert nodes.tolist() == list(range(len(prefixes)))  # node ids = lexicographic prefix order
        mask = trie.allowed(depth, nodes)
        for p, row in zip(prefixes, mask):
            expected = {r[depth] for r in rows if tuple(r[:depth]) == p}
            assert set(row.nonzero().flatten().tolist()) == expected
    dead = trie.allowed(1, torch.tensor([-1]))
    assert not dead.any()


def test_lookup_and_leaf_items(ml100k_catalog):
    trie = ml100k_catalog.trie
    leaves = trie.lookup(ml100k_catalog.codes)
    assert (leaves >= 0).all()
    assert torch.equal(trie.leaf_codes[leaves], ml100k_catalog.codes)
    assert torch.equal(leaves, trie.item_leaf)
    unknown = ml100k_catalog.codes[:1].clone()
    unknown[0, -1] = ml100k_catalog.slot_vocab_sizes[-1] - 1  # a disambiguation code nobody uses
    if not (ml100k_catalog.codes == unknown).all(1).any():
        assert trie.lookup(unknown).item() == -1
    ref = python_trie(ml100k_catalog.codes)
    for row, r in enumerate(ml100k_catalog.codes.tolist()[:200]):
        node = ref
        for c in r:
            node = node[c]
        assert row in node


def test_collisions_map_to_every_item():
    codes = torch.tensor([[0, 1, 2], [0, 1, 2], [1, 0, 0], [0, 1, 2], [1, 0, 1]])
    trie = build_trie(codes, [2, 2, 3])
    assert trie.n_leaves == 3 and trie.max_collisions == 3
    scores = leaves_to_item_scores(trie, torch.tensor([[0, 2, -1]]), torch.tensor([[-1.0, -2.0, float("-inf")]]))
    assert scores.tolist() == [[-1.0, -1.0, float("-inf"), -1.0, -2.0]]  # all three colliding items kept


def test_bad_codes_are_named():
    with pytest.raises(ValueError, match="row 1 slot 2 = 5 outside"):
        build_trie(torch.tensor([[0, 0, 0], [0, 1, 5]]), [2, 2, 3])
    with pytest.raises(ValueError, match="must be"):
        build_trie(torch.zeros(4, 2, dtype=torch.long), [2, 2, 3])
    with pytest.raises(ValueError, match="empty catalog"):
        build_trie(torch.zeros(0, 3, dtype=torch.long), [2, 2, 3])


@pytest.mark.parametrize("sizes", [[3, 5, 2], [256, 256, 256, 64], [2 ** 21, 2 ** 21, 2 ** 21]])
def test_unique_rows_equals_the_row_wise_unique(sizes):
    """One int64 key per row (mixed radix) sorts as the rows do; past 2^62 the row-wise unique is used."""
    gen = torch.Generator().manual_seed(len(sizes))
    codes = torch.stack([torch.randint(0, min(v, 6), (3000,), generator=gen) for v in sizes], 1)
    codes[:, -1] = torch.where(torch.arange(3000) % 7 == 0, sizes[-1] - 1, codes[:, -1])  # the largest code too
    leaves, inverse = unique_rows(codes, sizes)
    want_leaves, want_inverse = torch.unique(codes, dim=0, return_inverse=True)
    assert torch.equal(leaves, want_leaves) and torch.equal(inverse, want_inverse)
    assert len(leaves) < len(codes)  # rows repeat: the inverse is exercised
