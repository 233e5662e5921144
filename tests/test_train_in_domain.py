"""In-domain training: a corpus of one dataset's own training split, and fine-tuning from an exported model."""
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch


def test_train_split_corpus_never_holds_evaluated_targets(tmp_path, tiny_data_config, prepared_dir):
    from recgpt.baselines.data import build_split
    from recgpt.data import build_corpus, load_corpus, load_prepared

    cfg = replace(tiny_data_config, datasets=["ml-100k"], train_split="loo", heldout_users=0.0, max_items=10_000)
    corpus = load_corpus(build_corpus(cfg, tmp_path / "corpus"))
    ids = corpus.items["item_id"].str.removeprefix("ml-100k:").tolist()
    trained = {u.removeprefix("ml-100k:"): [ids[i] for i in items]
               for u, items in zip(corpus.sequences["train"]["user_id"], corpus.sequences["train"]["items"])}
    split = build_split(load_prepared(prepared_dir("ml-100k")).interactions, "ml-100k", "loo")
    expected = {u: [split.item_ids[i] for i in s] for u, s in zip(split.train_users, split.train)}
    assert trained == expected  # the same training split as every baseline: items[:-2] of each user
    assert corpus.manifest["counts"]["splits"]["train"]["interactions"] == 100_000 - 2 * 943


def test_a_share_of_training_users_is_a_seeded_nested_subset(tmp_path, tiny_data_config, prepared_dir):
    """Real ml-100k: data.train_users keeps about that share of the users not held out, a smaller share is a subset
    of a larger one, the held-out users do not change, and every user is counted once."""
    from recgpt.data import build_corpus, load_corpus

    prepared_dir("ml-100k")
    users = {}
    for share in (1.0, 0.3, 0.1):
        cfg = replace(tiny_data_config, datasets=["ml-100k"], train_split="loo", heldout_users=0.05, train_users=share)
        corpus = load_corpus(build_corpus(cfg, tmp_path / f"corpus{share}"))
        users[share] = {s: set(corpus.sequences[s]["user_id"]) for s in ("train", "heldout")}
        counts = corpus.manifest["counts"]["per_dataset"]["ml-100k"]
        assert counts["train_users"] + counts["heldout_users"] + counts["train_users_left_out"] == counts["users"] == 943
        assert counts["train_users"] == len(users[share]["train"]) and abs(counts["train_users"] - share * 0.95 * 943) < 40
    assert users[0.1]["train"] < users[0.3]["train"] < users[1.0]["train"]
    assert users[0.1]["heldout"] == users[0.3]["heldout"] == users[1.0]["heldout"] and len(users[1.0]["heldout"]) > 20
    assert not users[0.1]["train"] & users[0.1]["heldout"]


@pytest.fixture(scope="module")
def foundation(tmp_path_factory, tiny_inputs, tiny_tokenizer):
    """An exported model (ckpt/<run>/best layout) trained with the tiny tokenizer."""
    from recgpt.model import ItemCodeDecoder, ItemCodeDecoderConfig

    best = tmp_path_factory.mktemp("foundation") / "best"
    torch.manual_seed(7)
    config = ItemCodeDecoderConfig.from_recipe("code_text" if tiny_inputs.text_dim else "code",
                                               tiny_inputs.slot_vocab_sizes, embed_dim=tiny_inputs.text_dim or 0,
                                               n_layers=1, d_model=32, n_heads=2, d_ff=64, max_items=64,
                                               center_text=False)
    ItemCodeDecoder(config).save_pretrained(str(best))
    shutil.copytree(tiny_tokenizer, best / "tokenizer")
    return best


def test_fine_tuning_starts_from_the_exported_weights(tiny_train_cfg, tiny_inputs, foundation):
    from safetensors.torch import load_file

    from recgpt.train.trainer import Trainer

    trainer = Trainer(tiny_train_cfg(f"train.init_from={foundation}", "train.max_steps=2"), tiny_inputs).build()
    assert trainer.model_config.d_model == 32 and trainer.row_items == 64  # the exported architecture
    exported = load_file(str(foundation / "model.safetensors"))
    state = trainer.accelerator.unwrap_model(trainer.model).decoder.state_dict()
    assert all(torch.equal(state[k].float(), v.float()) for k, v in exported.items())
    trainer.train()  # and it trains from there


