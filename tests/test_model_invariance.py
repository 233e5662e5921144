"""A user's outputs depend on that user's items only: not on padding side, batch mates, packing, or later items."""
import pytest
import torch

from fixtures_model import layout, make_model

pytestmark = pytest.mark.usefixtures("one_thread")

TOL = 1e-5


def user_outputs(model, users, rows, width, left=False, text=False):
    codes, item_pos, segment, text_emb, where = layout(users, rows, width, left)
    with torch.no_grad():
        out = model(codes, item_pos, segment, text_emb=text_emb if text else None)
    per_user = {}
    for u, (r, start) in where.items():
        n = len(users[u])
        per_user[u] = (out.hidden[r, start:start + n], out.logits[r, start:start + n].nan_to_num(neginf=-1e9))
    return per_user


@pytest.mark.parametrize("head,text", [("parallel", False), ("autoregressive", True)])
def test_outputs_same_alone_batched_left_right_padded_and_packed(ml100k_users, head, text):
    model = make_model(head, text_dim=6 if text else 0)
    users = ml100k_users
    alone = {u: user_outputs(model, users, [[u]], len(users[u]), text=text)[u] for u in range(len(users))}
    layouts = {
        "right-padded batch": ([[0], [3], [7]], 30, False),
        "left-padded batch": ([[0], [3], [7]], 30, True),
        "packed rows": ([[0, 1, 2], [3, 4], [5, 6], [7]], 50, False),
        "packed, left-padded": ([[7, 0], [1, 2, 3], [4, 5], [6]], 50, True),
    }
    for name, (rows, width, left) in layouts.items():
        got = user_outputs(model, users, rows, width, left, text)
        for u, (hidden, logits) in got.items():
            assert torch.allclose(hidden, alone[u][0], atol=TOL), f"{name}: hidden of user {u} changed"
            assert torch.allclose(logits, alone[u][1], atol=TOL), f"{name}: logits of user {u} changed"


@pytest.mark.parametrize("head", ["parallel", "autoregressive"])
def test_changing_a_later_item_never_changes_earlier_outputs(ml100k_users, head):
    model = make_model(head, text_dim=6)
    codes, item_pos, segment, text, where = layout(ml100k_users, [[1, 2, 3], [4]], width=40)
    r, start = where[2]
    j = start + 5  # the 6th item of user 2, packed between users 1 and 3
    changed_codes, changed_text = codes.clone(), text.clone()
    changed_codes[r, j] = (changed_codes[r, j] + 1) % torch.tensor([7, 7, 7, 7])
    changed_text[r, j] += 1.0
    with torch.no_grad():
        a = model(codes, item_pos, segment, text_emb=text)
        b = model(changed_codes, item_pos, segment, text_emb=changed_text)
    same = torch.ones_like(segment, dtype=torch.bool)
    same[r, j:start + len(ml100k_users[2])] = False  # item j and the later items of the same user may change
    assert torch.allclose(a.hidden[same], b.hidden[same], atol=TOL)
    assert not torch.allclose(a.hidden[r, j], b.hidden[r, j], atol=TOL)
    # logits at item s predict item s+1: with teacher forcing, item j-1's logits see item j's codes
    logits_same = same.clone()
    if head == "autoregressive":
        logits_same[r, j - 1] = False
        assert not torch.allclose(a.logits[r, j - 1], b.logits[r, j - 1], atol=TOL)
    assert torch.allclose(a.logits[logits_same].nan_to_num(neginf=0), b.logits[logits_same].nan_to_num(neginf=0), atol=TOL)


def test_tokens_of_one_item_see_each_other(ml100k_users):
    model = make_model("parallel")
    codes, item_pos, segment, _, _ = layout(ml100k_users, [[2]], width=13)
    j = 4
    changed = codes.clone()
    changed[0, j, 3] = (changed[0, j, 3] + 1) % 7
    with torch.no_grad():
        a, b = model(codes, item_pos, segment).hidden, model(changed, item_pos, segment).hidden
    assert not torch.allclose(a[0, j, 0], b[0, j, 0], atol=TOL), "slot 0 of item j must see slot 3 of item j"
    assert torch.allclose(a[0, :j], b[0, :j], atol=TOL)


@pytest.mark.parametrize("head", ["parallel", "autoregressive"])
def test_history_state_is_the_last_item_whatever_the_padding(ml100k_users, head):
    model = make_model(head)
    users = ml100k_users
    right = layout(users, [[u] for u in range(4)], width=20)
    left = layout(users, [[u] for u in range(4)], width=20, left=True)
    state_right = model.history_state(*right[:3])
    state_left = model.history_state(*left[:3])
    assert state_right.shape == (4, 4, 32)
    assert torch.allclose(state_right, state_left, atol=TOL)
    with torch.no_grad():
        alone = model(users[3].codes[None], torch.arange(len(users[3]))[None], torch.ones(1, len(users[3]), dtype=torch.long))
    assert torch.allclose(state_right[3], alone.hidden[0, -1], atol=TOL)
    with pytest.raises(ValueError, match="no item with segment == 1"):
        model.history_state(right[0], right[1], torch.zeros_like(right[2]))
