"""model.dense.evidence: the popularity weight and content gate also read two label-free figures of the user's
history (recgpt.model.dense.history_evidence). The packed-row figures against each segment alone, prediction's
figures against training's on the same real ml-100k histories, the scores against the brute-force loop, the
catalog standardization on real counts, and the switch through the real trainer."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from recgpt.data.popularity import item_counts, standardized_log_popularity
from recgpt.model.dense import history_evidence, reference_dense_scores
from recgpt.predict import Recommender
from recgpt.train.batching import collate
from tests.fixtures_model import dense_decoder

pytestmark = pytest.mark.usefixtures("one_thread")

GATED = {"query": "content", "pool": 5, "item_tower": False, "negatives": "catalog", "catalog_negatives": 64,
         "popularity": "gated", "evidence": True}


def brute_evidence(texts: torch.Tensor, popularity: torch.Tensor) -> torch.Tensor:
    """[n, 2] for one history alone: mean popularity so far, mean cosine of each item to the one before."""
    unit = F.normalize(texts.float(), dim=-1)
    out = torch.zeros(len(texts), 2)
    for t in range(len(texts)):
        out[t, 0] = popularity[: t + 1].float().mean()
        out[t, 1] = sum(float(unit[j] @ unit[j - 1]) for j in range(1, t + 1)) / t if t else 0.0
    return out


@pytest.fixture(scope="module")
def ml100k_histories(ml100k_catalog, prepared_dir):
    from recgpt.data import load_prepared
    from recgpt.predict.protocols import build_test_cases

    inter = load_prepared(prepared_dir("ml-100k")).interactions
    return build_test_cases(inter, ml100k_catalog, "loo", max_users=40, seed=3).histories


def test_packed_rows_equal_each_segment_alone(ml100k_histories, catalog_emb):
    """Three real histories packed into two rows (one row holds two segments, then padding)."""
    seqs = [list(h[-9:]) for h in ml100k_histories[:3]]
    lengths = [len(s) for s in seqs]
    pop = torch.randn(len(catalog_emb))
    rows = [[(0, 0, lengths[0]), (1, 0, lengths[1])], [(2, 0, lengths[2])]]
    batch = collate(rows, dict(enumerate(seqs)), torch.zeros(len(catalog_emb), 1, dtype=torch.long), catalog_emb,
                    item_standard_popularity=pop)
    got = history_evidence(batch["text_emb"], batch["item_pos"], batch["item_standard_popularity"])
    spans = [(0, 0, seqs[0]), (0, lengths[0], seqs[1]), (1, 0, seqs[2])]
    for row, at, seq in spans:
        want = brute_evidence(catalog_emb[seq], pop[seq])
        assert torch.allclose(got[row, at:at + len(seq)], want, atol=1e-5)
    assert got[..., 1].abs().max() > 0.05  # real consecutive items are not orthogonal


def test_standardized_popularity_per_catalog(prepared_dir):
    """Interaction-weighted mean 0 and spread 1 within each catalog, order kept; counting a half of the users
    leaves the figure of the items both halves count about where it was."""
    from recgpt.data import load_prepared

    inter = load_prepared(prepared_dir("ml-100k")).interactions
    codes, items = np.unique(inter["item_id"].astype(str), return_inverse=True)
    counts = item_counts(items, len(codes))
    groups = torch.as_tensor(np.arange(len(codes)) % 2)
    z = standardized_log_popularity(counts, groups)
    for g in (0, 1):
        rows = (groups == g).numpy()
        c, v = torch.as_tensor(counts[rows]).double(), z[rows].double()
        assert abs(float((c * v).sum() / c.sum())) < 1e-4
        assert abs(float((c * v ** 2).sum() / c.sum()) - 1) < 1e-3
        order = np.argsort(counts[rows], kind="stable")
        assert (np.diff(v.numpy()[order]) >= -1e-6).all()
    users = inter["user_id"].astype(str).to_numpy()
    half = np.isin(users, np.unique(users)[::2])
    z_half = standardized_log_popularity(item_counts(items[half], len(codes)))
    z_all = standardized_log_popularity(counts)
    both = (item_counts(items[half], len(codes)) >= 5) & (counts >= 10)
    assert both.sum() > 300
    assert float((z_half[both] - z_all[both]).abs().mean()) < 0.25


def test_evidence_scores_match_the_loop_and_start_at_zero(ml100k_catalog, catalog_emb):
    sizes, dim = ml100k_catalog.slot_vocab_sizes, catalog_emb.shape[1]
    torch.manual_seed(1)
    state, items = torch.randn(3, ml100k_catalog.codes.shape[1], 32), catalog_emb[:40]
    own = torch.stack([catalog_emb[[3, 4, 5, 6, 7]], catalog_emb[[8, 9, 10, 11, 12]], catalog_emb[[13, 2, 1, 0, 14]]])
    popularity, evidence = torch.log1p(torch.arange(40.0) % 7), torch.randn(3, 2)
    model = dense_decoder(sizes, dim, randomize=["popularity_scale"], dense=GATED)
    head = model.dense_head
    with torch.no_grad():
        before = head.scores(state, items, own, popularity, evidence=evidence)
        assert torch.allclose(before, head.scores(state, items, own, popularity, evidence=evidence * 3), atol=1e-6)
        torch.nn.init.normal_(head.evidence.weight, std=0.3)
        fast = head.scores(state, items, own, popularity, evidence=evidence)
        assert (fast - before).abs().max() > 1e-3
        assert torch.allclose(fast, reference_dense_scores(head, state, items, own, popularity, evidence), atol=1e-5)
        with pytest.raises(ValueError, match="evidence"):
            head.scores(state, items, own, popularity)


def test_prediction_figures_equal_training_figures(ml100k_catalog, catalog_emb, ml100k_histories):
    """The scorer's figures of each history's last item (its last max_items items, the catalog's own counts,
    centered texts as the model reads them) equal the training function on the same items packed in one row."""
    model = dense_decoder(ml100k_catalog.slot_vocab_sizes, catalog_emb.shape[1], randomize=["popularity_scale"],
                          dense=GATED, center_text=True,
                          max_items=20)
    torch.nn.init.normal_(model.dense_head.evidence.weight, std=0.3)
    counts = torch.arange(ml100k_catalog.n_items) % 13
    catalog = ml100k_catalog.__class__.from_codes(ml100k_catalog.item_ids, ml100k_catalog.codes,
                                                  ml100k_catalog.slot_vocab_sizes, catalog_emb, popularity=counts)
    scorer = Recommender(model, catalog=catalog).scorer
    histories = ml100k_histories[:12]
    assert max(len(h) for h in histories) > 20  # some are cut to max_items
    got = scorer.history_evidence(histories, block=5)
    centered = catalog_emb - catalog_emb.mean(0)
    z = standardized_log_popularity(counts.numpy())
    for i, h in enumerate(histories):
        seq = list(h[-20:])
        batch = collate([[(0, 0, len(seq))]], {0: seq}, torch.zeros(len(catalog_emb), 1, dtype=torch.long),
                        centered, item_standard_popularity=z)
        want = history_evidence(batch["text_emb"], batch["item_pos"], batch["item_standard_popularity"])[0, -1]
        assert torch.allclose(got[i], want, atol=1e-4)
    part = histories[:4]  # the dense component reads them
    state = scorer.state(part)
    dense = scorer.components(part, state, {"dense"})["dense"]
    want = model.dense_scores(state, scorer.catalog_emb, scorer.last_rows(part), torch.log1p(counts.float()),
                              got[:4])
    assert torch.allclose(dense, want, atol=1e-5)


def test_the_real_trainer_learns_the_evidence_map(tiny_train_cfg, tiny_tokenizer):
    from recgpt.config.errors import ConfigError
    from recgpt.evaluate import load_checkpoint_model
    from recgpt.train import checkpoint as ckpt
    from recgpt.train.inputs import load_training_inputs
    from recgpt.train.trainer import pretrain

    args = ["model.recipe=text_dense", "model.dense.catalog_negatives=64", "model.dense.evidence=true",
            f"train.text_embeddings_dir={tiny_tokenizer.parent / 'embeddings'}", "train.max_steps=3",
            "train.eval_every=3", "train.save_every=3"]
    cfg = tiny_train_cfg(*args)
    inputs = load_training_inputs(cfg)
    assert inputs.item_standard_popularity is not None and inputs.item_standard_popularity.std() > 0.5
    summary = pretrain(cfg)
    complete, _ = ckpt.list_checkpoints(summary["run_dir"])
    head = load_checkpoint_model(complete[-1], ckpt.read_meta(complete[-1])).dense_head
    assert math.isfinite(summary["loss"]) and head.evidence.weight.abs().sum() > 0
    with pytest.raises((ConfigError, ValueError), match="model.dense.evidence"):
        tiny_train_cfg(*args, "model.dense.popularity=none")
