"""Both heads learn: a few real MovieLens sequences, ~50 AdamW steps, the token-mean loss goes down."""
import pytest
import torch

from fixtures_model import layout, make_model
from recgpt.model import next_item_loss

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("head", ["parallel", "autoregressive"])
def test_head_trains(ml100k_users, head):
    torch.manual_seed(0)
    model = make_model(head, text_dim=6, dropout=0.1).train()
    codes, item_pos, segment, text, _ = layout(ml100k_users, [[0, 7], [1, 6], [2, 5], [3, 4]], width=41)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(50):
        loss_sum, n_tokens = next_item_loss(model(codes, item_pos, segment, text).logits, codes, item_pos, segment)
        loss = loss_sum / n_tokens
        optimizer.zero_grad()
        loss.backward()
        if not losses:
            missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
            assert not missing, f"parameters without gradient: {missing}"
        optimizer.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5, losses


def test_gradient_checkpointing_gives_the_same_gradients(ml100k_users):
    codes, item_pos, segment, _, _ = layout(ml100k_users, [[0, 3], [1, 2]], width=24)
    grads = []
    for checkpointing in (False, True):
        model = make_model("autoregressive", seed=4).train()
        if checkpointing:
            model.activation_checkpointing_enable()
            assert all(block.gradient_checkpointing for block in model.blocks)
        loss_sum, n_tokens = next_item_loss(model(codes, item_pos, segment).logits, codes, item_pos, segment)
        (loss_sum / n_tokens).backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    assert torch.allclose(grads[0], grads[1], atol=1e-6)