def test_the_from_scratch_control_has_the_exported_architecture_and_fresh_weights(tiny_train_cfg, tiny_inputs,
                                                                                   foundation):
    """train.init_weights=random: the foundation's architecture (not the config's model section) with the weights a
    run without init_from would draw under the same seed."""
    from safetensors.torch import load_file

    from recgpt.model import ItemCodeDecoder
    from recgpt.train.trainer import Trainer

    trainer = Trainer(tiny_train_cfg(f"train.init_from={foundation}", "train.init_weights=random",
                                     "train.max_steps=2"), tiny_inputs).build()
    assert trainer.model_config.d_model == 32 and trainer.row_items == 64
    exported = load_file(str(foundation / "model.safetensors"))
    state = trainer.accelerator.unwrap_model(trainer.model).decoder.state_dict()
    assert set(exported) <= set(state)  # (tied output matrices are saved once)
    changed = [k for k, v in exported.items() if v.is_floating_point() and v.std() > 0 and not torch.equal(state[k], v)]
    assert len(changed) > len(exported) // 2  # matrices redrawn, not loaded
    torch.manual_seed(0)
    fresh = ItemCodeDecoder(trainer.model_config).state_dict()
    assert all(torch.equal(state[k], fresh[k]) for k in fresh)  # seeded as train.seed=0 draws them
    trainer.train()


def test_random_init_needs_a_model_to_take_the_architecture_from(tiny_train_cfg):
    from recgpt.config import ConfigError

    with pytest.raises(ConfigError, match="train.init_weights.*init_from"):
        tiny_train_cfg("train.init_weights=random")
    with pytest.raises(ConfigError, match="train.init_weights.*pretrained.random"):
        tiny_train_cfg("train.init_weights=zeros")


def test_fine_tuning_refuses_a_model_with_another_tokenizer(tmp_path, tiny_train_cfg, tiny_inputs, foundation):
    from safetensors.torch import load_file, save_file

    from recgpt.config import ConfigError
    from recgpt.train.trainer import Trainer

    other = tmp_path / "best"
    shutil.copytree(foundation, other)
    weights = load_file(str(other / "tokenizer" / "model.safetensors"))
    name = next(k for k, v in weights.items() if v.is_floating_point())
    weights[name] = weights[name] + 1e-3  # same shapes and config, different tokenizer
    save_file(weights, str(other / "tokenizer" / "model.safetensors"))
    with pytest.raises(ConfigError, match="differs from tokenizer.output_dir"):
        Trainer(tiny_train_cfg(f"train.init_from={other}"), tiny_inputs).build()


def test_tiger_is_a_configuration():
    from pathlib import Path

    from recgpt.config import load_config

    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / "tiger.yaml")
    assert (cfg.tokenizer.kind, cfg.model.codes.head, cfg.predict.scoring) == ("rqvae", "autoregressive", "trie")
    assert cfg.data.train_split == "loo" and not cfg.predict.allow_history


