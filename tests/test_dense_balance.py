"""model.dense.popularity=balanced: a catalog's content / popularity balance read from its own log
(recgpt.data.balance) against a per-row loop, following what the log's next items are; the head's score with the
balance folded into its popularity input; the trainer's per-dataset balances; prediction reading it from the
catalog's log. Real ml-100k items, MiniLM embeddings and log (session fixtures); the trainer on the tiny corpus."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from recgpt.data.balance import GRID, log_balance, seeded_subset
from recgpt.model.dense import reference_dense_scores
from recgpt.predict import Recommender
from tests.test_dense_popularity import popularity_decoder

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def ml100k_log(prepared_dir, ml100k_catalog):
    """(catalog rows of 300 seeded real ml-100k sequences, Float[N] log(1 + count) over the whole log)."""
    from recgpt.data import load_prepared
    from recgpt.data.splits import user_sequences

    inter = load_prepared(prepared_dir("ml-100k")).interactions
    sequences = user_sequences(inter).tolist()
    rows = [ml100k_catalog.rows([str(i) for i in sequences[k]])[0][-20:] for k in seeded_subset(range(len(sequences)), 300)]
    counts = np.bincount(np.asarray(ml100k_catalog.rows(inter["item_id"].astype(str).tolist())[0]),
                         minlength=ml100k_catalog.n_items)
    return rows, torch.log1p(torch.as_tensor(counts, dtype=torch.float32))


def loop_balance(vectors, log_pop, rows):
    """The reference: every row and grid point on its own, ranks by a full sort."""
    units = F.normalize(vectors.float(), dim=-1)
    best, best_a = -1.0, 0.0
    for a in GRID:
        gains = []
        for r in rows:
            if len(r) < 2 or r[-1] in r[:-1]:
                continue
            score = units @ units[r[-2]] + a * log_pop
            score[list(r[:-1])] = -math.inf
            order = torch.argsort(score, descending=True, stable=True).tolist()
            rank = int((score > score[r[-1]]).sum())
            assert order.index(r[-1]) >= rank  # ties sort either way; the strict count is the rank
            gains.append(1 / math.log2(rank + 2))
        mean = sum(gains) / len(gains)
        if mean > best + 1e-9:
            best, best_a = mean, a
    return best_a


def test_balance_equals_the_loop_and_follows_what_comes_next(ml100k_log, catalog_emb):
    rows, log_pop = ml100k_log
    centered = catalog_emb - catalog_emb.mean(0)
    got = log_balance(centered, log_pop, rows[:80])
    assert got in GRID and got == loop_balance(centered, log_pop, rows[:80])
    assert log_balance(centered, log_pop, rows) == log_balance(centered, log_pop, rows, block=7)  # blocks change nothing
    units = F.normalize(centered, dim=-1)
    popular, nearest = [], []
    for r in rows:  # the same histories, their next item replaced
        by_count = [i for i in torch.argsort(log_pop, descending=True).tolist() if i not in r[:-1]]
        popular.append(r[:-1] + [by_count[0]])  # the most popular unseen item: the more popularity the better
        sim = units @ units[r[-2]]
        sim[list(r[:-1])] = -math.inf
        nearest.append(r[:-1] + [int(sim.argmax())])  # the nearest text: content alone ranks it first
    assert log_balance(centered, log_pop, popular) == max(GRID)
    assert log_balance(centered, log_pop, nearest) == 0.0
    assert log_balance(centered, log_pop, [[1], [2, 2]]) == 0.0  # nothing to rank: content alone
    assert seeded_subset(range(10), 20) == list(range(10)) and seeded_subset(range(100), 5) == seeded_subset(range(100), 5)


def test_balanced_head_starts_at_the_catalog_balance_and_matches_the_loop(ml100k_catalog, catalog_emb):
    """Untrained: cosine + a * log popularity, a folded into the popularity input; trained: (1 + g_b) * cosine +
    (1 + s_b) * a * log popularity, as the brute-force loop computes it."""
    sizes, dim = ml100k_catalog.slot_vocab_sizes, catalog_emb.shape[1]
    torch.manual_seed(3)
    state, items = torch.randn(3, ml100k_catalog.codes.shape[1], 32), catalog_emb[:40]
    own, balanced_pop = catalog_emb[[3, 8, 13]], 0.3 * torch.log1p(torch.arange(40.0) % 7)
    untrained = popularity_decoder(sizes, dim, trained=False, popularity="balanced", query="content",
                                   item_tower=False).dense_head
    trained = popularity_decoder(sizes, dim, popularity="balanced").dense_head
    with torch.no_grad():
        cosine = F.normalize(own, dim=-1) @ F.normalize(items, dim=-1).t()
        assert torch.allclose(untrained.scores(state, items, own, balanced_pop), cosine + balanced_pop[None], atol=1e-5)
        fast = trained.scores(state, items, own, balanced_pop)
        assert torch.allclose(fast, reference_dense_scores(trained, state, items, own, balanced_pop), atol=1e-5)
        scale = trained.popularity_scale(state.mean(dim=1))
        plain = trained.scores(state, items, own)  # no log: the popularity term (and the gate) left out
        want = (1 + scale[:, 1:]) * plain + (1 + scale[:, :1]) * balanced_pop[None]
        assert torch.allclose(fast, want, atol=1e-5) and (scale[:, :1] - scale[0, 0]).abs().max() > 1e-3


def test_prediction_reads_the_balance_from_the_catalog_log(ml100k_catalog, catalog_emb, ml100k_log):
    """With counts but no log the balanced head scores without its popularity term, and says so; set_log reads
    the balance from the log's sequences with the catalog's centered vectors and popularity."""
    from recgpt.predict.self_weights import log_rows

    model = popularity_decoder(ml100k_catalog.slot_vocab_sizes, catalog_emb.shape[1], popularity="balanced",
                               query="content", item_tower=False, pool=1)
    rows, log_pop = ml100k_log
    counts = torch.expm1(log_pop).round().long()
    catalog = ml100k_catalog.__class__.from_codes(ml100k_catalog.item_ids, ml100k_catalog.codes,
                                                  ml100k_catalog.slot_vocab_sizes, catalog_emb, popularity=counts)
    rec = Recommender(model, catalog=catalog)
    histories = [r[:-1] for r in rows[:6]]
    scorer = rec.scorer
    state = scorer.state(histories)
    last = catalog_emb[[h[-1] for h in histories]]
    assert scorer.without_popularity and scorer.balance is None
    bare = scorer.components(histories, state, {"dense"})["dense"]
    assert torch.allclose(bare, model.dense_scores(state, scorer.catalog_emb, last), atol=1e-5)
    rec.set_log([[catalog.item_ids[i] for i in r] for r in rows])
    assert rec.log == log_rows([[catalog.item_ids[i] for i in r] for r in rows], catalog)
    want_a = log_balance(scorer.catalog_emb.rows(slice(None)), log_pop, rec.log)  # the vectors the head sees
    assert rec.scorer.balance == want_a and not rec.scorer.without_popularity
    dense = rec.scorer.components(histories, state, {"dense"})["dense"]
    assert torch.allclose(dense, model.dense_scores(state, scorer.catalog_emb, last, want_a * log_pop), atol=1e-5)
    rec.set_popularity(counts)  # a new scorer keeps the log's balance
    assert rec.scorer.balance == want_a


def test_training_scales_each_dataset_by_its_own_balance(tiny_train_cfg, tiny_tokenizer):
    """The trainer's popularity input: log(1 + count) times the item's dataset balance, one grid value per
    dataset, read from that dataset's training sequences; the real trainer runs on it."""
    from recgpt.train.inputs import load_training_inputs
    from recgpt.train.trainer import pretrain

    args = ["model.recipe=text_dense", "model.dense.catalog_negatives=64", "model.dense.popularity=balanced",
            f"train.text_embeddings_dir={tiny_tokenizer.parent / 'embeddings'}", "train.max_steps=3",
            "train.eval_every=3", "train.save_every=3"]
    cfg = tiny_train_cfg(*args)
    inputs = load_training_inputs(cfg)
    plain = load_training_inputs(tiny_train_cfg(*args[:2], *args[3:])).item_popularity
    group = inputs.item_group
    assert len(set(group.tolist())) >= 2
    for g in set(group.tolist()):
        at = (group == g) & (plain > 0)
        ratio = inputs.item_popularity[at] / plain[at]
        assert float(ratio.max() - ratio.min()) < 1e-6 and any(abs(float(ratio[0]) - a) < 1e-6 for a in GRID)
    summary = pretrain(cfg, inputs)
    assert math.isfinite(summary["loss"])
