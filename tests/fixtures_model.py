"""Real user sequences (MovieLens 100K) with seeded random item codes, and row layouts for model tests.

Codes do not affect the invariances under test (padding side, packing, causality), so each item gets a random
but seeded code tuple; the sequences themselves (lengths, repeats, order) are real.
"""
from typing import List, Sequence

import numpy as np
import pandas as pd
import pytest
import torch

MODEL_SLOTS = [16, 12, 10, 7]  # distinct sizes so slot offsets and -inf padding are exercised
MODEL_TEXT_DIM = 6


def model_config(head: str = "parallel", text_dim: int = 0, attention: str = "sdpa", slot_vocab_sizes=MODEL_SLOTS,
                 tied: bool = True, behavior=None, **backbone):
    """A code model (recipe `code`, or `code_text` with text_dim > 0, uncentered) of the given head; `behavior`:
    None or {"target": bool}; other keys are backbone overrides."""
    from recgpt.model import ItemCodeDecoderConfig

    base = dict(n_layers=2, d_model=32, n_heads=4, d_ff=64, dropout=0.0, max_items=64, attention=attention)
    base.update(backbone)
    return ItemCodeDecoderConfig.from_recipe(
        "code_text" if text_dim else "code", slot_vocab_sizes, embed_dim=text_dim, center_text=False,
        codes={"head": head, "tie_embeddings": tied}, behavior=behavior, **base)


def make_model(head: str = "parallel", text_dim: int = 0, attention: str = "sdpa", seed: int = 0, **kw):
    from recgpt.model import ItemCodeDecoder

    torch.manual_seed(seed)
    return ItemCodeDecoder(model_config(head, text_dim, attention, **kw)).eval()


class UserSeq:
    """One user's items as codes Long[n, L] and text embeddings Float[n, text_dim] (seeded per item)."""

    def __init__(self, codes: torch.Tensor, text: torch.Tensor):
        self.codes, self.text = codes, text

    def __len__(self):
        return len(self.codes)


def layout(users: Sequence[UserSeq], rows: Sequence[Sequence[int]], width: int, left: bool = False):
    """Put users into rows: rows[r] lists user indices packed in row r (segments 1, 2, ...), padded to width
    items on the right (or left). Returns codes, item_pos, segment, text_emb and where[u] = (row, first slot)."""
    n_slots, text_dim = users[0].codes.shape[1], users[0].text.shape[1]
    codes = torch.full((len(rows), width, n_slots), 999, dtype=torch.long)  # garbage at padding on purpose
    item_pos = torch.full((len(rows), width), 777, dtype=torch.long)
    segment = torch.zeros(len(rows), width, dtype=torch.long)
    text = torch.full((len(rows), width, text_dim), 5.0)
    where = {}
    for r, members in enumerate(rows):
        used = sum(len(users[u]) for u in members)
        assert used <= width
        start = width - used if left else 0
        for seg, u in enumerate(members, start=1):
            n = len(users[u])
            codes[r, start:start + n] = users[u].codes
            item_pos[r, start:start + n] = torch.arange(n)
            segment[r, start:start + n] = seg
            text[r, start:start + n] = users[u].text
            where[u] = (r, start)
            start += n
    return codes, item_pos, segment, text, where


DENSE_STATE = {"query": "state", "pool": 1, "item_tower": True, "negatives": "in_batch", "catalog_negatives": 0,
               "popularity": "none"}  # a dense head whose query is a projection of the state alone


def dense_decoder(slot_vocab_sizes, dim, seed=0, randomize=("tower",), dense=None, codes=(), score_weights=None,
                  **backbone):
    """A real 1 x 32 decoder with a dense head over `dim`-wide text embeddings (no text input, uncentered; `dense`
    overrides DENSE_STATE) and a lookup code head (codes=None: none), in eval mode; the named parts of the head
    (tower: its last layer, query, popularity_scale) moved off their zero start, as if trained."""
    from recgpt.model import ItemCodeDecoder, ItemCodeDecoderConfig

    torch.manual_seed(seed)
    base = dict(n_layers=1, d_model=32, n_heads=4, d_ff=64, dropout=0.0, max_items=20, text_input=False,
                center_text=False)
    base.update(backbone)
    config = ItemCodeDecoderConfig.from_recipe(
        "hybrid", slot_vocab_sizes, embed_dim=dim, score_weights=score_weights,
        dense={**DENSE_STATE, **(dense or {})}, codes=None if codes is None else {"embedding": "lookup", **dict(codes)},
        **base)
    model = ItemCodeDecoder(config).eval()
    head = model.dense_head
    parts = {"tower": head.tower[-1] if head.tower is not None else None, "query": head.query,
             "popularity_scale": getattr(head, "popularity_scale", None)}
    for name in randomize:
        for p in parts[name].parameters():
            torch.nn.init.normal_(p, std=0.3)
    return model


@pytest.fixture(scope="session")
def catalog_emb(real_embeddings):
    """Float[N, D] MiniLM embeddings of the real ml-100k items."""
    return torch.from_numpy(real_embeddings.vectors.astype(np.float32))


@pytest.fixture
def one_thread():
    """Model tests use tiny matrices: one thread is as fast and does not thrash when the shared cores are busy."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def ml100k_users(data_root) -> List[UserSeq]:
    """Eight real MovieLens-100K users (time order, stable tie-break), cut to 7, 10, ..., 28 items."""
    inter = pd.read_csv(data_root / "ml-100k" / "ml-100k.inter", sep="\t")
    inter.columns = [c.split(":")[0] for c in inter.columns]
    inter = inter.sort_values(["user_id", "timestamp"], kind="stable")
    items = inter["item_id"].unique()
    rng = np.random.default_rng(0)
    item_codes = {i: rng.integers(0, MODEL_SLOTS) for i in items}
    item_text = {i: rng.standard_normal(MODEL_TEXT_DIM).astype(np.float32) for i in items}
    users = []
    for _, group in list(inter.groupby("user_id", sort=True))[:8]:
        ids = group["item_id"].tolist()[: 7 + 3 * len(users)]  # lengths 7, 10, ..., 28: unequal on purpose
        users.append(UserSeq(torch.tensor(np.stack([item_codes[i] for i in ids])),
                             torch.tensor(np.stack([item_text[i] for i in ids]))))
    return users
