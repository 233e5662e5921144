"""Geometry-aware item codes (recgpt.model.grid): FSQ grid code embeddings (model.codes.embedding=fsq_grid) and
the factorized head (model.codes.output=factorized), against hand computations on a small grid and on a real
FSQ tokenizer's ml-100k codes."""
import math

import pytest
import torch

from recgpt.model import ItemCodeDecoder, ItemCodeDecoderConfig, next_item_loss
from recgpt.model.grid import grid_coordinates, grid_digits
from recgpt.train.objective import NextItemObjective

pytestmark = pytest.mark.usefixtures("one_thread")
LEVELS = [4, 3, 2]  # a small grid: 24 codes per slot
SWITCHES = [("lookup", "factorized"), ("fsq_grid", "full"), ("fsq_grid", "factorized")]


def small_decoder(code_embedding="lookup", code_head="full", seed=0, **kw):
    torch.manual_seed(seed)
    config = ItemCodeDecoderConfig.from_recipe("code", [24, 24, 5], slot_levels=[LEVELS, LEVELS, []], n_layers=1,
                                               d_model=16, n_heads=2, d_ff=32, dropout=0.0,
                                               codes={"embedding": code_embedding, "output": code_head, **kw})
    return ItemCodeDecoder(config).eval()


def small_batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    codes = torch.stack([torch.randint(0, 24, (3, 7), generator=g), torch.randint(0, 24, (3, 7), generator=g),
                         torch.randint(0, 5, (3, 7), generator=g)], dim=-1)
    segment = torch.ones(3, 7, dtype=torch.long)
    segment[2, 5:] = 0  # padding
    return codes, torch.arange(7).repeat(3, 1), segment


def test_grid_coordinates_are_the_tokenizers_fsq_values():
    from recgpt.tokenizer.fsq import FSQ

    levels = [8, 8, 8, 6, 5]
    codes = torch.arange(math.prod(levels))
    assert torch.equal(grid_coordinates(levels), FSQ(levels).indices_to_codes(codes))
    assert torch.equal((grid_digits(levels) * FSQ(levels).basis).sum(-1), codes)  # digits rebuild the code


def test_factorized_log_prob_is_the_sum_of_dimensions_and_the_full_softmax_it_replaces():
    model = small_decoder(code_head="factorized")
    head = model.head
    assert [o.out_features for o in head.out] == [sum(LEVELS), sum(LEVELS), 5]
    state = torch.randn(4, 3, 16)
    items = torch.tensor([[a, b, c] for a in range(24) for b in range(24) for c in range(5)])
    scores = model.score_items(state, items)
    digits = grid_digits(LEVELS)
    by_hand = torch.zeros(4, len(items))
    full_softmax = torch.zeros(4, len(items))
    for k in range(2):
        raw = head.out[k](state[:, k])  # [B, 9] per-dimension logits
        dims = raw.split(LEVELS, dim=-1)
        per_dim = sum(torch.log_softmax(x, -1)[:, digits[items[:, k], j]] for j, x in enumerate(dims))
        outer = sum(x[:, digits[:, j]] for j, x in enumerate(dims))  # [B, 24]: logit(c) = sum_j logit_j[digit_j]
        by_hand += per_dim
        full_softmax += torch.log_softmax(outer, -1)[:, items[:, k]]
    last = torch.log_softmax(head.out[2](state[:, 2]), -1)[:, items[:, 2]]
    assert torch.allclose(scores, by_hand + last, atol=1e-5)
    assert torch.allclose(scores, full_softmax + last, atol=1e-5)
    assert torch.allclose(scores.exp().sum(1), torch.ones(4), atol=1e-4)  # a distribution over every tuple
    # the reference logits of the forward pass are those outer sums; the beam's per-slot log-probs agree
    assert torch.allclose(head.slot_logits(state[:, 0], 0), sum(x[:, digits[:, j]] for j, x in enumerate(
        head.out[0](state[:, 0]).split(LEVELS, -1))), atol=1e-6)
    prefix = torch.zeros(4, 1, dtype=torch.long)
    assert torch.allclose(model.next_code_logprobs(state, prefix),
                          torch.log_softmax(head.slot_logits(state[:, 1], 1), -1), atol=1e-5)


