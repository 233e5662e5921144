"""Zero-shot machinery: the dense head against a brute-force loop, hybrid scoring and its weights through
save_pretrained, weight fitting, bootstrap ratios, and a catalog built without the domain's interactions.
Real ml-100k items and MiniLM embeddings (session fixtures); random but real decoders."""
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from recgpt.model import ItemCodeDecoder, ItemCodeDecoderConfig
from recgpt.model.dense import reference_dense_scores
from recgpt.predict import Recommender, baselines
from recgpt.predict.hybrid import fit_score_weights, simplex_grid
from recgpt.predict.protocols import popularity_before_targets
from recgpt.predict.scoring import combine, standardize
from recgpt.predict.metrics import bootstrap_ratio
from recgpt.predict.transfer import restrict, zero_shot_eval
from tests.fixtures_model import dense_decoder

pytestmark = pytest.mark.usefixtures("one_thread")


def test_dense_scores_equal_brute_force_loop(ml100k_catalog, catalog_emb):
    model = dense_decoder(ml100k_catalog.slot_vocab_sizes, catalog_emb.shape[1])
    state = torch.randn(3, ml100k_catalog.codes.shape[1], 32)
    items = catalog_emb[:40]
    with torch.no_grad():
        fast = model.dense_scores(state, items)
        slow = reference_dense_scores(model.dense_head, state, items)
    assert fast.shape == (3, 40)
    assert torch.allclose(fast, slow, atol=1e-5)


def test_query_skip_starts_as_last_item_knn_and_matches_the_loop(ml100k_catalog, catalog_emb):
    """dense.query=content_state: an untrained head (identity tower, zero learned query) ranks by the cosine of
    each catalog item to the last item's text; once the learned part moves, the batched scores equal the loop."""
    model = dense_decoder(ml100k_catalog.slot_vocab_sizes, catalog_emb.shape[1], randomize=(),
                          dense={"query": "content_state"})
    state = torch.randn(3, ml100k_catalog.codes.shape[1], 32)
    last = catalog_emb[[3, 50, 700]]
    unit = torch.nn.functional.normalize(catalog_emb, dim=-1)
    with torch.no_grad():
        assert torch.allclose(model.dense_scores(state, catalog_emb, last), unit[[3, 50, 700]] @ unit.t(), atol=1e-5)
        for p in [*model.dense_head.query.parameters(), *model.dense_head.tower[-1].parameters()]:
            torch.nn.init.normal_(p, std=0.05)
        fast = model.dense_scores(state, catalog_emb[:40], last)
        slow = reference_dense_scores(model.dense_head, state, catalog_emb[:40], last)
    assert torch.allclose(fast, slow, atol=1e-5)
    with pytest.raises(ValueError, match="own text"):
        model.dense_scores(state, catalog_emb[:40])


