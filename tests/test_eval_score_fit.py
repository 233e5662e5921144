"""`recgpt eval` with eval.score_fit: hybrid score weights fitted on a held-out source domain (real Steam users of
the bundled sample, not in the tiny corpus) after the export, stored in best/config.json and score_fit.json, so
that from_pretrained scores with them; refusals leave the run folder as it was."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from recgpt.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_thread")
COMPONENTS, USERS = ["code", "knn", "pop"], 120


@pytest.fixture(scope="module")
def fit_overrides(tmp_path_factory, tokenizer_cache_dir):
    """The fit on sample_steam and where it is prepared (data.raw_root: the bundled sample)."""
    return [f"data.raw_root={REPO / 'data' / 'sample'}", f"data.prepared_root={tmp_path_factory.mktemp('prepared')}",
            f"embed.cache_dir={tokenizer_cache_dir}", f"eval.score_fit=[{','.join(COMPONENTS)}]",
            "eval.score_fit_domains=[sample_steam]", f"eval.score_fit_users={USERS}"]


@pytest.fixture(scope="module")
def fitted_run(tiny_run, fit_overrides, tmp_path_factory):
    """A copy of the session's tiny run after `recgpt eval --ckpt <run>` with the fit; (run, its stdout)."""
    import contextlib
    import io

    from recgpt.cli import main

    run = tmp_path_factory.mktemp("score_fit") / "run"
    shutil.copytree(tiny_run, run)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["eval", "--ckpt", str(run), *fit_overrides]) == 0
    return run, out.getvalue()


def snapshot(folder: Path) -> dict:
    """Every file recgpt's outputs hold (bytes and mtime); the writers' lock files (`.<name>.lock`) aside."""
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.name.endswith(".lock")}


@pytest.mark.slow
def test_eval_fits_stores_and_from_pretrained_scores_with_the_weights(fitted_run, fit_overrides, embed_config):
    from recgpt.data import load_prepared
    from recgpt.predict import Recommender
    from recgpt.predict.hybrid import fit_and_store
    from recgpt.predict.transfer import zero_shot_eval

    run, stdout = fitted_run
    best = run / "best"
    stored = json.loads((best / "config.json").read_text())["score_weights"]
    saved = json.loads((best / "score_fit.json").read_text())
    assert saved["weights"] == stored and set(stored) == set(COMPONENTS)
    best_row = max(saved["table"], key=lambda row: row["relative"])  # the grid kept: predict.weights=self's prior
    assert best_row["weights"] == stored and best_row["relative"] == pytest.approx(saved["relative"])
    assert json.loads((run / "selection.json").read_text())["score_weights"] == stored
    assert sum(1 for line in stdout.splitlines() if line.startswith("score weights")) == 1
    cfg = load_config(run / "config.yaml", fit_overrides)
    folder = Path(cfg.data.prepared_root) / "sample_steam"
    # the same fit on the same model, domain and users, by hand
    rec = Recommender.from_pretrained(best, embed_cfg=embed_config)
    assert rec.model.config.scoring_weights() == stored
    by_hand = fit_and_store(rec, [load_prepared(folder)], COMPONENTS, USERS)
    assert by_hand["weights"] == stored
    assert saved["ndcg"] == pytest.approx(by_hand["ndcg"]) and saved["priors"]["weights"] == by_hand["priors"]["weights"]
    assert set(saved["priors"]["weights"]) == {"knn", "pop"} and saved["priors"]["ndcg"] == pytest.approx(
        by_hand["priors"]["ndcg"])
    # from_pretrained scores the fit domain as the fit measured it
    rec = Recommender.from_pretrained(best, embed_cfg=embed_config)
    result = zero_shot_eval(rec, folder, "loo", USERS)
    assert result["users"] == USERS
    assert result["methods"]["model"]["NDCG@10"] == pytest.approx(saved["ndcg"]["sample_steam"], abs=1e-6)


