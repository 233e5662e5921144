"""Prefix trie over item code tuples, stored as tensors so beam search can mask and step on device.

Depth k (0 <= k < L) holds the nodes that are prefixes of length k (depth 0: the root, node 0). The
children of depth-k nodes are stored CSR-style: `ptr[k]` [n_nodes_k + 1] and, per child, its code
`code[k]` and a sort key `key[k] = parent * V_k + code`. The children are enumerated in lexicographic
order, so the index of a child in `code[k]` *is* its node id at depth k + 1 and `searchsorted(key[k])`
steps from (node, code) to the child. At the last depth the child index is a leaf: one unique code
tuple, mapped to one or more catalog items (`leaf_ptr`/`leaf_item`) so that colliding items stay
recommendable.
"""
import math
from dataclasses import dataclass

import torch

# Dense [n_nodes, V] allowed-masks are kept per depth when they are this small (bool elements).
DENSE_MASK_LIMIT = 1 << 22


@dataclass
class CodeTrie:
    slot_vocab_sizes: list[int]
    ptr: list[torch.Tensor]  # per depth: Long [n_nodes_k + 1]
    code: list[torch.Tensor]  # per depth: Long [n_nodes_{k+1}]
    key: list[torch.Tensor]  # per depth: Long [n_nodes_{k+1}], sorted
    leaf_codes: torch.Tensor  # Long [n_leaves, L], the unique code tuples in lexicographic order
    leaf_ptr: torch.Tensor  # Long [n_leaves + 1]
    leaf_item: torch.Tensor  # Long [n_items], catalog rows grouped by leaf
    item_leaf: torch.Tensor  # Long [n_items], the leaf of each catalog row
    dense: list  # per depth: Bool [n_nodes_k, V_k] or None

    @property
    def depth(self) -> int:
        return len(self.slot_vocab_sizes)

    @property
    def n_leaves(self) -> int:
        return self.leaf_codes.shape[0]

    @property
    def n_items(self) -> int:
        return self.item_leaf.shape[0]

    @property
    def max_collisions(self) -> int:
        return int((self.leaf_ptr[1:] - self.leaf_ptr[:-1]).max()) if self.n_leaves else 0

    def to(self, device) -> "CodeTrie":
        move = lambda xs: [None if x is None else x.to(device) for x in xs]  # noqa: E731
        return CodeTrie(self.slot_vocab_sizes, move(self.ptr), move(self.code), move(self.key),
                        self.leaf_codes.to(device), self.leaf_ptr.to(device), self.leaf_item.to(device),
                        self.item_leaf.to(device), move(self.dense))

    def allowed(self, depth: int, nodes: torch.Tensor) -> torch.Tensor:
        """Bool [M, V_depth]: which codes may follow each node (node id -1 = dead beam: nothing allowed)."""
        vocab = self.slot_vocab_sizes[depth]
        live = nodes >= 0
        safe = nodes.clamp(min=0)
        if self.dense[depth] is not None:
            return self.dense[depth][safe] & live[:, None]
        ptr = self.ptr[depth]
        starts = ptr[safe]
        counts = torch.where(live, ptr[safe + 1] - starts, torch.zeros_like(starts))
        rows = torch.repeat_interleave(torch.arange(nodes.shape[0], device=nodes.device), counts)
        first = torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
        child = torch.repeat_interleave(starts, counts) + torch.arange(rows.shape[0], device=nodes.device) - first
        mask = torch.zeros(nodes.shape[0], vocab, dtype=torch.bool, device=nodes.device)
        mask[rows, self.code[depth][child]] = True
        return mask

    def child(self, depth: int, nodes: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """Node id at depth + 1 (a leaf id after the last depth) of (node, code); -1 where there is none."""
        keys = self.key[depth]
        query = nodes.clamp(min=0) * self.slot_vocab_sizes[depth] + codes
        idx = torch.searchsorted(keys, query).clamp(max=max(keys.shape[0] - 1, 0))
        found = (nodes >= 0) & (keys.shape[0] > 0) & (keys[idx] == query)
        return torch.where(found, idx, torch.full_like(idx, -1))

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """Leaf id of each full code tuple [M, L] (-1 when it is no item's code)."""
        nodes = torch.zeros(codes.shape[0], dtype=torch.long, device=codes.device)
        for depth in range(self.depth):
            nodes = self.child(depth, nodes, codes[:, depth].long())
        return nodes


def unique_rows(codes: torch.Tensor, slot_vocab_sizes: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """torch.unique(codes, dim=0, return_inverse=True) (rows sorted lexicographically), through one int64 key per
    row (mixed radix over the slot vocab sizes) when the sizes' product fits: a 1-D unique of N keys instead of
    the row-wise one, whose sort buffers were most of a catalog's peak memory at millions of items."""
    if math.prod(slot_vocab_sizes) >= 2 ** 62:
        return torch.unique(codes, dim=0, return_inverse=True)
    key = torch.zeros(codes.shape[0], dtype=torch.long)
    for k, vocab in enumerate(slot_vocab_sizes):
        key.mul_(vocab).add_(codes[:, k])
    keys, inverse = torch.unique(key, sorted=True, return_inverse=True)
    del key
    leaf_codes = torch.empty(len(keys), len(slot_vocab_sizes), dtype=torch.long)
    for k in reversed(range(len(slot_vocab_sizes))):
        leaf_codes[:, k] = keys % slot_vocab_sizes[k]
        keys = keys // slot_vocab_sizes[k]
    return leaf_codes, inverse


def build_trie(item_codes: torch.Tensor, slot_vocab_sizes: list[int], dense_limit: int = DENSE_MASK_LIMIT) -> CodeTrie:
    """Trie of the catalog's code rows [N, L]; rows may repeat (collisions map to several items)."""
    codes = item_codes.long().cpu()
    if codes.ndim != 2 or codes.shape[1] != len(slot_vocab_sizes):
        raise ValueError(f"item codes must be [N, {len(slot_vocab_sizes)}] for slot vocab sizes "
                         f"{slot_vocab_sizes}, got shape {tuple(codes.shape)}")
    if codes.shape[0] == 0:
        raise ValueError("cannot build a trie over an empty catalog")
    for k, vocab in enumerate(slot_vocab_sizes):
        bad = (codes[:, k] < 0) | (codes[:, k] >= vocab)
        if bad.any():
            row = int(bad.nonzero()[0])
            raise ValueError(f"item code row {row} slot {k} = {int(codes[row, k])} outside [0, {vocab})")
    leaf_codes, item_leaf = unique_rows(codes, slot_vocab_sizes)  # lexicographically sorted
    order = torch.argsort(item_leaf, stable=True)
    leaf_ptr = torch.zeros(leaf_codes.shape[0] + 1, dtype=torch.long)
    leaf_ptr[1:] = torch.cumsum(torch.bincount(item_leaf, minlength=leaf_codes.shape[0]), 0)

    n_rows, depth = leaf_codes.shape
    parent = torch.zeros(n_rows, dtype=torch.long)  # node id at the current depth of each leaf row
    ptrs, child_codes, keys, dense = [], [], [], []
    for k in range(depth):
        new = torch.ones(n_rows, dtype=torch.bool)
        if n_rows > 1:
            new[1:] = (leaf_codes[1:, : k + 1] != leaf_codes[:-1, : k + 1]).any(dim=1)
        node_next = torch.cumsum(new.long(), 0) - 1
        n_nodes = int(parent.max()) + 1
        child_parent, child_code = parent[new], leaf_codes[new, k]
        ptr = torch.zeros(n_nodes + 1, dtype=torch.long)
        ptr[1:] = torch.cumsum(torch.bincount(child_parent, minlength=n_nodes), 0)
        vocab = slot_vocab_sizes[k]
        ptrs.append(ptr)
        child_codes.append(child_code)
        keys.append(child_parent * vocab + child_code)
        if n_nodes * vocab <= dense_limit:
            mask = torch.zeros(n_nodes, vocab, dtype=torch.bool)
            mask[child_parent, child_code] = True
            dense.append(mask)
        else:
            dense.append(None)
        parent = node_next
    return CodeTrie(list(slot_vocab_sizes), ptrs, child_codes, keys, leaf_codes, leaf_ptr, order, item_leaf, dense)


def python_trie(item_codes) -> dict:
    """Reference: nested dicts code -> subtree; a leaf holds the list of catalog rows with that code tuple."""
    root: dict = {}
    for row, codes in enumerate(item_codes.tolist() if hasattr(item_codes, "tolist") else item_codes):
        node = root
        for c in codes[:-1]:
            node = node.setdefault(int(c), {})
        node.setdefault(int(codes[-1]), []).append(row)
    return root