@pytest.mark.slow
def test_exported_model_is_ranked_on_the_baselines_cases(exported_model, prepared_dir, embed_config):
    """The next-10 cases of a recgpt model are the baselines' test half, item for item, and its exact lists
    are those of `Recommender.recommend` on the same histories."""
    from dataclasses import replace as replace_split

    from recgpt.baselines.data import build_split
    from recgpt.baselines.exported import ExportedModel, evaluate_exported, to_catalog_rows
    from recgpt.config import BaselineConfig
    from recgpt.data import load_prepared
    from recgpt.predict.protocols import TestCases
    from recgpt.predict.recommender import Recommender

    prepared = load_prepared(prepared_dir("ml-100k"))
    split = build_split(prepared.interactions, "ml-100k", "horizon")
    rec = Recommender.from_pretrained(exported_model, embed_cfg=embed_config)
    catalog = rec.set_catalog_from_prepared(prepared)
    cases = to_catalog_rows(split.test, split.item_ids, catalog)
    for user in range(0, len(cases), 97):
        for split_rows, catalog_rows in ((split.test.histories[user], cases.histories[user]),
                                         (split.test.targets[user], cases.targets[user])):
            assert [catalog.item_ids[r] for r in catalog_rows] == [split.item_ids[r] for r in split_rows]

    expected = rec.recommend([[split.item_ids[r] for r in h] for h in split.test.histories[:5]], k=10,
                             allow_history=False)
    rows, _ = ExportedModel("recgpt", rec).recommend(cases.histories[:5], 10, allow_history=False)
    assert [[catalog.item_ids[r] for r in row] for row in rows] == [list(ids) for ids in expected.item_ids]

    five = replace_split(split, test=TestCases("horizon", split.test.user_ids[:5], split.test.histories[:5],
                                               split.test.targets[:5], {}))
    cfg = BaselineConfig(protocol="horizon", ks=[1, 10], strategies=["exact", "greedy"], max_valid_users=5)
    result = evaluate_exported("recgpt", exported_model, prepared, five, cfg, embed_config)
    assert result["counts"]["evaluated"] == 5 and set(result["methods"]) == {"recgpt", "recgpt-greedy"}
    assert 0.0 <= result["methods"]["recgpt"]["NDCG@10"] <= 1.0 and len(result["by_position"]["recgpt"]["10"]) == 10


@pytest.fixture(scope="module")
def dense_export(tmp_path_factory, predict_tokenizer, ml100k_catalog):
    """An exported model with the item text as input and a dense head (ckpt/<run>/best layout), random weights."""
    from recgpt.io import write_json
    from recgpt.model import ItemCodeDecoder, ItemCodeDecoderConfig
    from recgpt.tokenizer import save_item_codes
    from recgpt.tokenizer.base import tokenizer_hash

    best = tmp_path_factory.mktemp("dense") / "best"
    torch.manual_seed(5)
    config = ItemCodeDecoderConfig.from_recipe("hybrid", predict_tokenizer.slot_vocab_sizes, embed_dim=384,
                                               n_layers=1, d_model=32, n_heads=2, d_ff=64, max_items=50,
                                               codes={"embedding": "lookup"})
    ItemCodeDecoder(config).eval().save_pretrained(str(best))
    predict_tokenizer.save(best / "tokenizer")
    save_item_codes(best / "codes.safetensors", ml100k_catalog.item_ids, ml100k_catalog.codes.numpy())
    write_json(best / "source.json", {"tokenizer_hash": tokenizer_hash(best / "tokenizer", best / "codes.safetensors")})
    return best


