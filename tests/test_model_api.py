"""Config, save/load, input checks, catalog scoring and the parameter budget of ItemCodeDecoder."""
import pytest
import torch
from transformers import AutoConfig, AutoModel

from fixtures_model import MODEL_SLOTS, layout, make_model
from recgpt.config import load_config
from recgpt.model import ItemCodeDecoder, ItemCodeDecoderConfig

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("head,text_dim,tied", [("parallel", 0, True), ("autoregressive", 6, False),
                                                ("autoregressive", 0, True)])
def test_save_and_from_pretrained_give_identical_logits(ml100k_users, tmp_path, head, text_dim, tied):
    model = make_model(head, text_dim=text_dim, seed=3, tied=tied)
    assert all(o.weight is e.weight for o, e in zip(model.head.out, model.code_embedding)) == tied
    if head == "autoregressive":
        assert all(p.weight is e.weight for p, e in zip(model.head.prefix_embedding, model.code_embedding)) == tied
    codes, item_pos, segment, text, _ = layout(ml100k_users, [[0, 1], [2]], width=20)
    text = text if text_dim else None
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file() and (tmp_path / "config.json").is_file()
    for loaded in (ItemCodeDecoder.from_pretrained(tmp_path), AutoModel.from_pretrained(tmp_path)):
        assert isinstance(loaded, ItemCodeDecoder) and loaded.config.codes.head == head
        assert loaded.config.slot_vocab_sizes == MODEL_SLOTS and loaded.config.text_dim == text_dim
        assert all(o.weight is e.weight for o, e in zip(loaded.head.out, loaded.code_embedding)) == tied
        if head == "autoregressive":
            assert all(p.weight is e.weight for p, e in zip(loaded.head.prefix_embedding, loaded.code_embedding)) == tied
        with torch.no_grad():
            assert torch.equal(model(codes, item_pos, segment, text).logits, loaded.eval()(codes, item_pos, segment, text).logits)
    assert AutoConfig.from_pretrained(tmp_path).model_type == "recgpt_item_decoder"


def test_from_recgpt_takes_the_typed_config():
    cfg = load_config("configs/tiny.yaml", ["model.codes.head=autoregressive", "model.text_input=true",
                                            "model.codes.tie_embeddings=false"])
    dec = ItemCodeDecoderConfig.from_recgpt(cfg.model, [256, 256, 256, 8], text_dim=384)
    assert dec.tie_word_embeddings is False
    assert (dec.n_layers, dec.d_model, dec.n_heads, dec.d_ff, dec.max_items) == (2, 64, 4, 128, 50)
    assert dec.codes.head == "autoregressive" and dec.text_dim == 384 and dec.slot_vocab_sizes == [256, 256, 256, 8]
    assert ItemCodeDecoderConfig.from_recgpt(load_config("configs/tiny.yaml").model, [8, 8], text_dim=384).text_dim == 0
    with pytest.raises(ValueError, match="text_dim"):
        ItemCodeDecoderConfig.from_recgpt(cfg.model, [8, 8], text_dim=0)
    with pytest.raises(ValueError, match="model.codes.head"):
        ItemCodeDecoderConfig.from_recipe("code", [4], codes={"head": "beam"})


def test_bad_inputs_raise_clear_errors(ml100k_users):
    model = make_model("parallel")
    codes, item_pos, segment, text, _ = layout(ml100k_users, [[0], [1]], width=12)
    too_far = item_pos.clone()
    too_far[1, 3] = 64
    with pytest.raises(ValueError, match=r"item_pos\[1, 3\] = 64 is outside \[0, max_items=64\)"):
        model(codes, too_far, segment)
    bad = codes.clone()
    bad[0, 2, 3] = MODEL_SLOTS[3]  # slot 3 has codes 0..6
    with pytest.raises(ValueError, match=r"codes\[0, 2\]"):
        model(bad, item_pos, segment)
    with pytest.raises(ValueError, match="text_emb"):
        model(codes, item_pos, segment, text_emb=text)
    with pytest.raises(ValueError, match="codes must be"):
        model(codes[..., :3], item_pos, segment)


def reference_scores(model, state, items):
    """Item by item, slot by slot: log p(item) = sum_k log p(c_k | c_0..c_{k-1})."""
    batch = state.shape[0]
    out = torch.zeros(batch, len(items))
    for n, item in enumerate(items):
        for k in range(len(item)):
            logp = model.next_code_logprobs(state, item[:k].expand(batch, k))
            assert logp.shape == (batch, MODEL_SLOTS[k])
            out[:, n] += logp[:, item[k]]
    return out


