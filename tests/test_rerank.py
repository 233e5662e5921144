"""The relational re-ranker (recgpt.predict.rerank): the log's co-occurrence (counted on planted sequences), a source never
counting the transition it trains on, and on real data (ml-100k and lastfm, MiniLM texts): the untrained re-ranker
returning its base rule, beta 0 returning recgpt's per-user rule, training lowering the loss on held-out draws,
`recgpt rerank` writing a folder that `recgpt predict predict.reranker=` and the Python API use, and bad inputs."""
import json

import numpy as np
import pytest
import torch

from recgpt.cli import main as recgpt_main
from recgpt.predict.rerank import COOC_BASE, Reranker
from recgpt.predict.rerank.cooccurrence import cooccurrence_matrix
from recgpt.predict.rerank.train import Domain, Holdout, evaluate, listwise_loss, ndcg_at_10

pytestmark = pytest.mark.usefixtures("one_thread")


def raw_counts(cn, occ):
    """The co-occurrence counts behind the normalized matrix (C[a, b] / sqrt(occ a occ b))."""
    return np.rint(cn.toarray() * np.sqrt(np.outer(occ, occ))).astype(int)


def test_cooccurrence_counts_pairs_within_the_window_both_ways_never_an_item_with_itself():
    rows = [[0, 1, 2, 3, 4], [2, 0, 0], [4]]
    cn, occ = cooccurrence_matrix(rows, 6, window=3)
    want = np.zeros((6, 6), int)
    for seq in rows:
        for i, a in enumerate(seq):
            for b in seq[i + 1:i + 4]:
                if a != b:
                    want[a, b] += 1
                    want[b, a] += 1
    counts = raw_counts(cn, occ)
    assert (counts == want).all() and (np.diag(counts) == 0).all()
    assert counts[0, 4] == 0 and counts[1, 4] == 1  # 4 positions apart: outside the window
    assert counts[2, 0] == 2 + 1  # 2 -> 0 in the second row once, 0 -> 2 in the first once: both directions
    np.testing.assert_allclose(occ, want.sum(1) + 1)
    assert occ[5] == 1 and cn[5].nnz == 0  # an item of no sequence co-occurs with nothing


@pytest.fixture(scope="module")
def ml100k(prepared_dir, real_embeddings, embed_config):
    folder = prepared_dir("ml-100k")
    return {"folder": folder, "source": Domain(folder, embed_config, "loo", train=True),
            "held": Domain(folder, embed_config, "loo")}


def test_a_source_never_counts_the_transition_it_trains_on(ml100k):
    source, held = ml100k["source"], ml100k["held"]
    train_counts = raw_counts(source.context.cooc, source.context.occ)
    held_counts = raw_counts(held.context.cooc, held.context.occ)
    assert all(len(s) >= 3 for s in source.sequences)
    # each trained transition (the last of a sequence) is counted at least once less than in the log before the
    # targets, which held-out domains read: the pair the ranker learns from is never among its inputs
    pairs = [(s[-2], s[-1]) for s in source.sequences if s[-2] != s[-1]]
    assert len(pairs) > 0.9 * len(source.sequences)
    assert all(held_counts[a, b] - train_counts[a, b] >= 1 for a, b in pairs)
    assert (train_counts <= held_counts).all()


def rule_ndcg(domain, users: int, beta: float) -> np.ndarray:
    from recgpt.predict.protocols import build_test_cases

    cases = build_test_cases(domain.inter, domain.catalog, "loo", 1, 0, users)
    return ndcg_at_10(domain.context.rule(cases.histories, beta), [t[0] for t in cases.targets])


def test_untrained_reranker_is_its_base_rule_and_beta_zero_is_the_per_user_rule(ml100k):
    from bench.balance import own_table, self_points
    from recgpt.predict.self_weights import LOG_STRENGTH

    held, users = ml100k["held"], 300
    _, untrained = evaluate(Reranker(), held, users)
    np.testing.assert_allclose(untrained, rule_ndcg(held, users, COOC_BASE), atol=1e-6)
    # beta 0 is the shipped per-user rule as bench/balance.py computes it on its own
    own = own_table(held.inter, held.catalog, held.context.emb, "loo", users)
    log = np.asarray(own["log"])
    shipped = np.asarray(own["ndcg"])[np.arange(users), self_points(own["own"], log / log.max(), LOG_STRENGTH)]
    np.testing.assert_allclose(rule_ndcg(held, users, 0.0), shipped, atol=1e-4)  # own_table rounds
    # the log's co-occurrence carries signal on movies: the base rule beats the per-user rule alone (1.8x measured)
    assert rule_ndcg(held, users, COOC_BASE).mean() > 1.3 * shipped.mean()