def test_query_pool_starts_as_last_item_knn_and_matches_the_loop(tmp_path, ml100k_catalog, catalog_emb,
                                                                  ml100k_histories):
    """dense.pool: untrained (zero recency prior and attention) the pooled query is the last item's text;
    with moved parameters the batched scores equal the loop, the scorer feeds the last K items newest first
    (zero rows past a short history) and the parameters survive save_pretrained."""
    from recgpt.model.dense import recent_texts

    model = dense_decoder(ml100k_catalog.slot_vocab_sizes, catalog_emb.shape[1], randomize=(),
                          dense={"query": "content_state", "pool": 3}, score_weights={"dense": 1.0})
    state = torch.randn(3, ml100k_catalog.codes.shape[1], 32)
    recent = catalog_emb[torch.tensor([[3, 9, 11], [50, 60, 0], [700, 0, 0]])]
    recent = recent * torch.tensor([[1, 1, 1], [1, 1, 0], [1, 0, 0.0]])[..., None]  # short histories: zero rows
    unit = torch.nn.functional.normalize(catalog_emb, dim=-1)
    with torch.no_grad():
        assert torch.allclose(model.dense_scores(state, catalog_emb, recent), unit[[3, 50, 700]] @ unit.t(), atol=1e-5)
        head = model.dense_head
        for p in [*head.query.parameters(), *head.tower[-1].parameters(), head.recency, head.attention]:
            torch.nn.init.normal_(p, std=0.3)
        fast = model.dense_scores(state, catalog_emb[:40], recent)
        slow = reference_dense_scores(head, state, catalog_emb[:40], recent)
        assert torch.allclose(fast, slow, atol=1e-5)
        catalog = ml100k_catalog.__class__.from_codes(ml100k_catalog.item_ids, ml100k_catalog.codes,
                                                      ml100k_catalog.slot_vocab_sizes, catalog_emb)
        histories = [ml100k_histories[0][:5], ml100k_histories[1][:2]]
        rec = Recommender(model, catalog=catalog)
        got = rec.scorer.components(histories, rec.scorer.state(histories), ["dense"])["dense"]
        want = torch.zeros(2, 3, catalog_emb.shape[1])
        for i, h in enumerate(histories):
            newest = list(h[::-1][:3])
            want[i, : len(newest)] = catalog_emb[newest]
        assert torch.allclose(got, model.dense_scores(rec.scorer.state(histories), catalog_emb, want), atol=1e-5)
    model.save_pretrained(tmp_path / "m")
    loaded = ItemCodeDecoder.from_pretrained(str(tmp_path / "m"))
    assert loaded.config.dense.pool == 3 and torch.equal(loaded.dense_head.recency, head.recency)
    # query=content, no tower: the decoder state does not enter the query, items are their unit texts, and the
    # parts that are off are not built at all
    content = dense_decoder(ml100k_catalog.slot_vocab_sizes, catalog_emb.shape[1], randomize=(),
                            dense={"query": "content", "pool": 3, "item_tower": False})
    head = content.dense_head
    assert head.query is None and head.tower is None
    with torch.no_grad():
        for p in (head.recency, head.attention):
            torch.nn.init.normal_(p, std=0.3)
        fast = content.dense_scores(state, catalog_emb[:40], recent)
        assert torch.allclose(fast, reference_dense_scores(head, state, catalog_emb[:40], recent), atol=1e-5)
        assert torch.allclose(fast, content.dense_scores(torch.randn_like(state), catalog_emb[:40], recent), atol=1e-6)
        assert torch.allclose(fast, head.queries(state, recent) @ unit[:40].t(), atol=1e-5)
    with pytest.raises(ValueError, match="transformer unused"):
        ItemCodeDecoderConfig.from_recipe("text_dense", [8], embed_dim=4, dense={"popularity": "none"})
    # training inputs: position t holds its own text, then t-1, t-2 of the same segment, zero before it starts
    emb = torch.randn(1, 5, 4)
    item_pos = torch.tensor([[0, 1, 2, 0, 1]])
    out = recent_texts(emb, item_pos, 3)
    for t in range(5):
        for k in range(3):
            want = emb[0, t - k] if item_pos[0, t] >= k else torch.zeros(4)
            assert torch.equal(out[0, t, k], want)


def test_infonce_counts_an_item_once_and_matches_hand_softmax(ml100k_catalog, catalog_emb):
    head = dense_decoder(ml100k_catalog.slot_vocab_sizes, catalog_emb.shape[1]).dense_head
    states = torch.randn(4, ml100k_catalog.codes.shape[1], 32)
    targets = catalog_emb[[5, 9, 5, 2]]  # item 5 twice: one candidate, never its own negative
    with torch.no_grad():
        got = head.infonce_sum(states, targets)
        cands = catalog_emb[[2, 5, 9]]
        logits = head.queries(states) @ head.items(cands).t() / head.temperature
        want = -torch.log_softmax(logits, dim=1)[torch.arange(4), torch.tensor([1, 2, 1, 0])].sum()
    assert float(got) == pytest.approx(float(want), rel=1e-5)


