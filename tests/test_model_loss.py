"""Next-item targets and the token-summed loss: hand computation, padding ignored, layout independence."""
import math

import pytest
import torch

from fixtures_model import MODEL_SLOTS, layout, make_model
from recgpt.model import next_item_loss, shift_targets

pytestmark = pytest.mark.usefixtures("one_thread")


def test_shift_targets_stays_inside_each_user():
    codes = torch.arange(7 * 2).view(1, 7, 2)
    segment = torch.tensor([[0, 1, 1, 1, 2, 2, 0]])
    item_pos = torch.tensor([[3, 0, 1, 2, 0, 1, 2]])
    next_codes, mask = shift_targets(codes, segment, item_pos)
    assert mask.tolist() == [[False, True, True, False, True, False, False]]
    assert torch.equal(next_codes[0, 1], codes[0, 2]) and torch.equal(next_codes[0, 4], codes[0, 5])
    assert (next_codes[~mask] == 0).all()
    gap = item_pos.clone()
    gap[0, 2] = 5  # item 2 is not item 1's successor (nor item 3's predecessor): no target on either side
    assert shift_targets(codes, segment, gap)[1].tolist() == [[False, False, False, False, True, False, False]]


def test_loss_equals_hand_computation_on_a_tiny_batch():
    sizes = [3, 2]
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(1, 6, 2, 3, generator=g)
    logits[:, :, 1, 2] = float("-inf")  # slot 1 has 2 codes
    codes = torch.tensor([[[0, 1], [2, 0], [1, 1], [2, 1], [0, 0], [9, 9]]])
    segment = torch.tensor([[1, 1, 1, 2, 2, 0]])
    item_pos = torch.tensor([[0, 1, 2, 0, 1, 0]])
    loss_sum, n_tokens = next_item_loss(logits, codes, item_pos, segment)
    expected = 0.0
    for s, t in [(0, 1), (1, 2), (3, 4)]:  # (item, its next item of the same user)
        for k in range(2):
            row = logits[0, s, k, : sizes[k]].tolist()
            expected += math.log(sum(math.exp(x) for x in row)) - row[codes[0, t, k]]
    assert n_tokens.item() == 6
    assert loss_sum.item() == pytest.approx(expected, rel=1e-6)


def test_loss_ignores_padding_and_last_items(ml100k_users):
    model = make_model("parallel")
    codes, item_pos, segment, _, _ = layout(ml100k_users, [[0, 1], [2]], width=20, left=True)
    with torch.no_grad():
        logits = model(codes, item_pos, segment).logits
    loss_sum, n_tokens = next_item_loss(logits, codes, item_pos, segment)
    assert n_tokens.item() == (7 - 1 + 10 - 1 + 13 - 1) * 4
    noisy_logits, noisy_codes = logits.clone(), codes.clone()
    no_target = ~shift_targets(codes, segment, item_pos)[1]
    noisy_logits[no_target] = torch.randn_like(noisy_logits[no_target])
    noisy_codes[segment == 0] = 123
    again = next_item_loss(noisy_logits, noisy_codes, item_pos, segment)
    assert torch.isfinite(loss_sum) and again[0].item() == pytest.approx(loss_sum.item(), rel=1e-6)


@pytest.mark.parametrize("head", ["parallel", "autoregressive"])
def test_loss_sum_is_the_same_for_every_layout(ml100k_users, head):
    model = make_model(head, seed=2)
    results = []
    for rows, width, left in [([[u] for u in range(6)], 22, False), ([[u] for u in range(6)], 22, True),
                              ([[0, 5], [1, 4], [2, 3]], 35, False)]:
        codes, item_pos, segment, _, _ = layout(ml100k_users, rows, width, left)
        with torch.no_grad():
            results.append(next_item_loss(model(codes, item_pos, segment).logits, codes, item_pos, segment))
    for loss_sum, n_tokens in results[1:]:
        assert n_tokens == results[0][1]
        assert loss_sum.item() == pytest.approx(results[0][0].item(), rel=1e-5)
    assert results[0][1].item() == sum(n - 1 for n in (7, 10, 13, 16, 19, 22)) * len(MODEL_SLOTS)
