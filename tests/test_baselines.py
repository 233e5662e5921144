"""In-domain baselines on real ml-100k: splits, short fits that beat popularity, save/load, and the mechanisms
(SASRec+'s causal mask, BERT4Rec's masking, GPT-2 generation without repeats)."""
import pytest
import torch

from recgpt.config import BaselineConfig

# Short fits: small models, a few epochs, early stopping on 300 validation users.
SHORT = dict(patience=2, max_valid_users=300, lr=3e-3, batch_size=64, d_model=32, n_layers=1, max_len=30,
             dropout=0.1, eval_every_epochs=1, threads=1)
EPOCHS = {"sasrec": 3, "gpt2": 5, "bert4rec": 8}


@pytest.fixture(scope="module")
def ml100k_interactions(prepared_dir):
    from recgpt.data import load_prepared

    return load_prepared(prepared_dir("ml-100k")).interactions


@pytest.fixture(scope="module")
def loo_split(ml100k_interactions):
    from recgpt.baselines.data import build_split

    return build_split(ml100k_interactions, "ml-100k", "loo")


def test_splits_never_train_on_evaluated_targets(ml100k_interactions, loo_split):
    from recgpt.baselines.data import build_split

    train = dict(zip(loo_split.train_users, loo_split.train))
    for user, history, target in zip(loo_split.valid.user_ids, loo_split.valid.histories, loo_split.valid.targets):
        assert train[user] == history  # train = items[:-2]: neither the valid nor the test target
    test_last = {u: h[-1] for u, h in zip(loo_split.test.user_ids, loo_split.test.histories)}
    assert all(test_last[u] == t[0] for u, t in zip(loo_split.valid.user_ids, loo_split.valid.targets))
    horizon = build_split(ml100k_interactions, "ml-100k", "horizon", horizon=10, seed=3)
    train = dict(zip(horizon.train_users, horizon.train))
    both = [*zip(horizon.valid.user_ids, horizon.valid.histories), *zip(horizon.test.user_ids, horizon.test.histories)]
    assert all(train[u] == h for u, h in both) and len(both) == 943 - 0  # every ml-100k user has > 10 items
    assert abs(len(horizon.valid) - len(horizon.test)) < 0.15 * len(both)  # a 50/50 split of users
    assert not set(horizon.valid.user_ids) & set(horizon.test.user_ids)
    cold = build_split(ml100k_interactions, "ml-100k", "cold", cold_fraction=0.2, seed=3)
    held = set(cold.valid.user_ids) | set(cold.test.user_ids)
    assert not held & set(cold.train_users) and 0.12 * 943 < len(held) < 0.28 * 943
    assert all(1 <= len(h) <= 3 for h in cold.test.histories)


@pytest.fixture(scope="module")
def popularity_ndcg(loo_split):
    from recgpt.baselines import get_model
    from recgpt.baselines.training import validation_ndcg

    cfg = BaselineConfig(**SHORT)
    return validation_ndcg(get_model("popularity")(cfg, loo_split.n_items).fit(loo_split), loo_split.test, cfg)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["markov", "itemknn", "bpr", "sasrec", "gpt2", "bert4rec"])
def test_baseline_beats_popularity_and_round_trips(name, loo_split, popularity_ndcg, tmp_path):
    from recgpt.baselines import get_model
    from recgpt.baselines.base import load_baseline
    from recgpt.baselines.training import validation_ndcg

    torch.set_num_threads(1)
    cfg = BaselineConfig(name=name, epochs=EPOCHS.get(name, 1), **SHORT)
    model = get_model(name)(cfg, loo_split.n_items).fit(loo_split)
    ndcg = validation_ndcg(model, loo_split.test, cfg)  # all 943 test users (last item), never seen in fit
    assert ndcg > 1.1 * popularity_ndcg, f"{name} NDCG@10 {ndcg:.4f} vs popularity {popularity_ndcg:.4f}"
    loaded = load_baseline(model.save(tmp_path / name))
    histories, users = loo_split.test.histories[:64], loo_split.test.user_ids[:64]
    with torch.no_grad():
        assert torch.equal(model.scores(histories, users), loaded.scores(histories, users))


def test_sasrec_position_t_never_sees_later_items(loo_split):
    from recgpt.baselines.sasrec import SASRecNet

    torch.manual_seed(0)
    net = SASRecNet(loo_split.n_items, 32, 2, 2, 0.1, 30).eval()
    items = torch.as_tensor([loo_split.train[0][:20], loo_split.train[1][:20]])
    changed = items.clone()
    changed[:, 12:] = torch.as_tensor(loo_split.train[2][:8])
    with torch.no_grad():
        a, b = net(items), net(changed)
    assert torch.allclose(a[:, :12], b[:, :12], atol=1e-5)
    assert not torch.allclose(a[:, 12:], b[:, 12:], atol=1e-3)