def test_infonce_same_dataset_candidates_and_catalog_negatives_match_a_loop(ml100k_catalog, catalog_emb):
    """same_dataset: a query's softmax runs over the distinct targets and sampled negatives of its own dataset
    only; a negative equal to a target is that one candidate; the same text in two datasets is two items."""
    import torch.nn.functional as F

    head = dense_decoder(ml100k_catalog.slot_vocab_sizes, catalog_emb.shape[1]).dense_head
    states = torch.randn(5, ml100k_catalog.codes.shape[1], 32)
    targets, groups = catalog_emb[[5, 9, 5, 2, 5]], torch.tensor([0, 0, 0, 1, 1])
    negatives, negative_groups = catalog_emb[[9, 30, 31, 5]], torch.tensor([0, 0, 1, 1])
    with torch.no_grad():
        got = head.infonce_sum(states, targets, None, groups, negatives, negative_groups)
        mixed = head.infonce_sum(states, targets, None, None, negatives, None)
        queries = head.queries(states)
        want = want_mixed = 0.0
        pool = {(i, g) for i, g in zip([5, 9, 5, 2, 5, 9, 30, 31, 5], [0, 0, 0, 1, 1, 0, 0, 1, 1])}
        for m, (item, group) in enumerate(zip([5, 9, 5, 2, 5], groups.tolist())):
            own = sorted(i for i, g in pool if g == group)  # (5, 9, 30) for dataset 0, (2, 5, 31) for 1
            logits = queries[m] @ head.items(catalog_emb[own]).t() / head.temperature
            want += float(-F.log_softmax(logits, 0)[own.index(item)])
            every = sorted({i for i, _ in pool})  # without groups: every distinct item once
            logits = queries[m] @ head.items(catalog_emb[every]).t() / head.temperature
            want_mixed += float(-F.log_softmax(logits, 0)[every.index(item)])
    assert float(got) == pytest.approx(want, rel=1e-5) and float(mixed) == pytest.approx(want_mixed, rel=1e-5)
    # in_batch=False (dense_negatives=catalog): own target + the sampled items of its dataset, no other target
    with torch.no_grad():
        got = head.infonce_sum(states, targets, None, groups, negatives, negative_groups, in_batch=False)
        want = 0.0
        extras = {(i, g) for i, g in zip([9, 30, 31, 5], [0, 0, 1, 1])}
        for m, (item, group) in enumerate(zip([5, 9, 5, 2, 5], groups.tolist())):
            own = sorted({item} | {i for i, g in extras if g == group})
            logits = queries[m] @ head.items(catalog_emb[own]).t() / head.temperature
            want += float(-F.log_softmax(logits, 0)[own.index(item)])
    assert float(got) == pytest.approx(want, rel=1e-5)


def test_dense_objective_trains_the_head(ml100k_catalog, catalog_emb):
    from recgpt.train.batching import padded_reference
    from recgpt.train.objective import NextItemObjective

    model = dense_decoder(ml100k_catalog.slot_vocab_sizes, catalog_emb.shape[1])
    batch = padded_reference([[1, 2, 3, 4], [7, 8, 9]], ml100k_catalog.codes)
    batch["text_emb"] = catalog_emb[torch.tensor([[1, 2, 3, 4], [7, 8, 9, 0]])] * (batch["segment"] > 0)[..., None]
    both = NextItemObjective(model.train())(**batch)
    code_only = NextItemObjective(dense_decoder(ml100k_catalog.slot_vocab_sizes, catalog_emb.shape[1],
                                                dense={"loss_weight": 1e-12}).train())(**batch)
    assert both[1] == code_only[1] == 5 * ml100k_catalog.codes.shape[1]  # 5 next-item targets x L tokens
    assert both[0] > code_only[0]
    model.zero_grad()
    NextItemObjective(model)(**batch)[0].backward()
    assert model.dense_head.query.weight.grad.abs().sum() > 0