@pytest.mark.slow
def test_hybrid_weights_are_fitted_on_validation_users_only(dense_export, prepared_dir, embed_config):
    """Real ml-100k LOO split: the fitted weights (and their validation NDCG) do not change when every test
    target is replaced; they are the validation argmax (at least each component alone and the priors alone),
    stored in the model's config.json; the test users are ranked with them and with each component. The fit
    takes baseline.max_fit_users validation users (by default all), not the early-stopping subset."""
    import json

    from recgpt.baselines.data import build_split
    from recgpt.baselines.exported_hybrid import evaluate_hybrid_loo
    from recgpt.config import BaselineConfig
    from recgpt.data import load_prepared
    from recgpt.predict.protocols import TestCases

    prepared = load_prepared(prepared_dir("ml-100k"))
    split = build_split(prepared.interactions, "ml-100k", "loo")
    targets = [split.test.targets[(i + 1) % len(split.test)] for i in range(len(split.test))]
    moved = replace(split, test=TestCases("loo", split.test.user_ids, split.test.histories, targets, {}))
    cfg = BaselineConfig(max_valid_users=100, max_fit_users=150, max_test_users=150, ks=[10])
    result = evaluate_hybrid_loo("m", dense_export, prepared, split, cfg, embed_config)
    other = evaluate_hybrid_loo("m", dense_export, prepared, moved, cfg, embed_config)
    fit = result["score_fit"]
    assert fit == other["score_fit"] and result["methods"] != other["methods"]
    assert set(fit["weights"]) == {"code", "dense", "knn", "pop"} and fit["valid_users"] == 150
    assert fit["valid_ndcg@10"] >= max(*fit["single"].values(), fit["priors_valid_ndcg@10"])
    assert fit["priors"]["code"] == fit["priors"]["dense"] == 0
    assert json.loads((dense_export / "config.json").read_text())["score_weights"] == fit["weights"]
    stored = json.loads((dense_export / "score_fit.json").read_text())  # the grid: predict.weights=self's prior
    assert max(stored["table"], key=lambda row: row["relative"])["weights"] == fit["weights"]
    assert set(result["methods"]) == {"m", "m[code]", "m[dense]", "m[knn+pop]", "m[self]"}
    assert result["counts"]["evaluated"] == 150 and 0 <= result["methods"]["m"]["NDCG@10"] <= 1

    # bench/in_domain_intervals.py's per-user figures: the same catalog, popularity and users as the table
    from recgpt.baselines.exported import split_rows
    from recgpt.baselines.exported_hybrid import rank_with, split_recommender
    from recgpt.predict.metrics import per_user

    rec = split_recommender(dense_export, prepared, split, embed_config)
    test = split_rows(split, cfg, rec.catalog, "test")
    assert len(split_rows(split, BaselineConfig(), rec.catalog, "fit")) == len(split.valid)  # by default: all
    for name, weights in (("m", fit["weights"]), ("m[knn+pop]", fit["priors"])):
        lists = rank_with(rec, test.histories, {name: weights}, 10)[name]
        assert np.mean(per_user(lists, test.targets, 10)["NDCG"]) == pytest.approx(result["methods"][name]["NDCG@10"])
    from recgpt.predict.self_weights import rank_self_weighted, read_prior, self_weights

    grid, prior = read_prior(dense_export)
    lists, _ = rank_self_weighted(rec, test.histories, grid, self_weights(rec, test.histories, grid, prior), 10)
    assert np.mean(per_user(lists, test.targets, 10)["NDCG"]) == pytest.approx(result["methods"]["m[self]"]["NDCG@10"])


@pytest.mark.slow
def test_fit_bound_is_the_grid_point_best_on_the_test_users(dense_export, prepared_dir, embed_config, tmp_path):
    """bench/in_domain_intervals.py --fit-bound on the real ml-100k split: the weights it returns rank the test
    users at least as well as the validation fit's and as every component alone (it is the test argmax of the
    same grid); its grid is cached for these test users and this model, and computed again for others."""
    import json

    from bench.in_domain_intervals import best_on_test
    from recgpt.baselines.data import build_split
    from recgpt.baselines.exported import split_rows
    from recgpt.baselines.exported_hybrid import fit_and_store, model_components, rank_with
    from recgpt.config import BaselineConfig
    from recgpt.data import load_prepared
    from recgpt.predict.metrics import per_user

    prepared = load_prepared(prepared_dir("ml-100k"))
    split = build_split(prepared.interactions, "ml-100k", "loo")
    cfg = BaselineConfig(max_fit_users=150, max_test_users=150, ks=[10])
    rec, fit = fit_and_store(dense_export, prepared, split, cfg, embed_config)
    test = split_rows(split, cfg, rec.catalog, "test")
    cache = tmp_path / "fit_bound.json"
    best, priors = best_on_test(cache, dense_export, rec, test)
    cached = json.loads(cache.read_text())
    value = {json.dumps(w, sort_keys=True): v for w, v in cached["table"]}
    at = lambda weights: value[json.dumps(weights, sort_keys=True)]  # noqa: E731
    names = model_components(rec.model.config)
    singles = [{n: float(n == m) for n in names} for m in names]
    assert cached["test_users"] == 150 and at(best) == max(value.values())
    assert at(best) >= max(at(fit["weights"]), *map(at, singles))
    assert priors["code"] == priors["dense"] == 0
    assert at(priors) >= max(at(fit["priors"]), *(at(w) for w in singles if not (w["code"] or w["dense"])))
    lists = rank_with(rec, test.histories, {"best": best}, 10)["best"]  # the table's figure, ranked for real
    assert np.mean(per_user(lists, test.targets, 10)["NDCG"]) == pytest.approx(at(best), abs=1e-3)
    cache.write_text(json.dumps({**cached, "table": [[best, 1.0], [priors, 0.5]]}))  # a cache is read, not redone
    assert best_on_test(cache, dense_export, rec, test) == (best, priors)
    fewer = split_rows(split, BaselineConfig(max_test_users=100), rec.catalog, "test")
    best_on_test(cache, dense_export, rec, fewer)  # other users, or another model: computed again
    assert json.loads(cache.read_text())["test_users"] == 100
    cache.write_text(json.dumps({**cached, "model": [0, 0], "table": [[priors, 1.0]]}))
    assert best_on_test(cache, dense_export, rec, test) == (best, priors)