@pytest.mark.slow
def test_predict_scores_each_user_with_weights_chosen_on_its_own_history(fitted_run, fit_overrides, tmp_path):
    """predict.weights=self on the fitted export: users are scored with several points of the stored grid; with
    predict.weights=fitted, and for a multi-step strategy, every user gets the stored weights."""
    from recgpt.cli import main

    run, _ = fitted_run
    stored = json.loads((run / "best" / "config.json").read_text())["score_weights"]
    common = ["predict", "--dataset", "sample_steam", f"predict.model_dir={run / 'best'}", "predict.max_users=100",
              *fit_overrides]
    used = {}
    for weights in ("self", "fitted"):
        assert main([*common, f"predict.weights={weights}", f"predict.output_dir={tmp_path / weights}"]) == 0
        result = json.loads((tmp_path / weights / "metrics.json").read_text())
        assert result["weights"]["mode"] == weights and result["config"]["weights"] == weights
        # the fit was made on sample_steam itself: it stays the prior of the per-user weights
        assert result["weights"]["prior"] == ("fit" if weights == "self" else None)
        used[weights] = result["weights"]["users_per_weights"]
        assert sum(used[weights].values()) == result["counts"]["evaluated"]
        # the priors row: content kNN and popularity chosen as the model's weights are, every model part at 0
        priors = result["weights"]["priors_users_per_weights"]
        assert "priors" in result["methods"] and sum(priors.values()) == result["counts"]["evaluated"]
        assert all(json.loads(k).get("code", 0) == 0 and json.loads(k).get("dense", 0) == 0 for k in priors)
        assert "| priors | NDCG |" in (tmp_path / weights / "metrics.md").read_text()
    assert len(used["self"]) > 1 and list(used["fitted"]) == [json.dumps(stored, sort_keys=True)]
    # on the fit's own users (its domain and count, history excluded) both rows are the fit's own figures
    assert main([*common, "predict.weights=fitted", f"predict.max_users={USERS}", "predict.allow_history=false",
                 f"predict.output_dir={tmp_path / 'fit_users'}"]) == 0
    result = json.loads((tmp_path / "fit_users" / "metrics.json").read_text())
    methods, repeats = result["methods"], result["counts"]["targets_in_history"]
    assert bool(repeats) == any("have a target among their own history items" in n for n in result["notes"])
    saved = json.loads((run / "best" / "score_fit.json").read_text())
    assert methods["model"]["NDCG@10"] == pytest.approx(saved["ndcg"]["sample_steam"], abs=1e-6)
    assert methods["priors"]["NDCG@10"] == pytest.approx(saved["priors"]["ndcg"]["sample_steam"], abs=1e-6)
    # a dataset the fit did not see: recgpt predict gives its log before the targets, the prior of the weights
    other = ["predict", "--dataset", "sample_amazon_scientific", f"predict.model_dir={run / 'best'}",
             "predict.max_users=100", f"predict.output_dir={tmp_path / 'other'}", *fit_overrides]
    assert main(other) == 0
    result = json.loads((tmp_path / "other" / "metrics.json").read_text())
    assert result["weights"]["mode"] == "self" and result["weights"]["prior"] == "log" and not result["notes"]
    assert main([*common, "--strategy", "greedy", "--horizon", "2", f"predict.output_dir={tmp_path / 'greedy'}"]) == 0
    result = json.loads((tmp_path / "greedy" / "metrics.json").read_text())
    assert result["weights"]["mode"] == "fitted" and any("scores one exact step" in n for n in result["notes"])
    # the exact strategy's list is one step's top K at any horizon: per-user weights there too
    assert main([*common, "--horizon", "2", f"predict.output_dir={tmp_path / 'horizon'}"]) == 0
    result = json.loads((tmp_path / "horizon" / "metrics.json").read_text())
    assert result["weights"]["mode"] == "self" and not any("scores one exact step" in n for n in result["notes"])
    assert len(result["weights"]["users_per_weights"]) > 1


