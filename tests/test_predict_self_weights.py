"""Per-user score weights from the user's own history (recgpt.predict.self_weights, predict.weights=self): the
choice rule on planted ranks, then on real ml-100k users with a real (random) exported model: each user gets the
grid point that ranks its own last history item best, the ranking with those points is what the grid's rank
counts say, and one point for every user is the fitted hybrid itself."""
import numpy as np
import pytest
import torch

from recgpt.predict import Recommender
from recgpt.predict.self_weights import (LOG_STRENGTH, STRENGTH, choose, log_prior, log_rows, own_cases, own_ranks,
                                         rank_self_weighted, read_fit_domains, read_prior, self_weights)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_choose_takes_the_point_that_ranks_the_own_item_best_and_the_prior_otherwise():
    prior = [1.0, 0.5, 0.2]
    # users 0, 2 and 3 have an own item (user 1 has one history item); user 2's repeats an earlier one (-1)
    ranks = torch.tensor([[50, -1, 3], [0, -1, 3], [100, -1, 3]])
    points = choose(ranks, [0, 2, 3], 4, prior, strength=0.2)
    assert points.tolist() == [1, 0, 0, 0]  # rank 0 beats the prior's lead; equal ranks: the prior decides
    assert choose(ranks, [0, 2, 3], 4, prior, strength=1e6).tolist() == [0, 0, 0, 0]
    assert choose(ranks, [0, 2, 3], 4, [0.2, 0.5, 1.0], strength=0.0).tolist() == [1, 0, 0, 0]  # ties: earlier
    with pytest.raises(ValueError, match="2 values for a grid of 3"):
        choose(ranks, [0, 2, 3], 4, [1.0, 0.5])
    assert own_cases([[4], [1, 2, 3], []]) == ([1], [[1, 2]], [3])


def test_log_rows_keep_seeded_sequences_with_two_known_items():
    from recgpt.predict.transfer import ItemRows

    catalog = ItemRows(["a", "b", "c"])
    # "x" is not in the catalog: dropped, and a sequence left with one item is out
    assert log_rows([["a", "b"], ["a"], ["x", "a"], ["a", "x", "c"], ["b", "c", "a"]], catalog) == \
        [[0, 1], [0, 2], [1, 2, 0]]
    many = [["a", "b"]] * 10 + [["c", "a"]] * 10
    picked = log_rows(many, catalog, limit=5, seed=1)
    assert len(picked) == 5 and picked == log_rows(many, catalog, limit=5, seed=1)
    assert {tuple(r) for r in log_rows(many, catalog, limit=12, seed=2)} == {(0, 1), (2, 0)}


@pytest.fixture(scope="module")
def fitted(prepared_dir, exported_model, embed_config):
    """The real model fitted on ml-100k (its grid: the prior) and 120 seeded LOO users, popularity as predict sets it."""
    from recgpt.data import load_prepared
    from recgpt.predict.hybrid import fit_and_store
    from recgpt.predict.protocols import build_test_cases

    prepared = load_prepared(prepared_dir("ml-100k"))
    rec = Recommender.from_pretrained(exported_model, embed_cfg=embed_config)
    fit = fit_and_store(rec, prepared, ["code", "knn", "pop"], max_users=80, step=0.25)  # leaves loo popularity set
    cases = build_test_cases(prepared.interactions, rec.catalog, "loo", 1, 0, 120)
    grid, prior = [row["weights"] for row in fit["table"]], [row["relative"] for row in fit["table"]]
    return rec, fit, cases, grid, prior


def test_each_user_gets_the_point_that_ranks_its_last_history_item_best(fitted):
    from recgpt.predict.hybrid import component_chunks, grid_ranks

    rec, fit, cases, grid, prior = fitted
    points = self_weights(rec, cases.histories, grid, prior, strength=0.0)
    users, before, last = own_cases(cases.histories)
    assert len(users) == len(cases)  # LOO users of ml-100k have long histories
    ranks = grid_ranks(component_chunks(rec, before, ["code", "knn", "pop"]), last, before, grid, rec.catalog.n_items)
    ranked = ranks.ge(0).all(0)
    chosen = ranks[points[users], torch.arange(len(users))]
    assert torch.equal(chosen[ranked], ranks[:, ranked].min(0).values)  # the best rank of the own item
    assert len(set(points.tolist())) > 1  # users differ: not one weight for everyone
    best = grid.index(fit["weights"])
    assert (self_weights(rec, cases.histories, grid, prior, strength=1e6) == best).all()  # the prior alone: the fit