@pytest.mark.parametrize("code_embedding,code_head", SWITCHES)
def test_fast_objective_equals_the_reference_loss(code_embedding, code_head):
    model = small_decoder(code_embedding, code_head, seed=1)
    codes, item_pos, segment = small_batch()
    ref = next_item_loss(model(codes=codes, item_pos=item_pos, segment=segment).logits, codes, item_pos, segment)
    fast = NextItemObjective(model)(codes, item_pos, segment)
    assert torch.allclose(fast[0], ref[0], rtol=1e-5) and fast[1] == ref[1]


def test_grid_embedding_is_the_projection_of_the_coordinates_and_unseen_codes_keep_it():
    coords = grid_coordinates(LEVELS)
    tied = small_decoder("fsq_grid", "full")
    emb = tied.code_embedding[0]
    assert torch.allclose(emb(torch.arange(24)), coords @ emb.project.weight.T, atol=1e-6)  # residual starts at 0
    # a full head scores every code with the same (tied) grid embedding
    state = torch.randn(2, 16)
    assert torch.allclose(tied.head.slot_logits(state, 0), state @ emb.matrix().T, atol=1e-6)
    # with the factorized head, only the input side touches a code's residual: unseen codes keep their projection
    model = small_decoder("fsq_grid", "factorized").train()
    emb = model.code_embedding[0]
    codes, item_pos, segment = small_batch()
    codes[..., 0] = codes[..., 0] % 12  # codes 12..23 of slot 0 never occur
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    before = emb.project.weight.detach().clone()
    for _ in range(3):
        loss_sum, n_tokens = NextItemObjective(model)(codes, item_pos, segment)
        optimizer.zero_grad()
        (loss_sum / n_tokens).backward()
        optimizer.step()
    assert not torch.allclose(emb.project.weight, before)  # the projection learned from the seen codes
    unseen = torch.arange(12, 24)
    assert torch.equal(emb.residual.weight[unseen], torch.zeros(12, 16))  # no gradient reached them
    assert emb.residual.weight[:12].abs().sum() > 0
    assert torch.allclose(emb(unseen), coords[unseen] @ emb.project.weight.T, atol=1e-6)
    distances = torch.cdist(emb(unseen), emb(unseen)) + torch.eye(12)
    assert distances.min() > 1e-4  # each unseen code its own vector, placed by its grid position


@pytest.mark.parametrize("code_embedding,code_head", SWITCHES)
def test_switches_round_trip_save_pretrained(code_embedding, code_head, tmp_path):
    model = small_decoder(code_embedding, code_head, seed=2)
    with torch.no_grad():  # a non-zero residual, so that it must be saved
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    model.save_pretrained(tmp_path)
    loaded = ItemCodeDecoder.from_pretrained(tmp_path).eval()
    cfg = loaded.config
    assert (cfg.codes.embedding, cfg.codes.output, cfg.slot_levels) == (code_embedding, code_head, [LEVELS, LEVELS, []])
    codes, item_pos, segment = small_batch(seed=3)
    state, state_loaded = model.history_state(codes, item_pos, segment), loaded.history_state(codes, item_pos, segment)
    assert torch.allclose(state, state_loaded, atol=1e-6)
    items = torch.tensor([[a, b, c] for a in range(0, 24, 5) for b in range(24) for c in range(5)])
    assert torch.allclose(model.score_items(state, items), loaded.score_items(state_loaded, items), atol=1e-5)