@pytest.mark.slow
def test_self_weights_prior_is_the_validation_fit(dense_export, prepared_dir, embed_config, tmp_path):
    """bench/in_domain_intervals.py --self-weights: the prior of the per-user weights is the grid of the fit
    bench/in_domain.py made on the split's validation users (its best point is the stored weights), cached per
    model; the test users ranked with it are never read."""
    import json
    from types import SimpleNamespace

    from bench.in_domain_intervals import valid_grid
    from recgpt.baselines.data import build_split
    from recgpt.baselines.exported_hybrid import fit_and_store
    from recgpt.config import BaselineConfig
    from recgpt.data import load_prepared

    prepared = load_prepared(prepared_dir("ml-100k"))
    split = build_split(prepared.interactions, "ml-100k", "loo")
    cfg = BaselineConfig(max_fit_users=150, ks=[10])
    rec, fit = fit_and_store(dense_export, prepared, split, cfg, embed_config)
    cache = tmp_path / "valid_grid.json"
    grid, values = valid_grid(cache, dense_export, rec, split, SimpleNamespace(baseline=cfg))
    best = max(range(len(grid)), key=lambda i: (values[i], -i))
    assert grid[best] == fit["weights"] and values[best] == pytest.approx(fit["valid_ndcg@10"])
    assert json.loads(cache.read_text())["valid_users"] == fit["valid_users"] == 150
    cache.write_text(json.dumps({**json.loads(cache.read_text()), "table": [[grid[0], 1.0]]}))
    assert valid_grid(cache, dense_export, rec, split, SimpleNamespace(baseline=cfg)) == ([grid[0]], [1.0])


@pytest.mark.slow
def test_next10_hybrid_is_fitted_on_the_valid_half_and_ranks_with_its_prior(dense_export, prepared_dir, embed_config):
    """Real ml-100k next-10 split: the weights come from the valid half's next items only (unchanged when the test
    targets are replaced), and the exported model then ranks the test half through the hybrid, popularity prior
    included (set to the histories being ranked)."""
    from recgpt.baselines.data import build_split
    from recgpt.baselines.exported import evaluate_exported
    from recgpt.baselines.exported_hybrid import fit_and_store
    from recgpt.config import BaselineConfig
    from recgpt.data import load_prepared
    from recgpt.predict.protocols import TestCases

    prepared = load_prepared(prepared_dir("ml-100k"))
    split = build_split(prepared.interactions, "ml-100k", "horizon")
    cfg = BaselineConfig(protocol="horizon", ks=[1, 10], strategies=["exact", "greedy"], max_valid_users=60,
                         max_fit_users=60, max_test_users=8)
    fit = fit_and_store(dense_export, prepared, split, cfg, embed_config)[1]
    moved = replace(split, test=TestCases("horizon", split.test.user_ids, split.test.histories,
                                          [t[::-1] for t in split.test.targets[1:] + split.test.targets[:1]], {}))
    assert fit_and_store(dense_export, prepared, moved, cfg, embed_config)[1] == fit and fit["valid_users"] == 60
    assert fit["weights"]["pop"] > 0  # ml-100k's next items follow popularity: the prior is in the ranking below
    result = evaluate_exported("m", dense_export, prepared, split, cfg, embed_config)
    assert set(result["methods"]) == {"m", "m-greedy"} and result["counts"]["evaluated"] == 8
    assert 0.0 <= result["methods"]["m-greedy"]["NDCG@10"] <= 1.0