def test_ranking_with_the_points_is_what_the_grid_ranks_say(fitted):
    from recgpt.predict.hybrid import component_chunks, grid_ranks, rank_gains
    from recgpt.predict.metrics import per_user

    rec, fit, cases, grid, prior = fitted
    targets = [t[0] for t in cases.targets]
    gains = rank_gains(grid_ranks(component_chunks(rec, cases.histories, ["code", "knn", "pop"]), targets,
                                  cases.histories, grid, rec.catalog.n_items), 10).numpy()
    points = self_weights(rec, cases.histories, grid, prior)
    lists, scores = rank_self_weighted(rec, cases.histories, grid, points, 10)
    ndcg = per_user(lists, cases.targets, 10)["NDCG"]
    assert np.allclose(ndcg, gains[points.numpy(), np.arange(len(cases))], atol=1e-6)
    assert all(not set(r) & set(h) for r, h in zip(lists, cases.histories))
    assert all(s == sorted(s, reverse=True) and len(s) == 10 for s in scores)
    # one point for everyone, the fitted one: the hybrid as recommend_rows scores it
    best = torch.full((len(cases),), grid.index(fit["weights"]))
    same, _ = rank_self_weighted(rec, cases.histories, grid, best, 10)
    stored, _ = rec.recommend_rows(cases.histories, 10, allow_history=False)
    assert same == stored
    with_history, _ = rank_self_weighted(rec, cases.histories[:5], grid, points[:5], 10, allow_history=True)
    assert any(set(r) & set(h) for r, h in zip(with_history, cases.histories[:5]))


def test_the_log_prior_ranks_the_logs_last_items_and_never_reads_a_target(fitted, prepared_dir):
    """log_prior: per grid point, the mean gain of each log sequence's last item ranked from the items before it;
    the sequences are the log before the LOO targets, so changing every target leaves it as it was."""
    from recgpt.data import load_prepared
    from recgpt.predict.hybrid import rank_gains
    from recgpt.predict.protocols import sequences_before_targets

    rec, fit, cases, grid, prior = fitted
    inter = load_prepared(prepared_dir("ml-100k")).interactions
    rows = log_rows(sequences_before_targets(inter, "loo", 1, 0), rec.catalog, limit=300)
    assert len(rows) == 300
    curve = log_prior(rec, rows, grid)
    _, ranks = own_ranks(rec, rows, grid)
    mean = rank_gains(ranks[:, ranks.ge(0).all(0)], None).mean(1)
    assert np.allclose(curve, (mean / mean.max()).numpy()) and max(curve) == 1.0 and min(curve) > 0
    assert len({round(v, 6) for v in curve}) > len(grid) // 2  # the points differ: the log tells them apart
    changed = inter.copy()
    last = changed.groupby("user_id")["position"].transform("max") == changed["position"]
    changed.loc[last, "item_id"] = str(rec.catalog.item_ids[0])
    assert log_rows(sequences_before_targets(changed, "loo", 1, 0), rec.catalog, limit=300) == rows