def test_hybrid_weights_round_trip_and_score_as_stored(tmp_path, ml100k_catalog, catalog_emb, ml100k_histories):
    weights = {"code": 0.3, "dense": 0.5, "knn": 0.2}
    model = dense_decoder(ml100k_catalog.slot_vocab_sizes, catalog_emb.shape[1], score_weights=weights)
    model.save_pretrained(tmp_path / "m")
    loaded = ItemCodeDecoder.from_pretrained(str(tmp_path / "m"))
    assert loaded.config.score_weights == weights and loaded.config.scoring_weights() == weights
    assert torch.equal(loaded.dense_head.tower[-1].weight, model.dense_head.tower[-1].weight)
    catalog = ml100k_catalog.__class__.from_codes(ml100k_catalog.item_ids, ml100k_catalog.codes,
                                                  ml100k_catalog.slot_vocab_sizes, catalog_emb)
    rec = Recommender(loaded, catalog=catalog)
    histories = ml100k_histories[:6]
    got = rec.scorer.log_probs(histories)
    state = rec.scorer.state(histories)
    parts = {"code": rec.scorer.code_scores(state), "dense": loaded.dense_scores(state, catalog_emb),
             "knn": baselines.content_knn_scores(histories, catalog_emb)}
    by_hand = sum(w * standardize(parts[c]) for c, w in weights.items()).log_softmax(1)
    assert torch.allclose(got, by_hand, atol=1e-4)
    # without stored weights a model with a dense head scores by it alone, one without by its code log-probs
    plain = dense_decoder(ml100k_catalog.slot_vocab_sizes, catalog_emb.shape[1])
    assert plain.config.scoring_weights() == {"dense": 1.0}
    assert ItemCodeDecoderConfig.from_recipe("code", [4, 4]).scoring_weights() == {"code": 1.0}


def test_standardize_and_combine():
    x = torch.tensor([[1.0, 2.0, 3.0, float("-inf")], [5.0, 5.0, 5.0, 5.0]])
    z = standardize(x)
    assert torch.allclose(z[0, :3], torch.tensor([-1.2247, 0.0, 1.2247]), atol=1e-4) and z[0, 3] == float("-inf")
    assert torch.equal(z[1], torch.zeros(4))
    assert torch.allclose(combine({"a": x[:1, :3], "b": -x[:1, :3]}, {"a": 0.5, "b": 0.5}), torch.zeros(1, 3))


def test_fit_score_weights_finds_the_informative_component():
    assert len(simplex_grid(["a", "b", "c"], 0.25)) == 15
    assert all(abs(sum(w.values()) - 1) < 1e-9 for w in simplex_grid(["a", "b", "c"], 0.1))
    gen = torch.Generator().manual_seed(0)
    targets = torch.randint(0, 50, (200,), generator=gen)
    noise = torch.randn(200, 50, generator=gen)
    informative = noise.clone()
    informative[torch.arange(200), targets] += 3.0  # ranks the target high
    weights, table = fit_score_weights({"good": informative, "noise": torch.randn(200, 50, generator=gen)},
                                       targets.tolist(), [[] for _ in range(200)], k=10, step=0.25)
    assert weights["good"] >= 0.75
    assert max(v for _, v in table) > 2 * min(v for _, v in table)


@pytest.mark.parametrize("chunk, block", [(8192, 1 << 20), (7, 1 << 20), (7, 20), (40, 1)])
def test_fit_table_equals_combining_each_grid_point_from_raw_scores(chunk, block):
    """The fit reads the catalog in chunks (two passes: moments, then the items above each target), a block of
    users at a time; every grid point must score as `combine` + top-k of the whole rows with the history
    excluded would."""
    from recgpt.predict.hybrid import ndcg_at_k

    gen = torch.Generator().manual_seed(1)
    parts = {"a": torch.randn(30, 40, generator=gen) * 5 + 2, "b": torch.randn(30, 40, generator=gen),
             "c": torch.randn(30, 40, generator=gen) * 0.1}
    targets = torch.randint(0, 40, (30,), generator=gen).tolist()
    histories = [[(t + 1) % 40, (t + 7) % 40] if i % 3 else [] for i, t in enumerate(targets)]
    histories[4].append(targets[4])  # a target in its own history is excluded: never a hit
    _, table = fit_score_weights(parts, targets, histories, k=10, step=0.25, chunk=chunk, block=block)
    assert max(v for _, v in table) > 0.2
    for weights, value in table:
        assert value == pytest.approx(ndcg_at_k(combine(parts, weights), targets, histories, 10), abs=1e-6)


