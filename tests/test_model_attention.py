"""The block-causal mask rule, and FlexAttention (fast path) against the SDPA reference."""
import warnings

import pytest
import torch

from fixtures_model import layout, make_model
from recgpt.model.attention import block_causal_mask, flex_block_attention, flex_block_mask, sdpa_attention

pytestmark = pytest.mark.usefixtures("one_thread")


def brute_force_mask(item_pos, segment, n_slots):
    batch, n_items = segment.shape
    t = n_items * n_slots
    mask = torch.zeros(batch, t, t, dtype=torch.bool)
    for b in range(batch):
        for i in range(t):
            for j in range(t):
                s, s2 = i // n_slots, j // n_slots
                seg, seg2 = int(segment[b, s]), int(segment[b, s2])
                mask[b, i, j] = (seg == seg2 != 0 and item_pos[b, s2] <= item_pos[b, s]) or i == j
    return mask


def test_mask_matches_rule_on_packed_and_padded_rows():
    segment = torch.tensor([[1, 1, 1, 2, 2, 0], [0, 0, 1, 1, 1, 1]])
    item_pos = torch.tensor([[0, 1, 2, 0, 1, 9], [5, 5, 0, 1, 2, 3]])
    mask = block_causal_mask(item_pos, segment, 3)
    assert torch.equal(mask, brute_force_mask(item_pos, segment, 3))
    # the three tokens of one item see each other; users never see each other
    assert mask[0, 3:6, 3:6].all() and not mask[0, 9:12, 0:9].any()


def _qkv(mask_shape_batch, t, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(mask_shape_batch, 2, t, 8, generator=g) for _ in range(3)]


def test_flex_attention_matches_sdpa_kernel(ml100k_users):
    codes, item_pos, segment, _, _ = layout(ml100k_users, [[0, 1], [2], [3, 4, 5]], width=60)
    n_slots = codes.shape[-1]
    q, k, v = _qkv(3, 60 * n_slots)
    ref = sdpa_attention(q, k, v, block_causal_mask(item_pos, segment, n_slots))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns that eager flex_attention is unfused
        fast = flex_block_attention(q, k, v, flex_block_mask(item_pos, segment, n_slots))
    assert torch.allclose(fast, ref, atol=1e-5)


def test_flex_model_matches_sdpa_model(ml100k_users):
    codes, item_pos, segment, text, _ = layout(ml100k_users, [[0, 1, 2], [3, 4], [5]], width=50, left=True)
    for head in ("parallel", "autoregressive"):
        ref = make_model(head, text_dim=6, attention="sdpa", seed=1)
        fast = make_model(head, text_dim=6, attention="flex", seed=1)
        fast.load_state_dict(ref.state_dict())
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            a = ref(codes, item_pos, segment, text_emb=text)
            b = fast(codes, item_pos, segment, text_emb=text)
        real = segment != 0
        assert torch.allclose(a.hidden[real], b.hidden[real], atol=1e-5)
        assert torch.allclose(a.logits[real].nan_to_num(neginf=0), b.logits[real].nan_to_num(neginf=0), atol=1e-5)


@pytest.mark.gpu
@pytest.mark.slow
def test_compiled_flex_matches_sdpa_on_cuda(ml100k_users):
    codes, item_pos, segment, text, _ = layout(ml100k_users, [[0, 1, 2, 7], [3, 4, 5], [6]], width=64)
    codes, item_pos, segment, text = (t.cuda() for t in (codes, item_pos, segment, text))
    ref = make_model("parallel", text_dim=6, attention="sdpa", seed=1).cuda()
    fast = make_model("parallel", text_dim=6, attention="flex", seed=1).cuda()
    fast.load_state_dict(ref.state_dict())
    with torch.no_grad():
        a = ref(codes, item_pos, segment, text_emb=text).hidden
        b = fast(codes, item_pos, segment, text_emb=text).hidden
    real = segment != 0
    assert torch.allclose(a[real], b[real], atol=1e-4)