def test_weight_ranks_count_what_each_weights_full_catalog_scores_put_above_the_target(ml100k):
    from recgpt.predict.baselines import normalize_rows, user_vectors
    from recgpt.predict.rerank.context import WEIGHTS, weight_ranks
    from recgpt.predict.scoring import standardize

    source, context = ml100k["source"], ml100k["source"].context
    rows = source.sequences[:200]
    histories = [r[:-1] for r in rows]
    # real next items, and every fifth target an item of its own history (ranked below every other item)
    targets = [h[1] if i % 5 == 0 else r[-1] for i, (h, r) in enumerate(zip(histories, rows))]
    ranks, repeated = weight_ranks(context.emb, context.zpop_rule, histories, targets)
    z_cos = standardize(normalize_rows(user_vectors(histories, context.emb)) @ context.emb.t())
    for j, w in enumerate(WEIGHTS):  # directly: each history's items masked out of the whole catalog's scores
        score = w * z_cos + (1 - w) * context.zpop_rule
        for b, history in enumerate(histories):
            score[b, torch.as_tensor(history)] = -float("inf")
        want = (score > score[torch.arange(len(targets)), targets][:, None]).sum(1)
        assert torch.equal(ranks[:, j], want)
    assert repeated.tolist() == [t in h for t, h in zip(targets, histories)] and 40 <= int(repeated.sum()) < 200
    assert (ranks[~repeated] < context.n_items // 2).float().mean() > 0.5  # real next items rank high, not at random


def test_training_lowers_the_loss_on_draws_it_did_not_train_on(ml100k):
    source = ml100k["source"]
    ranker = Reranker()
    opt = torch.optim.AdamW(ranker.parameters(), lr=1e-3, weight_decay=0.01)

    def held_loss() -> float:
        with torch.no_grad():
            rng = np.random.default_rng(123)  # the same draws each time, never the training stream's
            return float(np.mean([listwise_loss(ranker, source, rng).item() for _ in range(6)]))

    before = held_loss()
    rng = np.random.default_rng(0)
    for _ in range(120):
        loss = listwise_loss(ranker, source, rng)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert held_loss() < before - 0.02


def test_a_step_averages_its_loss_over_consecutive_sources_of_the_round_robin(ml100k, prepared_dir, embed_config,
                                                                              monkeypatch):
    import recgpt.predict.rerank.train as train
    from recgpt.config import RerankConfig

    sources = {"lastfm": Domain(prepared_dir("lastfm"), embed_config, "loo", train=True), "ml-100k": ml100k["source"]}
    calls, real = [], train.listwise_loss

    def spy(ranker, domain, rng, size=32, draw=128):
        calls.append((domain.folder.name, size, draw))
        return real(ranker, domain, rng, size, draw)

    monkeypatch.setattr(train, "listwise_loss", spy)
    for k, want in ((1, ["lastfm", "ml-100k", "lastfm"]), (2, ["lastfm", "ml-100k"] * 3)):
        calls.clear()
        train.fit(sources, {"ml-100k": ml100k["held"]}, RerankConfig(steps=3, every=3, fit_users=50, domains_per_step=k),
                  lambda line: None)
        assert calls == [(name, 32 // k, 128 // k) for name in want]


@pytest.fixture(scope="module")
def trained(prepared_dir, embed_config, tmp_path_factory):
    """`recgpt rerank` on lastfm, its step chosen on ml-100k (a held-out source for this purpose)."""
    out = tmp_path_factory.mktemp("rerank") / "reranker"
    assert recgpt_main(["rerank", f"rerank.sources=[{prepared_dir('lastfm')}]",
                        f"rerank.fit_domains=[{prepared_dir('ml-100k')}]", "rerank.steps=6", "rerank.every=3",
                        "rerank.fit_users=100", f"rerank.out={out}", f"embed.cache_dir={embed_config.cache_dir}"]) == 0
    return out


def test_the_command_writes_a_reranker_that_loads_as_it_was_chosen(trained, ml100k):
    config = json.loads((trained / "config.json").read_text())
    assert config["sources"] == ["lastfm"] and config["fit_domains"] == ["ml-100k"]
    curve = config["curve"]["ml-100k"]
    assert set(curve) == {"0", "3", "6"} and config["step"] == int(max(curve, key=lambda s: (curve[s], -int(s))))
    ranker = Reranker.load(trained)
    _, ndcg = evaluate(ranker, ml100k["held"], 100)  # the fit domain's users: the chosen step's figure again
    assert abs(ndcg.mean() - curve[str(config["step"])]) < 1e-6
    assert json.loads((trained / "manifest.json").read_text())["stage"] == "rerank"


def test_predict_reports_the_reranker_beside_its_base_rule_with_intervals(trained, exported_model, prepared_dir,
                                                                        embed_config, tmp_path):
    out = tmp_path / "report"
    assert recgpt_main(["predict", "--dataset", str(prepared_dir("ml-100k")), f"predict.model_dir={exported_model}",
                        f"predict.reranker={trained}", "predict.max_users=200", f"predict.output_dir={out}",
                        f"embed.cache_dir={embed_config.cache_dir}"]) == 0
    result = json.loads((out / "metrics.json").read_text())
    # (this export has no score fit, so no priors row: tests/test_predict_self_weights.py covers that row)
    assert result["weights"]["mode"] == "reranker" and {"model", "priors+cooc", "content_knn"} <= set(result["methods"])
    assert any("re-ranker lists items outside" in n for n in result["notes"])  # allow_history auto: excluded
    versus = result["model_vs"]
    knn = versus["content_knn"]
    assert versus["metric"] == "NDCG@10" and knn["lo"] <= knn["ratio"] <= knn["hi"] and knn["lo"] > 1.5
    assert not any("weights=self" in n for n in result["notes"])  # the model row is not the weights' list
    assert not any("in-domain figure" in n for n in result["notes"])  # trained on lastfm, not ml-100k
    source = tmp_path / "on-its-source"  # on a dataset it trained on, the report says the figure is in-domain
    assert recgpt_main(["predict", "--dataset", str(prepared_dir("lastfm")), f"predict.model_dir={exported_model}",
                        f"predict.reranker={trained}", "predict.max_users=100", "predict.protocol=cold",
                        f"predict.output_dir={source}", f"embed.cache_dir={embed_config.cache_dir}"]) == 0
    notes = json.loads((source / "metrics.json").read_text())["notes"]
    assert any("trained on lastfm" in n and "not zero-shot" in n and "under cold" in n for n in notes)
    step0 = Reranker()  # untrained: the model row is the base rule's list
    from recgpt.predict import Recommender
    rec = Recommender.from_pretrained(exported_model, embed_cfg=embed_config)
    rec.set_catalog_from_prepared(prepared_dir("ml-100k"))
    histories = [["1", "2", "3"], ["50", "181"]]
    rec.set_reranker(step0)
    from recgpt.predict.rerank import catalog_context
    from recgpt.predict.rerank.model import top_rows
    got = rec.recommend(histories, k=10)
    rows = [rec.catalog.rows(h)[0] for h in histories]
    want = [[rec.catalog.item_ids[r] for r in row] for row in top_rows(catalog_context(rec).rule, rows, 10)[0]]
    assert got.item_ids == want and not set(got.item_ids[0]) & set(histories[0])
    rec.set_reranker(None)
    assert rec.recommend(histories, k=10).item_ids != want  # without it, the model's own scoring


def test_bad_reranker_folders_are_refused_with_their_path(trained, tmp_path, exported_model, embed_config,
                                                          prepared_dir, capsys):
    from recgpt.io import ArtifactError
    from recgpt.predict import Recommender

    out = tmp_path / "report"  # a re-ranker not trained yet: refused before any work, saying how to get one
    assert recgpt_main(["predict", "--dataset", str(prepared_dir("ml-100k")), f"predict.model_dir={exported_model}",
                        f"predict.reranker={tmp_path / 'untrained'}", f"predict.output_dir={out}"]) == 2
    assert "predict.reranker" in capsys.readouterr().err and not out.exists()

    with pytest.raises(ArtifactError, match="missing model.safetensors"):
        (tmp_path / "half").mkdir()
        (tmp_path / "half" / "config.json").write_text("{}")
        Reranker.load(tmp_path / "half")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text(json.dumps({"format": "something else"}))
    (bad / "model.safetensors").write_bytes((trained / "model.safetensors").read_bytes())
    with pytest.raises(ArtifactError, match=f"{bad}.*not a recgpt re-ranker"):
        Reranker.load(bad)
    config = json.loads((trained / "config.json").read_text())
    (bad / "config.json").write_text(json.dumps({**config, "hidden": 32}))
    with pytest.raises(ArtifactError, match="does not match its config.json"):
        Reranker.load(bad)
    (bad / "config.json").write_text(json.dumps(config))
    (bad / "model.safetensors").write_bytes(b"not a tensor file")
    with pytest.raises(ArtifactError, match="not a readable safetensors"):
        Reranker.load(bad)
    (bad / "config.json").write_text(json.dumps({**config, "embed_model": "all-mpnet-base-v2"}))
    (bad / "model.safetensors").write_bytes((trained / "model.safetensors").read_bytes())
    rec = Recommender.from_pretrained(exported_model, embed_cfg=embed_config)
    with pytest.raises(ValueError, match="trained on all-mpnet-base-v2 item embeddings"):
        rec.set_reranker(bad)


def test_without_a_log_the_reranker_is_skipped_with_a_note(trained, exported_model, embed_config, prepared_dir):
    from recgpt.predict import Recommender

    rec = Recommender.from_pretrained(exported_model, embed_cfg=embed_config)
    rec.set_catalog_from_prepared(prepared_dir("ml-100k"), popularity=None)
    rec.set_reranker(trained)
    out = rec.recommend([["1", "2", "3"]], k=5)
    assert len(out.item_ids[0]) == 5 and any("reads the catalog's interaction log" in n for n in out.notes)


def test_the_command_refuses_missing_domains_and_overlaps(prepared_dir, tmp_path):
    ml = str(prepared_dir("ml-100k"))
    assert recgpt_main(["rerank", f"rerank.out={tmp_path / 'r'}"]) == 2  # no sources
    assert recgpt_main(["rerank", f"rerank.sources=[{ml}]", f"rerank.fit_domains=[{ml}]"]) == 2
    assert recgpt_main(["rerank", "rerank.sources=[no-such-set]", f"rerank.fit_domains=[{ml}]"]) == 2
    assert not (tmp_path / "r").exists()


def test_the_command_never_replaces_a_folder_it_did_not_write(prepared_dir, tmp_path, trained, embed_config):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    args = [f"rerank.sources=[{prepared_dir('lastfm')}]", f"rerank.fit_domains=[{prepared_dir('ml-100k')}]",
            "rerank.steps=0", f"embed.cache_dir={embed_config.cache_dir}"]
    assert recgpt_main(["rerank", *args, f"rerank.out={mine}"]) == 2
    assert [p.name for p in mine.iterdir()] == ["notes.txt"] and (mine / "notes.txt").read_text() == "keep me"
    again = tmp_path / "again"  # a re-ranker folder is rebuilt whole
    again.mkdir()
    for name in ("config.json", "model.safetensors", "manifest.json"):
        (again / name).write_bytes((trained / name).read_bytes())
    assert recgpt_main(["rerank", *args, f"rerank.out={again}"]) == 0
    assert json.loads((again / "config.json").read_text())["step"] == 0


def test_held_out_users_leave_training_and_are_scored_on_the_transition_it_holds_out(prepared_dir, embed_config,
                                                                                   ml100k):
    source = Domain(prepared_dir("ml-100k"), embed_config, "loo", train=True)
    every = list(source.sequences)
    held = Holdout(source, 200, seed=3)
    assert len(source.sequences) == len(every) - 200 and held.context is source.context
    trained = {tuple(s) for s in source.sequences}
    cases = held.cases(1000)
    assert 150 < len(cases.histories) <= 200
    for history, (target,) in zip(cases.histories, cases.targets):
        assert tuple(history) + (target,) in {tuple(s) for s in every} - trained and target not in history
    # the same seed holds out the same users; another seed others
    again = Holdout(Domain(prepared_dir("ml-100k"), embed_config, "loo", train=True), 200, seed=3)
    other = Holdout(Domain(prepared_dir("ml-100k"), embed_config, "loo", train=True), 200, seed=4)
    assert again.cases(1).targets == cases.targets and other.cases(1).targets != cases.targets
    with pytest.raises(ValueError, match="rerank.valid_users: 9.* leaves none"):
        Holdout(Domain(prepared_dir("ml-100k"), embed_config, "loo", train=True), len(every), seed=0)
    with pytest.raises(ValueError, match="not of a fit domain"):
        Holdout(ml100k["held"], 10)


def test_fine_tuning_starts_from_the_given_reranker_and_chooses_on_held_out_users(prepared_dir, embed_config,
                                                                                 tmp_path):
    ml, out, trained = str(prepared_dir("ml-100k")), tmp_path / "tuned", tmp_path / "start"
    start = Reranker(hidden=32, meta={"embed_model": embed_config.model})
    torch.nn.init.normal_(start.mlp[-1].weight, std=1.0)  # a re-ranker far from the base rule: its MLP leads
    torch.nn.init.constant_(start.log_scale, -3.0)
    trained.mkdir()
    start.save(trained)
    args = ["rerank", f"rerank.sources=[{ml}]", "rerank.valid_users=200", "rerank.steps=4", "rerank.every=2",
            f"embed.cache_dir={embed_config.cache_dir}"]
    assert recgpt_main([*args, f"rerank.init_from={trained}", "rerank.hidden=16", f"rerank.out={out}"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["fit_domains"] == ["ml-100k, held-out users"] and config["init_from"] == str(trained)
    assert config["hidden"] == 32  # the start's, not 16
    holdout = Holdout(Domain(ml, embed_config, "loo", train=True), 200, seed=0)
    curve = config["curve"]["ml-100k, held-out users"]
    start = evaluate(Reranker.load(trained), holdout, 0)[1]
    base = evaluate(Reranker(), holdout, 0)[1]
    assert abs(curve["0"] - start.mean()) < 1e-6  # step 0 is the given re-ranker's, which ranks unlike the base rule
    assert (np.abs(start - base) > 1e-6).sum() >= 10
    assert abs(evaluate(Reranker.load(out), holdout, 0)[1].mean() - curve[str(config["step"])]) < 1e-6
    bad = tmp_path / "refused"
    assert recgpt_main([*args, f"rerank.init_from={tmp_path / 'none'}", f"rerank.out={bad}"]) == 2
    assert recgpt_main([*args, "rerank.valid_users=100000", f"rerank.out={bad}"]) == 2
    assert recgpt_main([*args[:2], "rerank.steps=1", f"rerank.out={bad}"]) == 2  # neither fit domains nor users
    other = tmp_path / "other-model"  # trained on another embedding model
    other.mkdir()
    Reranker(meta={"embed_model": "all-mpnet-base-v2"}).save(other)
    assert recgpt_main([*args, f"rerank.init_from={other}", f"rerank.out={bad}"]) == 2
    assert not bad.exists()


def test_a_catalog_barely_larger_than_the_history_lists_every_other_item_once():
    from recgpt.predict.rerank import DomainContext

    rng = np.random.default_rng(0)
    rows = [list(rng.permutation(12)[:6]) for _ in range(30)]
    context = DomainContext(rng.normal(size=(12, 8)), np.bincount(np.concatenate(rows), minlength=12), rows, rows)
    ranker = Reranker(rerank=100)  # more than the catalog holds
    torch.nn.init.normal_(ranker.mlp[-1].weight)  # a trained-like ranker, not the base rule
    history = [0, 1, 2, 3, 4, 5, 6, 7]
    lists, scores = ranker.recommend(context, [history], k=10)
    assert sorted(lists[0]) == [8, 9, 10, 11] and all(np.isfinite(scores[0]))
    short, _ = ranker.recommend(context, [[3]], k=11)
    assert sorted(short[0]) == sorted(set(range(12)) - {3})


@pytest.mark.parametrize("override, key", [("rerank.steps=-1", "rerank.steps: must be >= 0"),
                                           ("rerank.every=0", "rerank.every: must be >= 1"),
                                           ("rerank.lr=0", "rerank.lr"),
                                           ("rerank.valid_users=-1", "rerank.valid_users: must be >= 0"),
                                           ("rerank.domains_per_step=0", "rerank.domains_per_step: must be >= 1"),
                                           ("rerank.domains_per_step=33", "at most rerank.batch"),
                                           ("rerank.sources=[a,a]", "given twice")])
def test_bad_values_are_refused_naming_the_key(override, key):
    from recgpt.config import ConfigError, load_config

    with pytest.raises(ConfigError, match=key.replace("[", r"\[")):
        load_config(None, [override])