def test_bootstrap_ratio_interval():
    rng = np.random.default_rng(0)
    b = rng.random(2000)
    ratio, lo, hi = bootstrap_ratio(1.5 * b, b)
    assert ratio == pytest.approx(1.5) and lo == pytest.approx(1.5) and hi == pytest.approx(1.5)
    a = rng.random(2000)  # independent: the ratio is near 1 and the interval covers it
    ratio, lo, hi = bootstrap_ratio(a, b)
    assert lo < ratio < hi and lo < 1.0 < hi


def test_catalog_from_a_folder_without_interactions(tmp_path, prepared_dir, exported_model, ml100k_histories,
                                                     embed_config, ml100k_catalog):
    """The zero-shot path reads the domain's items only; interactions are the scored histories themselves."""
    source = prepared_dir("ml-100k")
    folder = tmp_path / "items_only"
    folder.mkdir()
    for name in ("items.parquet", "manifest.json"):
        shutil.copy2(source / name, folder / name)
    rec = Recommender.from_pretrained(exported_model, embed_cfg=embed_config)
    catalog = rec.set_catalog_from_prepared(folder)
    assert catalog.n_items == 1682 and catalog.text_emb is not None
    ids = catalog.item_ids
    histories = [[ids[r] for r in h] for h in ml100k_histories[:4]]
    out = rec.baseline(histories, "content_knn", k=5, allow_history=False)
    assert all(len(r) == 5 and not set(r) & set(h) for r, h in zip(out.item_ids, histories))
    assert all(len(r) == 5 for r in rec.recommend(histories, k=5, allow_history=False).item_ids)
    with pytest.raises(FileNotFoundError, match="no interactions"):
        zero_shot_eval(rec, folder, "loo", catalog_set=True)


def test_priors_row_is_the_fit_without_the_model(prepared_dir, exported_model, embed_config):
    """The `priors` row: the best grid point of the same fit with the model's components at 0, scored on the
    domain exactly as the hybrid with its model weight forced to 0 and as knn + pop combined by hand."""
    from recgpt.data import load_prepared
    from recgpt.predict.hybrid import fit_and_store, ndcg_at_k
    from recgpt.predict.protocols import build_test_cases
    from recgpt.predict.transfer import read_interactions

    folder = prepared_dir("ml-100k")
    rec = Recommender.from_pretrained(exported_model, embed_cfg=embed_config)
    fit = fit_and_store(rec, load_prepared(folder), ["code", "knn", "pop"], max_users=80, step=0.25)
    priors = fit["priors"]
    assert set(priors["weights"]) == {"knn", "pop"} and sum(priors["weights"].values()) == pytest.approx(1.0)
    model_free = [r["relative"] for r in fit["table"] if r["weights"]["code"] == 0]
    assert len(model_free) == 5 and priors["relative"] == max(model_free) <= fit["relative"]
    forced = {**fit["weights"], **priors["weights"], "code": 0.0}
    result = zero_shot_eval(rec, folder, "loo", 80, weighted={"priors": priors["weights"], "forced": forced})
    assert rec.model.config.score_weights == fit["weights"]  # the stored hybrid is left as it was
    cases = build_test_cases(read_interactions(folder), rec.catalog, "loo", 1, 0, 80)
    # pop: the catalog's own log before each user's target (every user of the domain), never a target
    before = popularity_before_targets(read_interactions(folder), rec.catalog, "loo", 1, 0)
    targets = torch.zeros(rec.catalog.n_items)
    targets.index_add_(0, torch.tensor([t[0] for t in cases.targets]), torch.ones(len(cases)))
    everything = popularity_before_targets(read_interactions(folder), rec.catalog, "horizon", 10 ** 9, 0)
    assert (torch.as_tensor(everything) - torch.as_tensor(before) >= targets).all()  # targets never counted
    parts = {"knn": baselines.content_knn_scores(cases.histories, rec.catalog.text_emb),
             "pop": torch.log1p(torch.as_tensor(before).float())[None].expand(len(cases.histories), -1)}
    by_hand = ndcg_at_k(combine(parts, priors["weights"]), [t[0] for t in cases.targets], cases.histories, 10)
    got = result["per_user"]["priors"]["NDCG"]
    assert np.array_equal(got, result["per_user"]["forced"]["NDCG"])
    assert got.mean() == pytest.approx(by_hand, abs=1e-6)


