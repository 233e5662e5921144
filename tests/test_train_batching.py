"""Batching, sharding and the schedule: mechanism tests (sequence lengths from the real ml-100k users)."""
import math

import numpy as np
import pandas as pd
import pytest
import torch

from recgpt.train.batching import collate, padded_reference, plan_epoch
from recgpt.train.inputs import MicroBatchStream, SequenceSource, TrainingInputs
from recgpt.train.optim import lr_factor

N_SLOTS = 4


@pytest.fixture(scope="module")
def ml100k_sequences(data_root) -> list:
    inter = pd.read_csv(data_root / "ml-100k" / "ml-100k.inter", sep="\t")
    inter.columns = [c.split(":")[0] for c in inter.columns]
    inter = inter.sort_values(["user_id", "timestamp"], kind="stable")
    index = {item: i for i, item in enumerate(sorted(inter.item_id.unique()))}
    return [[index[i] for i in group.item_id] for _, group in inter.groupby("user_id", sort=False)]


def _targets(lengths, row_items):
    """Reference: next-item targets of every user once cut into windows of row_items."""
    total = 0
    for n in lengths:
        for start in range(0, n, row_items):
            w = min(row_items, n - start)
            total += (w - 1) * N_SLOTS if w >= 2 else 0
    return total


@pytest.mark.parametrize("mode", ["pack", "bucket"])
def test_plan_covers_every_target_once_within_budget(ml100k_sequences, mode):
    lengths = np.array([len(s) for s in ml100k_sequences])
    row_items, budget = 64, 4096
    plan = plan_epoch(lengths, mode, row_items, budget, N_SLOTS, seed=0, epoch=0)
    assert plan.batch_targets(N_SLOTS).sum() == _targets(lengths, row_items)
    pieces = sorted(zip(plan.piece_seq.tolist(), plan.piece_start.tolist()))
    assert len(pieces) == len(set(pieces))  # no window twice
    for b in range(plan.n_batches):
        rows = plan.batch_pieces(b)
        widths = [sum(n for _, _, n in row) for row in rows]
        assert max(widths) <= row_items
        assert len(rows) * max(widths) * N_SLOTS <= budget  # padded size never exceeds the token budget
    if mode == "bucket":
        assert all(len(row) == 1 for b in range(plan.n_batches) for row in plan.batch_pieces(b))
    else:  # packing fills rows: far less padding than one user per row
        real = sum(plan.piece_len)
        assert real / ((len(plan.row_ptr) - 1) * row_items) > 0.9


def test_plan_is_seeded_and_changes_each_epoch(ml100k_sequences):
    lengths = [len(s) for s in ml100k_sequences]
    a = plan_epoch(lengths, "pack", 64, 4096, N_SLOTS, seed=1, epoch=3)
    b = plan_epoch(lengths, "pack", 64, 4096, N_SLOTS, seed=1, epoch=3)
    c = plan_epoch(lengths, "pack", 64, 4096, N_SLOTS, seed=1, epoch=4)
    assert np.array_equal(a.piece_seq, b.piece_seq) and np.array_equal(a.batch_ptr, b.batch_ptr)
    assert not np.array_equal(a.piece_seq, c.piece_seq)