def test_split_rows_become_catalog_rows_and_an_unknown_item_is_named():
    from recgpt.baselines.exported import to_catalog_rows
    from recgpt.predict.catalog import Catalog
    from recgpt.predict.protocols import TestCases

    catalog = Catalog.from_codes(["c", "a", "b"], [[0, 0], [0, 1], [1, 0]], [2, 2])
    split_ids = ["a", "b", "c", "z"]
    cases = TestCases("loo", ["u1", "u2"], [[0, 2], [1]], [[1], [2]])
    out = to_catalog_rows(cases, split_ids, catalog)
    assert out.histories == [[1, 0], [2]] and out.targets == [[2], [0]]
    with pytest.raises(ValueError, match="item 'z' of the split is not in the model's catalog"):
        to_catalog_rows(TestCases("loo", ["u"], [[0, 3]], [[1]]), split_ids, catalog)


def test_in_domain_bench_refuses_no_checkpoints_before_claiming_its_folder(tmp_path, capsys):
    from bench import in_domain

    out = tmp_path / "out"
    with pytest.raises(SystemExit):
        in_domain.main(["--recgpt", "scratch", "--recgpt-checkpoints", "0", "--out", str(out)])
    assert "--recgpt-checkpoints must be >= 1, got 0" in capsys.readouterr().err and not out.exists()


def test_in_domain_table_keeps_the_reports_already_in_its_folder(tmp_path, monkeypatch):
    """A second model run into a folder adds its row; the rows of the reports already there stay in the table
    (they were shown as `not run` before). Only the composition is tested: the training is replaced."""
    import json

    from bench import in_domain
    from recgpt.io import MARKER, write_json

    monkeypatch.setenv("RECGPT_BENCH_DOCS", str(tmp_path / "docs"))
    out = tmp_path / "out"
    earlier = out / "ml-100k-loo" / "popularity"
    earlier.mkdir(parents=True)
    write_json(out / MARKER, {"kind": "bench output"})  # a folder of an earlier run of the bench
    (earlier / "metrics.json").write_text(json.dumps({"methods": {"popularity": {"HR@10": 0.1, "NDCG@10": 0.05}},
                                                      "seconds": {"train": 0}}))
    monkeypatch.setattr(in_domain, "run_one", lambda name, *a: {"methods": {name: {"HR@10": 0.2, "NDCG@10": 0.125}},
                                                                "seconds": {"train": 1}})
    assert in_domain.main(["--datasets", "ml-100k", "--models", "markov", "--protocols", "loo", "--out", str(out)]) == 0
    rows = {line.split(" | ")[0].strip("| "): line for line in (out / "in_domain.md").read_text().splitlines()}
    assert "0.0500" in rows["popularity"] and "0.1250" in rows["markov"] and "not run" in rows["sasrec"]
    assert (tmp_path / "docs" / "out" / "ml-100k.md").is_file()


def test_intervals_over_draws_average_each_user_over_the_draws_that_have_the_row():
    import numpy as np

    from bench.in_domain_intervals import with_draws

    first = {"recgpt_ft": np.array([1.0, 0.0, 0.5]), "sasrec": np.array([0.2, 0.2, 0.2])}
    second = {"recgpt_ft": np.array([0.0, 0.0, 0.25])}  # sasrec was run on the first draw only
    out = with_draws(first, [second], ["s0", "s1"])
    assert set(out) == {"recgpt_ft (s0)", "sasrec (s0)", "recgpt_ft (s1)", "recgpt_ft (mean)"}
    np.testing.assert_allclose(out["recgpt_ft (mean)"], [0.5, 0.0, 0.375])
    assert out["recgpt_ft (s1)"] is second["recgpt_ft"]