def test_bert4rec_never_masks_padding(loo_split):
    from recgpt.baselines.bert4rec import mask_items
    from recgpt.baselines.training import pad_right

    n = loo_split.n_items
    batch = pad_right([s[:length] for s, length in zip(loo_split.train[:64], range(1, 65))], n)
    gen = torch.Generator().manual_seed(0)
    for prob in (0.05, 0.5, 0.95):
        inputs, labels = mask_items(batch, n, n + 1, prob, gen)
        pad = batch == n
        assert torch.equal(inputs[pad], batch[pad]) and (labels[pad] == -100).all()
        assert ((inputs == n + 1) == (labels >= 0)).all() and torch.equal(labels[labels >= 0], batch[labels >= 0])
        assert (labels >= 0).any(dim=1).all()  # every row carries a target
    share = (labels >= 0).sum() / (~pad).sum()
    assert 0.85 < share <= 1.0


@pytest.mark.parametrize("strategy", ["greedy", "sample", "beam", "rra", "ra"])
def test_gpt2_generation_never_repeats_an_item(strategy, loo_split):
    from recgpt.baselines import get_model
    from recgpt.predict.horizon import recommend_lists

    torch.manual_seed(0)
    cfg = BaselineConfig(name="gpt2", d_model=32, n_layers=1, n_heads=2, max_len=30, dropout=0.0)
    model = get_model("gpt2")(cfg, loo_split.n_items)
    model.net = model.build().eval()
    # A near-uniform untrained model with a hot temperature: repeats would be common without the exclusion.
    recs, _ = recommend_lists(model, loo_split.test.histories[:6], 15, strategy, allow_history=True, beam_size=4,
                              n_samples=3, temperature=5.0, seed=1)
    assert all(len(r) == 15 and len(set(r)) == 15 for r in recs)


def test_cli_trains_and_reports_like_predict(tmp_path, prepared_dir, capsys):
    import json

    from recgpt.cli import main as recgpt_main

    def main(argv):
        return recgpt_main(["baseline", *argv])

    folder = prepared_dir("ml-100k")
    assert main(["nosuch", "--dataset", str(folder)]) == 2 and "unknown baseline 'nosuch'" in capsys.readouterr().err
    out = tmp_path / "report"
    assert main(["markov", "--dataset", str(folder), "--protocol", "cold", f"baseline.output_dir={out}",
                 "baseline.strategies=[exact,greedy]"]) == 0
    result = json.loads((out / "metrics.json").read_text())
    assert {"markov", "markov-greedy", "popularity"} <= set(result["methods"]) and (out / "metrics.md").is_file()
    assert (out / "recommendations.parquet").is_file() and (out / "model" / "model.safetensors").is_file()


def test_content_knn_scores_as_predicts_content_knn_and_round_trips(loo_split, prepared_dir, embed_config, tmp_path):
    """The in-domain content kNN (split rows) equals `recgpt predict`'s content kNN (items-table rows) on the same
    real ml-100k histories, never recommends a history item, and its saved model scores identically."""
    from dataclasses import replace

    from recgpt.baselines.base import load_baseline
    from recgpt.baselines.content import ContentKNN
    from recgpt.data import load_prepared
    from recgpt.predict.baselines import content_knn_scores
    from recgpt.tokenizer import embed_items

    items = load_prepared(prepared_dir("ml-100k")).items
    split = replace(loo_split, items=items)
    model = ContentKNN(BaselineConfig(name="content_knn"), split.n_items)
    model.embed_cfg = embed_config
    model.fit(split)
    ids = items["item_id"].astype(str).tolist()
    reference = embed_items(ids, items["text"].fillna("").astype(str).tolist(), embed_config)
    table_row = {item: i for i, item in enumerate(ids)}
    to_table = torch.as_tensor([table_row[i] for i in split.item_ids])  # split row -> items-table row
    histories = split.test.histories[:64]
    expected = content_knn_scores([to_table[h].tolist() for h in histories], reference.vectors)[:, to_table]
    scores = model.scores(histories)
    assert torch.allclose(scores, expected, atol=1e-5)
    rows, _ = model.recommend(histories, 10)
    assert all(not set(r) & set(h) for r, h in zip(rows, histories))
    assert torch.equal(load_baseline(model.save(tmp_path / "knn")).scores(histories), scores)