@pytest.mark.slow
def test_auto_history_places_own_items_only_where_the_log_repeats(fitted_run, fit_overrides, tmp_path):
    """predict.allow_history=auto (recgpt.predict.repeats): where the catalog's log never repeats an item (the
    Amazon sample) the lists are the history-excluded ones; steam's users review a game again, so own items enter
    its lists, and taking them out leaves the history-excluded list's head in its order."""
    import pandas as pd

    from recgpt.cli import main

    run, _ = fitted_run
    lists, reports = {}, {}
    for dataset in ("sample_amazon_scientific", "sample_steam"):
        for mode in ("false", "auto"):
            out = tmp_path / f"{dataset}-{mode}"
            assert main(["predict", "--dataset", dataset, f"predict.model_dir={run / 'best'}", "predict.max_users=200",
                         f"predict.allow_history={mode}", f"predict.output_dir={out}", *fit_overrides]) == 0
            reports[dataset, mode] = json.loads((out / "metrics.json").read_text())
            frame = pd.read_parquet(out / "recommendations.parquet")
            lists[dataset, mode] = frame.groupby("user_id", sort=True)["item_id"].agg(list).to_dict()
    amazon, steam = reports["sample_amazon_scientific", "auto"], reports["sample_steam", "auto"]
    assert amazon["allow_history"] == "auto" and amazon["repeats"]["repeat_share_top"] == 0
    assert lists["sample_amazon_scientific", "auto"] == lists["sample_amazon_scientific", "false"]
    assert amazon["methods"] == reports["sample_amazon_scientific", "false"]["methods"]
    assert reports["sample_steam", "false"]["repeats"] is None and steam["repeats"]["repeat_share_top"] > 0
    placed = 0
    for user, auto in lists["sample_steam", "auto"].items():
        excluded = lists["sample_steam", "false"][user]
        new = [i for i in auto if i in excluded]
        assert new == excluded[:len(new)] and len(set(auto)) == len(auto) == len(excluded)
        placed += len(auto) - len(new)
    assert placed > 0 and steam["repeats"]["history_items_per_top10"] > 0
    # the Python API places them alike, given the log before the targets as recgpt predict gives it
    from recgpt.data import load_prepared
    from recgpt.predict import Recommender
    from recgpt.predict.protocols import build_test_cases, popularity_before_targets, sequences_before_targets

    cfg = load_config(run / "config.yaml", fit_overrides)
    prepared = load_prepared(Path(cfg.data.prepared_root) / "sample_steam")
    api = Recommender.from_pretrained(run / "best", embed_cfg=cfg.embed)
    catalog = api.set_catalog_from_prepared(prepared, popularity=None)
    api.set_popularity(popularity_before_targets(prepared.interactions, catalog, "loo", 1, 0))
    api.set_log(sequences_before_targets(prepared.interactions, "loo", 1, 0))
    cases = build_test_cases(prepared.interactions, api.catalog, "loo", 1, 0, 200)
    rows, _ = api.recommend_rows(cases.histories, 20, allow_history="auto", weights="self")
    by_api = {str(u): [api.catalog.item_ids[r] for r in row] for u, row in zip(cases.user_ids, rows)}
    assert by_api == lists["sample_steam", "auto"]
    # the horizon protocol (the last two items a target set): shares read from the log's sequences longer than two,
    # the same merge; a horizon that leaves too few such sequences excludes the history with its note
    for mode in ("false", "auto"):
        out = tmp_path / f"horizon-{mode}"
        assert main(["predict", "--dataset", "sample_steam", "--horizon", "2", f"predict.model_dir={run / 'best'}",
                     "predict.max_users=200", f"predict.allow_history={mode}", f"predict.output_dir={out}",
                     *fit_overrides]) == 0
        reports["horizon", mode] = json.loads((out / "metrics.json").read_text())
        frame = pd.read_parquet(out / "recommendations.parquet")
        lists["horizon", mode] = frame.groupby("user_id", sort=True)["item_id"].agg(list).to_dict()
    horizon = reports["horizon", "auto"]["repeats"]
    assert horizon["log_sequences"] >= 50 and horizon["repeat_share_top"] > 0
    placed = []
    for user, auto in lists["horizon", "auto"].items():
        excluded = lists["horizon", "false"][user]
        new = [i for i in auto if i in excluded]
        assert new == excluded[:len(new)] and len(set(auto)) == len(auto) == len(excluded)
        placed.append(sum(i not in excluded for i in auto[:10]))
    assert horizon["history_items_per_top10"] == pytest.approx(np.mean(placed), abs=1e-4)
    api.set_popularity(popularity_before_targets(prepared.interactions, api.catalog, "horizon", 2, 0))
    api.set_log(sequences_before_targets(prepared.interactions, "horizon", 2, 0))
    cases = build_test_cases(prepared.interactions, api.catalog, "horizon", 2, 0, 200)
    rows, _ = api.recommend_rows(cases.histories, 20, 2, allow_history="auto", weights="self")
    by_api = {str(u): [api.catalog.item_ids[r] for r in row] for u, row in zip(cases.user_ids, rows)}
    assert by_api == lists["horizon", "auto"]
    # what the log gave is read once per catalog and log: a second call reuses it, a new log drops it
    cached = set(api.log_cache)
    assert any(key[0] == "shares" for key in cached) and ("windows", 2) in cached
    assert api.recommend_rows(cases.histories, 20, 2, allow_history="auto", weights="self")[0] == rows
    assert set(api.log_cache) == cached
    api.set_log(sequences_before_targets(prepared.interactions, "horizon", 2, 0))
    assert api.log_cache == {}
    out = tmp_path / "horizon-long"
    assert main(["predict", "--dataset", "sample_steam", "--horizon", "8", f"predict.model_dir={run / 'best'}",
                 "predict.min_users=5", f"predict.output_dir={out}", *fit_overrides]) == 0
    result = json.loads((out / "metrics.json").read_text())
    assert result["repeats"] is None and any("sequences longer than the horizon 8 (under 50)" in n for n in result["notes"])