def test_packed_batch_gives_the_loss_of_the_padded_reference(ml100k_sequences):
    from recgpt.model import ItemCodeDecoder, ItemCodeDecoderConfig, next_item_loss

    torch.manual_seed(0)
    seqs = [s[:n] for s, n in zip(ml100k_sequences[:6], [5, 17, 2, 9, 30, 11])]  # unequal lengths
    codes = torch.randint(0, 16, (1682, N_SLOTS), dtype=torch.int32)
    rows = [[(0, 0, 5), (1, 0, 17), (2, 0, 2)], [(3, 0, 9), (4, 0, 30), (5, 0, 11)]]
    packed = collate(rows, dict(enumerate(seqs)), codes)
    padded = padded_reference(seqs, codes)
    assert packed["codes"].shape[1] == 50 and padded["codes"].shape[1] == 30  # as wide as needed, no wider
    model = ItemCodeDecoder(ItemCodeDecoderConfig.from_recipe(
        "code", [16] * N_SLOTS, n_layers=2, d_model=32, n_heads=4, d_ff=64, dropout=0.0, max_items=64)).eval()
    with torch.no_grad():
        sums = [next_item_loss(model(**b).logits, b["codes"], b["item_pos"], b["segment"]) for b in (packed, padded)]
    assert int(sums[0][1]) == int(sums[1][1]) == sum(len(s) - 1 for s in seqs) * N_SLOTS
    torch.testing.assert_close(sums[0][0], sums[1][0], rtol=1e-5, atol=1e-4)


def test_ranks_get_disjoint_batches_and_agree_on_step_targets(ml100k_sequences):
    source = SequenceSource(ml100k_sequences)
    inputs = TrainingInputs(source, source, torch.zeros((1682, N_SLOTS), dtype=torch.int32), [16] * N_SLOTS, "c", "t")
    streams = [MicroBatchStream(source, inputs, "pack", 64, 4096, seed=0, rank=r, world=2) for r in range(2)]
    seen, targets = [], []
    for _ in range(streams[0].plan(0).n_batches // 2):
        got = [s.next() for s in streams]
        assert got[0][1] == got[1][1]  # every rank knows the step's global target count
        local = [int(((b["segment"][:, 1:] == b["segment"][:, :-1]) & (b["segment"][:, 1:] > 0)).sum()) * N_SLOTS
                 for b, _ in got]
        assert sum(local) == got[0][1]
        seen.append([s.index for s in streams])
        targets.append(got[0][1])
    plan = streams[0].plan(0)
    assert sum(targets) == plan.batch_targets(N_SLOTS)[:2 * len(targets)].sum()
    streams[0].next()  # past the last full round: next epoch, reshuffled
    assert streams[0].epoch == 1 and streams[0].index == 1


def test_warmup_then_cosine_to_the_floor():
    factors = [lr_factor(s, warmup_steps=10, max_steps=110, min_lr_ratio=0.1) for s in range(111)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[10:], factors[11:]))  # decays monotonically after warmup
    assert factors[60] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert factors[110] == pytest.approx(0.1)


@pytest.mark.parametrize("head", ["parallel", "autoregressive"])
def test_training_objective_matches_the_reference_loss_and_gradients(ml100k_sequences, head):
    from recgpt.model import ItemCodeDecoder, ItemCodeDecoderConfig, next_item_loss
    from recgpt.train.objective import NextItemObjective

    torch.manual_seed(0)
    sizes = [16, 16, 16, 5]  # a small last slot: the fast path uses each slot's own vocabulary
    codes = torch.stack([torch.randint(0, v, (1682,)) for v in sizes], 1).to(torch.int32)
    seqs = [s[:n] for s, n in zip(ml100k_sequences[:5], [5, 17, 2, 9, 30])]
    batch = collate([[(0, 0, 5), (1, 0, 17), (2, 0, 2)], [(3, 0, 9), (4, 0, 30)]], dict(enumerate(seqs)), codes)
    model = ItemCodeDecoder(ItemCodeDecoderConfig.from_recipe(
        "code", sizes, n_layers=1, d_model=32, n_heads=4, d_ff=64, dropout=0.0, max_items=64, codes={"head": head}))
    fast = NextItemObjective(model)(**batch)
    fast[0].backward()
    fast_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    ref_sum, ref_n = next_item_loss(model(**batch).logits, batch["codes"], batch["item_pos"], batch["segment"])
    ref_sum.backward()
    assert int(fast[1]) == int(ref_n)
    torch.testing.assert_close(fast[0], ref_sum.float(), rtol=1e-5, atol=1e-4)
    for got, want in zip(fast_grads, (p.grad for p in model.parameters())):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
