"""Mechanism tests of the quantizers and collision resolution (synthetic inputs: they test arithmetic)."""
import itertools

import numpy as np
import pytest
import torch

from recgpt.tokenizer.collisions import (CollisionError, code_to_items, collision_stats, rank_within_tuple,
                                         rank_within_tuple_reference, resolve_collisions)
from recgpt.tokenizer.fsq import FSQ, FSQAutoencoder
from recgpt.tokenizer.rq import RQVAE, nearest, residual_encode, rotate_to, sinkhorn_assign


@pytest.mark.parametrize("levels", [[8, 8, 8, 6, 5], [3, 4], [2, 7, 5]])
def test_fsq_codes_in_range_and_round_trip(levels):
    fsq = FSQ(levels)
    z = torch.randn(4000, len(levels)) * 4  # wide: saturates the tanh bound on both sides
    zq = fsq(z)
    idx = fsq.codes_to_indices(zq)
    assert idx.min() >= 0 and idx.max() < int(np.prod(levels)) == fsq.codebook_size
    assert torch.equal(fsq.indices_to_codes(idx), zq)
    # every level value is reachable and none beyond: exactly L distinct values per dimension
    for d, level in enumerate(levels):
        assert len(torch.unique(zq[:, d])) == level
    everything = torch.arange(fsq.codebook_size)
    assert torch.equal(fsq.codes_to_indices(fsq.indices_to_codes(everything)), everything)


def test_fsq_matches_reference_digits():
    # reference: index = mixed-radix number of the per-dimension bucket digits (first dimension fastest)
    levels = [8, 6, 5]
    fsq = FSQ(levels)
    for digits in itertools.product(*[range(level) for level in levels]):
        zhat = torch.tensor([(d - level // 2) / (level // 2) for d, level in zip(digits, levels)])
        expected = digits[0] + levels[0] * (digits[1] + levels[1] * digits[2])
        assert fsq.codes_to_indices(zhat[None])[0].item() == expected


def test_fsq_straight_through_gradient():
    fsq = FSQ([8, 5])
    z = torch.randn(64, 2, requires_grad=True)
    fsq(z).sum().backward()
    assert z.grad is not None and (z.grad.abs() > 0).all()  # round() alone would give zero gradient


@pytest.mark.parametrize("encoder", ["reshape", "mlp"])
def test_fsq_autoencoder_decode_of_codes_equals_forward(encoder):
    torch.manual_seed(0)
    model = FSQAutoencoder(dim=48, n_codes=4, levels=[8, 6, 5], encoder=encoder, hidden=32).eval()
    x = torch.randn(100, 48)
    recon, codes, _ = model(x)
    assert codes.shape == (100, 4)
    assert torch.equal(model.encode(x), codes)
    assert torch.allclose(model.decode(codes), recon, atol=1e-6)


def test_reshape_encoder_needs_divisible_dim():
    with pytest.raises(ValueError, match="divisible"):
        FSQAutoencoder(dim=50, n_codes=4, levels=[8, 5], encoder="reshape")


def test_residual_encode_matches_brute_force():
    torch.manual_seed(0)
    books = torch.randn(3, 16, 8)
    x = torch.randn(200, 8)
    codes, total = residual_encode(x, books)
    residual = x.clone()
    for level in range(3):
        expect = torch.cdist(residual, books[level]).argmin(-1)
        assert torch.equal(codes[:, level], expect)
        residual = residual - books[level][expect]
    assert torch.allclose(total, x - residual, atol=1e-5)
    assert torch.equal(nearest(x, books[0]), torch.cdist(x, books[0]).argmin(-1))


def test_rotation_trick_value_and_gradient():
    e = torch.randn(32, 8, requires_grad=True)
    q = torch.randn(32, 8)
    out = rotate_to(e, q)
    assert torch.allclose(out, q, atol=1e-5)  # forward value is the quantized vector
    out.pow(2).sum().backward()
    assert (e.grad.abs().sum(-1) > 0).all()


@pytest.mark.parametrize("rotation", [False, True])
def test_rqvae_gradients_reach_encoder_and_codebooks(rotation):
    torch.manual_seed(0)
    model = RQVAE(dim=16, n_codes=2, codebook_size=8, latent_dim=4, hidden=16, rotation_trick=rotation)
    x = torch.randn(64, 16)
    recon, codes, aux = model(x)
    ((recon - x).pow(2).mean() + aux).backward()
    assert model.encoder[0].weight.grad.abs().sum() > 0
    assert model.codebooks.grad.abs().sum() > 0


def test_sinkhorn_balances_where_nearest_piles_up():
    torch.manual_seed(0)
    codebook = torch.randn(8, 4)
    x = codebook[3] + 0.05 * torch.randn(256, 4)  # every row nearest to code 3
    assert (nearest(x, codebook) == 3).all()
    counts = torch.bincount(sinkhorn_assign(torch.cdist(x, codebook).pow(2), iters=50), minlength=8)
    assert counts.max() <= 2 * 256 // 8 and (counts > 0).all()
    # on rows spread over the codes, balancing keeps most nearest-code choices
    y = codebook.repeat(32, 1) + 0.01 * torch.randn(256, 4)
    agree = (sinkhorn_assign(torch.cdist(y, codebook).pow(2), iters=50) == nearest(y, codebook)).float().mean()
    assert agree > 0.9


def test_dead_codes_restart_at_batch_residuals():
    torch.manual_seed(0)
    model = RQVAE(dim=16, n_codes=2, codebook_size=8, latent_dim=4, hidden=16, dead_code_steps=2)
    with torch.no_grad():
        model.codebooks[0, 5:] = 1e3  # three codes no latent can reach
    x = torch.randn(64, 16)
    for _ in range(4):
        model(x)
        model.after_step()
    assert model.restarts[0] >= 3
    with torch.no_grad():
        latents = model.encoder(model.standardize(x))
    assert model.codebooks[0, 5:].abs().max() < 1e2  # moved to where the latents are
    assert set(nearest(latents, model.codebooks[0]).tolist()) & {5, 6, 7}  # and chosen again
    off = RQVAE(dim=16, n_codes=2, codebook_size=8, latent_dim=4, hidden=16, dead_code_steps=0)
    off(x)
    off.after_step()
    assert off.restarts == [0, 0]


def test_rank_within_tuple_matches_reference():
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 3, size=(500, 2))  # 9 tuples: many collisions
    assert np.array_equal(rank_within_tuple(codes), rank_within_tuple_reference(codes))


def test_resolve_collisions_unique_and_capacity_error():
    codes = np.array([[1, 2], [1, 2], [0, 0], [1, 2], [0, 0]])
    out = resolve_collisions(codes, dedup_size=3)
    assert out[:, -1].tolist() == [0, 1, 0, 2, 1]  # k-th item on a tuple gets k, in row order
    assert len(np.unique(out, axis=0)) == len(out)
    stats = collision_stats(codes)
    assert stats["n_unique"] == 2 and stats["collision_rate"] == pytest.approx(3 / 5)
    assert stats["max_items_per_tuple"] == 3
    with pytest.raises(CollisionError, match=r"3 items share the code tuple \[1, 2\].*dedup_size=2.*'a', 'b', 'd'"):
        resolve_collisions(codes, dedup_size=2, item_ids=["a", "b", "c", "d", "e"])


def test_code_to_items_keeps_every_item():
    codes = np.array([[1, 2], [1, 2], [0, 0], [1, 2]])
    groups = code_to_items(codes)
    assert groups == {(1, 2): [0, 1, 3], (0, 0): [2]}
    assert sorted(sum(groups.values(), [])) == list(range(len(codes)))