def test_read_prior(tmp_path):
    from recgpt.io import write_json

    assert read_prior(tmp_path) is None  # no score fit
    write_json(tmp_path / "score_fit.json", {"weights": {"knn": 1.0}})
    assert read_prior(tmp_path) is None  # a fit kept without its grid
    write_json(tmp_path / "score_fit.json", {"table": [{"weights": {"knn": 1.0, "pop": 0.0}, "relative": 0.9}]})
    assert read_prior(tmp_path) == ([{"knn": 1.0, "pop": 0.0}], [0.9])
    write_json(tmp_path / "score_fit.json", {"table": [{"weights": {"knn": 1.0}}]})
    with pytest.raises(ValueError, match="score_fit.json: its table must list"):
        read_prior(tmp_path)
    assert read_fit_domains(tmp_path) == []
    write_json(tmp_path / "score_fit.json", {"ndcg": {"steam": 0.1, "yelp": 0.02}})  # an export of before "domains"
    assert read_fit_domains(tmp_path) == ["steam", "yelp"]
    write_json(tmp_path / "score_fit.json", {"ndcg": {"steam": 0.1}, "domains": ["yelp"]})
    assert read_fit_domains(tmp_path) == ["yelp"]
    assert read_fit_domains(tmp_path / "nothing") == []


def test_the_api_scores_with_the_grid_stored_beside_the_export(fitted, exported_model, prepared_dir, embed_config,
                                                                tmp_path):
    """Recommender.from_pretrained reads the score fit's grid (score_fit.json, as `recgpt eval` writes it):
    recommend(..., weights="self") ranks as the module does; a multi-step strategy, or an export without the
    grid, gets the fitted weights and a note saying so."""
    import shutil

    from recgpt.config import ConfigError
    from recgpt.data import load_prepared
    from recgpt.data.splits import user_sequences
    from recgpt.io import write_json
    from recgpt.predict.protocols import popularity_before_targets, sequences_before_targets

    rec, fit, cases, grid, prior = fitted
    export = tmp_path / "best"
    shutil.copytree(exported_model, export)
    prepared = load_prepared(prepared_dir("ml-100k"))
    before = sequences_before_targets(prepared.interactions, "loo", 1, 0)

    def loaded(domains):  # the export with the fit stored as made on `domains`, on ml-100k's catalog
        write_json(export / "score_fit.json", {**fit, "domains": domains})
        api = Recommender.from_pretrained(export, embed_cfg=embed_config)
        catalog = api.set_catalog_from_prepared(prepared, popularity=None)
        api.set_popularity(popularity_before_targets(prepared.interactions, catalog, "loo", 1, 0))
        return api

    histories = cases.histories[:30]

    def expected(curve, strength):
        points = self_weights(rec, histories, grid, curve, strength)
        return [[rec.catalog.item_ids[r] for r in row] for row in rank_self_weighted(rec, histories, grid, points, 10)[0]]

    api = loaded(["other"])  # fitted on another dataset: the prior is the fit's until the catalog has a log
    ids = [[api.catalog.item_ids[r] for r in h] for h in histories]
    out = api.recommend(ids, k=10, allow_history=False, weights="self")
    assert out.item_ids == expected(prior, STRENGTH) and any("no interaction log" in n for n in out.notes)
    api.set_log(before)  # the log before the targets, as `recgpt predict` gives it: its prior, no note
    logged = api.recommend(ids, k=10, allow_history=False, weights="self")
    curve = log_prior(rec, log_rows(before, rec.catalog), grid)
    assert logged.item_ids == expected(curve, LOG_STRENGTH) and not logged.notes and api.log_prior == curve
    assert logged.item_ids != out.item_ids
    api = loaded(["ml-100k"])  # fitted on ml-100k itself (in-domain): that fit stays the prior, log or not
    api.set_log(before)
    own = api.recommend(ids, k=10, allow_history=False, weights="self")
    assert own.item_ids == expected(prior, STRENGTH) and not own.notes and api.log_prior is None
    greedy = api.recommend(ids[:3], k=5, strategy="greedy", weights="self")
    assert any("scores one exact step" in n for n in greedy.notes)
    plain = Recommender.from_pretrained(exported_model, embed_cfg=embed_config)
    plain.set_catalog_from_prepared(prepared)
    assert len(plain.log) == sum(len(s) >= 2 for s in user_sequences(prepared.interactions))  # its whole log
    assert any("holds no fitted weight grid" in n for n in plain.recommend(ids[:3], k=5, weights="self").notes)
    with pytest.raises(ConfigError, match="weights: one of"):
        api.recommend(ids[:3], k=5, weights="best")