def test_given_lists_are_scored_on_the_same_users(prepared_dir, exported_model, embed_config):
    """`given` rows (lists made elsewhere, by raw item id, e.g. an in-domain SASRec+'s) are scored on the same
    test users as every other row; a user without a list is a miss and is counted."""
    from recgpt.predict.protocols import build_test_cases
    from recgpt.predict.transfer import read_interactions

    folder = prepared_dir("ml-100k")
    rec = Recommender.from_pretrained(exported_model, embed_cfg=embed_config)
    rec.set_catalog_from_prepared(folder)
    cases = build_test_cases(read_interactions(folder), rec.catalog, "loo", 1, 0, 60)
    knn = baselines.content_knn(cases.histories, rec.catalog.text_emb, 10, False)
    ids = rec.catalog.item_ids
    by_user = {str(u): [ids[r] for r in rows] for u, rows in zip(cases.user_ids[1:], knn[1:])}  # first one absent
    result = zero_shot_eval(rec, folder, "loo", 60, catalog_set=True, given={"elsewhere": by_user})
    got, want = result["per_user"]["elsewhere"]["NDCG"], result["per_user"]["content_knn"]["NDCG"]
    keep = result["given_covered"]["elsewhere"]
    assert not keep[0] and keep[1:].all() and got[0] == 0 and np.array_equal(got[1:], want[1:]) and want.sum() > 0
    on_covered = restrict(result, keep)  # every row on the covered users only, means recomputed
    assert on_covered["users"] == len(keep) - 1
    assert on_covered["methods"]["elsewhere"]["NDCG@10"] == pytest.approx(float(want[1:].mean()))


@pytest.mark.slow
def test_eval_selects_checkpoints_by_zero_shot_ndcg(tiny_run, tiny_train_cfg, tokenizer_cache_dir, tmp_path):
    """eval.select_by=zero_shot: every checkpoint is scored zero-shot on a held-out source domain (real Steam
    users of the bundled sample, not in the tiny corpus) and the best NDCG@10 is exported."""
    from recgpt.evaluate import select_checkpoints
    from recgpt.predict.transfer import TransferProbe

    repo = Path(__file__).resolve().parents[1]
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    cfg = tiny_train_cfg("eval.select_by=zero_shot", "eval.zero_shot_domain=sample_steam", "eval.zero_shot_users=150",
                         f"data.raw_root={repo / 'data' / 'sample'}", f"data.prepared_root={tmp_path / 'prepared'}",
                         f"embed.cache_dir={tokenizer_cache_dir}")
    selection = select_checkpoints(cfg, run)
    scores = {n: r["zero_shot_ndcg@10"] for n, r in selection["checkpoints"].items() if r["status"] == "ok"}
    assert len(scores) == 2 and selection["select_by"] == "zero_shot"
    assert scores[selection["best"]] == max(scores.values())
    probe = TransferProbe(cfg, run / "best" / "tokenizer")
    assert len(probe.cases) == 150
    assert probe.ndcg(ItemCodeDecoder.from_pretrained(str(run / "best"))) == pytest.approx(max(scores.values()))