@pytest.mark.parametrize("head", ["parallel", "autoregressive"])
def test_score_items_matches_slot_by_slot_reference(ml100k_users, head):
    model = make_model(head, seed=5)
    state = model.history_state(*layout(ml100k_users, [[u] for u in range(3)], width=16)[:3])
    g = torch.Generator().manual_seed(0)
    items = torch.stack([torch.randint(0, v, (40,), generator=g) for v in MODEL_SLOTS], dim=1)
    items[20:30, :2] = items[0, :2]  # shared prefixes, as in a real catalog
    with torch.no_grad():
        fast = model.score_items(state, items, chunk=7)
        ref = reference_scores(model, state, items)
    assert torch.allclose(fast, ref, atol=1e-5)
    # a distribution: over every code tuple the probabilities sum to one
    every = torch.cartesian_prod(*[torch.arange(v) for v in [3, 2, 2, 2]])
    small = make_model(head, slot_vocab_sizes=[3, 2, 2, 2])
    small_state = small.history_state(every[None, :5], torch.arange(5)[None], torch.ones(1, 5, dtype=torch.long))
    with torch.no_grad():
        assert torch.allclose(small.score_items(small_state, every).exp().sum(), torch.tensor(1.0), atol=1e-5)
    with pytest.raises(ValueError, match="out of slot_vocab_sizes"):
        model.score_items(state, items + 20)


def expected_parameters(cfg: ItemCodeDecoderConfig) -> int:
    d, ff, codes = cfg.d_model, cfg.d_ff, sum(cfg.slot_vocab_sizes)
    layer = (d * 3 * d + 3 * d) + (d * d + d) + (d * ff + ff) + (ff * d + d) + 2 * 2 * d
    embeddings = codes * d + cfg.n_slots * d + cfg.max_items * d + (cfg.text_dim * d + d if cfg.text_dim else 0)
    head = 0 if cfg.tie_word_embeddings else codes * d
    if cfg.codes.head == "autoregressive":
        head += (0 if cfg.tie_word_embeddings else codes * d) + (d * ff + ff) + (ff * d + d) + 2 * 2 * d
    return embeddings + cfg.n_layers * layer + 2 * d + head


@pytest.mark.parametrize("head,tied", [("parallel", True), ("parallel", False), ("autoregressive", True),
                                       ("autoregressive", False)])
def test_parameter_count_has_no_unused_code_rows(head, tied):
    # RecGPT's shape: 3 layers, 768 wide, FSQ [8,8,8,6,5] -> 15,360 codes per slot, 4 slots, 768-d text input
    cfg = ItemCodeDecoderConfig.from_recipe("code_text", [15360] * 4, embed_dim=768, n_layers=3, d_model=768,
                                            n_heads=12, d_ff=3072, max_items=256,
                                            codes={"head": head, "tie_embeddings": tied})
    with torch.device("meta"):
        model = ItemCodeDecoder(cfg)
    total = sum(p.numel() for p in model.parameters())  # a tied matrix counts once
    assert total == expected_parameters(cfg)
    assert [e.num_embeddings for e in model.code_embedding] == [15360] * 4  # each slot's own codes, nothing else
    assert [o.out_features for o in model.head.out] == [15360] * 4
    # a smaller tokenizer costs rows only for the codes it has
    small = ItemCodeDecoderConfig.from_recipe("code", [256, 256, 256, 8], n_layers=3, d_model=768, n_heads=12,
                                              d_ff=3072)
    with torch.device("meta"):
        assert sum(p.numel() for p in ItemCodeDecoder(small).parameters()) == expected_parameters(small)


@pytest.mark.parametrize("head", ["parallel", "autoregressive"])
def test_training_logits_agree_with_prediction_path(ml100k_users, head):
    """Teacher-forced logits at item s == next_code_logprobs(state of item s, codes 0..k-1 of item s+1)."""
    model = make_model(head, text_dim=6, seed=6)
    codes, item_pos, segment, text, where = layout(ml100k_users, [[1, 2], [4]], width=24, left=True)
    with torch.no_grad():
        out = model(codes, item_pos, segment, text)
        r, start = where[2]
        for s in (start, start + 6, start + 11):
            logp = torch.log_softmax(out.logits[r, s], dim=-1)
            for k, size in enumerate(MODEL_SLOTS):
                prefix = codes[r, s + 1, :k][None]
                expected = model.next_code_logprobs(out.hidden[r, s][None], prefix)[0]
                assert torch.allclose(logp[k, :size], expected, atol=1e-5)
                assert torch.isinf(logp[k, size:]).all()