def test_refused_fit_domains_leave_the_run_as_it_was(fitted_run, fit_overrides, tmp_path, capsys):
    from recgpt.cli import main

    run, _ = fitted_run
    partial = tmp_path / "partial"  # a prepared folder without its items and manifest
    partial.mkdir()
    shutil.copy2(Path(load_config(run / "config.yaml", fit_overrides).data.prepared_root) / "sample_steam" /
                 "interactions.parquet", partial)
    before = snapshot(run)
    capsys.readouterr()
    for domain, says in [("ml-100k", "pretraining dataset"), ("no_such_domain", "unknown dataset"),
                         (str(partial), "missing items.parquet")]:
        assert main(["eval", "--ckpt", str(run), *fit_overrides, f"eval.score_fit_domains=[{domain}]"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "eval.score_fit_domains" in err and domain in err and says in err
        assert snapshot(run) == before
    # a component the exported model has no head for (the tiny run is the code recipe: no dense head)
    assert main(["eval", "--ckpt", str(run), *fit_overrides, "eval.score_fit=[dense,knn]"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "eval.score_fit: the dense component" in err and "recipe code" in err
    assert snapshot(run) == before


def test_score_fit_config_is_checked():
    cases = [(["eval.score_fit=[code,bogus]", "eval.zero_shot_domain=steam"], "eval.score_fit: .*bogus"),
             (["eval.score_fit=[knn]"], "eval.score_fit_domains: .*held-out source"),
             (["eval.score_fit=[knn]", "eval.score_fit_domains=[yelp]"], "eval.score_fit_domains: yelp is a pretraining"),
             (["eval.score_fit_users=0"], "eval.score_fit_users")]
    for overrides, message in cases:
        with pytest.raises(ConfigError, match=message):
            load_config(None, ["data.datasets=[ml-100k,yelp]", *overrides])
    cfg = load_config(None, ["eval.score_fit=[knn,pop]", "eval.zero_shot_domain=steam"])
    assert cfg.eval.fit_domains == ["steam"] and load_config().eval.score_fit == []