def test_dense_pretraining_on_the_real_tiny_corpus(tiny_train_cfg, tiny_tokenizer):
    """Text input + per-dataset centering + dense head through the real trainer: inputs centered on each
    dataset's own mean, a finite loss, and a checkpoint whose model has the dense head."""
    import json
    import math

    from recgpt.data import load_corpus
    from recgpt.train.inputs import load_training_inputs
    from recgpt.train.trainer import pretrain

    cfg = tiny_train_cfg("model.recipe=hybrid", "model.codes.embedding=lookup",
                         f"train.text_embeddings_dir={tiny_tokenizer.parent / 'embeddings'}", "train.max_steps=6",
                         "train.eval_every=6", "train.save_every=6")
    inputs = load_training_inputs(cfg)
    datasets = load_corpus(cfg.data.corpus_dir).items.sort_values("item_index")["dataset"].to_numpy()
    for name in set(datasets):
        rows = torch.as_tensor(np.flatnonzero(datasets == name))
        assert inputs.text_emb[rows].mean(0).abs().max() < 1e-4
    summary = pretrain(cfg, inputs)
    assert math.isfinite(summary["loss"]) and math.isfinite(summary["heldout_loss"])
    meta = json.loads((next(Path(summary["run_dir"]).glob("step-*")) / "meta.json").read_text())
    saved = meta["model_config"]
    assert saved["embed_dim"] == inputs.text_emb.shape[1] and saved["model"]["center_text"]
    assert saved["model"]["dense"]["query"] == "content_state" and saved["model"]["codes"]["head"] == "parallel"


def test_save_initial_keeps_the_untrained_state_as_a_selection_candidate(tiny_train_cfg, tiny_tokenizer):
    """train.save_initial: step 0 is saved before the first update (untrained: the skip query's learned part
    and the tower's last layer are still zero), beside the trained steps, so zero-shot selection can pick it;
    the pooled query and the same-dataset objective with catalog negatives train through the real trainer."""
    import math

    from recgpt.evaluate import load_checkpoint_model
    from recgpt.train import checkpoint as ckpt
    from recgpt.train.trainer import pretrain

    cfg = tiny_train_cfg("model.recipe=text_dense", "model.dense.query=content_state", "model.dense.pool=3",
                         "model.dense.negatives=same_dataset", "model.dense.popularity=none", "model.dense.item_tower=true",
                         "model.dense.catalog_negatives=64", f"train.text_embeddings_dir={tiny_tokenizer.parent / 'embeddings'}",
                         "train.save_initial=true", "train.max_steps=3", "train.eval_every=3", "train.save_every=3")
    summary = pretrain(cfg)
    assert math.isfinite(summary["loss"])
    complete, _ = ckpt.list_checkpoints(summary["run_dir"])
    assert [p.name for p in complete] == ["step-00000000", "step-00000003"]
    first, last = (load_checkpoint_model(p, ckpt.read_meta(p)).dense_head for p in complete)
    assert not first.query.weight.any() and not first.tower[-1].weight.any()
    assert last.query.weight.abs().sum() > 0 and last.tower[-1].weight.abs().sum() > 0
    assert not first.recency.any() and last.recency.abs().sum() > 0 and last.attention != 0


def test_text_dense_config_loads():
    from recgpt.config import load_config

    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / "text_dense.yaml")
    assert len(cfg.data.datasets) == 12 and not {"amazon_scientific", "amazon14_beauty"} & set(cfg.data.datasets)
    assert cfg.eval.zero_shot_domain == "amazon14_beauty" and cfg.train.max_steps == 3000
    r = cfg.rerank  # its re-ranker: the same domains but the one that chooses its step, which predict reads
    assert set(r.sources) == set(cfg.data.datasets) - set(r.fit_domains) and r.fit_domains == ["amazon14_health"]
    assert cfg.predict.reranker == r.out and r.steps == 3000
    m = cfg.model
    assert m.recipe == "text_dense" and m.codes is None and m.text_input and m.center_text
    assert (m.dense.query, m.dense.pool, m.dense.item_tower) == ("content", 5, False)
    assert (m.dense.popularity, m.dense.negatives, m.dense.catalog_negatives) == ("gated", "catalog", 1024)
    config = ItemCodeDecoderConfig.from_recgpt(cfg.model, [15360] * 4 + [64], text_dim=384)
    assert config.dense_dim == 384 and config.scoring_weights() == {"dense": 1.0}
    model = ItemCodeDecoder(config)
    head = model.dense_head  # untrained: popularity ignored, content cosine at scale 1
    assert not head.popularity_scale.weight.any() and not head.popularity_scale.bias.any()
    assert model.head is None and head.query is None and head.tower is None  # parts that are off are not built