def test_switches_need_an_fsq_grid_and_the_parallel_head():
    with pytest.raises(ValueError, match="slot_levels"):
        ItemCodeDecoderConfig.from_recipe("code", [24, 5], slot_levels=[[4, 3, 3], []])  # 36 != 24
    with pytest.raises(ValueError, match="FSQ grid slots"):
        ItemCodeDecoderConfig.from_recipe("code", [32, 5], codes={"output": "factorized"})  # an RQ tokenizer's codes
    with pytest.raises(ValueError, match="parallel"):
        ItemCodeDecoderConfig.from_recipe("code", [24, 5], slot_levels=[LEVELS, []],
                                          codes={"embedding": "fsq_grid", "head": "autoregressive"})


def test_real_fsq_codes_exact_scores_and_beam(fitted_tokenizers, real_embeddings, prepared_dir):
    """A real FSQ tokenizer's ml-100k catalog: the levels reach the model config from the tokenizer's
    config; exact scores equal a one-item-at-a-time reference; a catalog-wide beam finds the exact top 10."""
    from recgpt.data import load_prepared
    from recgpt.predict.catalog import Catalog, assign_codes
    from recgpt.predict.protocols import build_test_cases
    from recgpt.predict.scoring import ItemScorer, reference_item_scores
    from recgpt.tokenizer.base import slot_levels_from_config

    tok = fitted_tokenizers["fsq-mlp"]
    levels = slot_levels_from_config(tok.config())
    assert levels == [[8, 8, 8, 6, 5]] * tok.n_codes + [[]]
    codes, _ = assign_codes(tok, real_embeddings.vectors, real_embeddings.model)
    cat = Catalog.from_codes(real_embeddings.item_ids, codes, tok.slot_vocab_sizes)
    histories = build_test_cases(load_prepared(prepared_dir("ml-100k")).interactions, cat, "loo", max_users=6,
                                 seed=1).histories
    torch.manual_seed(0)
    config = ItemCodeDecoderConfig.from_recipe("code", tok.slot_vocab_sizes, slot_levels=levels, n_layers=1,
                                               d_model=32, n_heads=4, d_ff=64, dropout=0.0, max_items=20,
                                               codes={"embedding": "fsq_grid", "output": "factorized"})
    model = ItemCodeDecoder(config).eval()
    exact_scorer = ItemScorer(model, cat.codes, cat.trie, mode="exact")
    exact = exact_scorer.log_probs(histories)
    subset = torch.arange(0, cat.n_items, 11)
    ref = reference_item_scores(model, exact_scorer.state(histories), cat.codes[subset])
    assert torch.allclose(exact[:, subset], ref, atol=1e-4)
    beam = ItemScorer(model, cat.codes, cat.trie, mode="trie", beam_size=cat.n_items).log_probs(histories)
    assert torch.allclose(beam, exact, atol=1e-4)
    assert torch.equal(beam.topk(10).indices, exact.topk(10).indices)


def test_pretraining_with_both_switches_on_the_real_tiny_corpus(tiny_train_cfg, tiny_tokenizer):
    """The real trainer: the tokenizer's FSQ levels reach the saved model config, the factorized objective
    trains, and the checkpoint reloads with its grid embeddings."""
    import json
    from pathlib import Path

    from recgpt.train.trainer import pretrain

    cfg = tiny_train_cfg("model.codes.embedding=fsq_grid", "model.codes.output=factorized", "train.max_steps=4",
                         "train.eval_every=4", "train.save_every=4")
    summary = pretrain(cfg)
    assert math.isfinite(summary["loss"]) and math.isfinite(summary["heldout_loss"])
    tok = json.loads((Path(tiny_tokenizer) / "config.json").read_text())
    meta = json.loads((next(Path(summary["run_dir"]).glob("step-*")) / "meta.json").read_text())
    levels = tok["params"]["levels"]
    assert meta["model_config"]["slot_levels"] == [levels] * tok["n_codes"] + [[]]
    codes = meta["model_config"]["model"]["codes"]
    assert (codes["embedding"], codes["output"]) == ("fsq_grid", "factorized")
