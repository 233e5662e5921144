"""MFGAN on real data: the factor table covers the catalog, the generator is causal and never reads the item it
is scored on, a discriminator separates real from shuffled sequences after a short fit, rewards lie in [0, 1],
the policy gradient pushes up the sampled items the reward favours, and save/load keeps every score."""
import numpy as np
import pytest
import torch

from recgpt.config import BaselineConfig, MFGANConfig
from fixtures_train import Killed

SMALL = dict(max_len=20, d_model=32, n_layers=1, dropout=0.1, batch_size=64, max_valid_users=200, threads=1)
ADV = dict(pretrain_steps=3, rounds=1, generator_steps=3, discriminator_steps=2, samples=4, history=10)


def split_of(prepared_dir, name, users=None):
    from recgpt.baselines.data import build_split
    from recgpt.data import load_prepared

    prepared = load_prepared(prepared_dir(name))
    inter = prepared.interactions
    if users:
        inter = inter[inter["user_id"].isin(inter["user_id"].unique()[:users])]
    split = build_split(inter, name, "loo")
    split.items = prepared.items
    return split


@pytest.fixture(scope="module")
def ml100k(prepared_dir):
    return split_of(prepared_dir, "ml-100k")


def small_cfg(**adv):
    return BaselineConfig(name="mfgan", epochs=1, **SMALL, mfgan=MFGANConfig(**{**ADV, **adv}))


@pytest.mark.parametrize("name", ["steam", "ml-100k", "amazon_scientific"])
def test_factor_table_maps_every_catalog_item(name, prepared_dir):
    from recgpt.baselines.mfgan.factors import build_factor_table, preset

    split = split_of(prepared_dir, name)
    table = build_factor_table(preset(name), split.items, split.item_ids, split.train)
    assert table.values.shape == (len(table.names), split.n_items) and table.names[0] == "item"
    for k, bins in enumerate(table.bins):
        assert 0 <= int(table.values[k].min()) and int(table.values[k].max()) < len(bins)
    assert torch.equal(table.values[0], torch.arange(split.n_items))
    manifest = table.manifest()
    for name_k in table.names[1:]:
        assert sum(manifest[name_k]["bins"].values()) == split.n_items and "(unknown)" in manifest[name_k]["bins"]
    by_id = split.items.set_index("item_id")
    field = {"steam": "genres", "ml-100k": "release_year", "amazon_scientific": "categories"}[name]
    empty = np.array([by_id[field].get(i, "") in ("", None) for i in split.item_ids])
    if name != "ml-100k":
        assert empty.any()  # the shared data has items without this field (steam: no metadata row)
    k = table.names.index({"steam": "genre", "ml-100k": "year", "amazon_scientific": "category"}[name])
    assert bool((table.values[k][torch.as_tensor(empty)] == 0).all())  # missing -> the unknown bin
    if name == "steam":  # the fields kept through the importer for factors
        assert {"price", "sentiment"} <= set(split.items.columns) and manifest["price"]["unknown_items"] < split.n_items


def test_generator_is_causal_and_never_reads_its_target(ml100k):
    from recgpt.baselines.mfgan.model import MFGAN, last_logits
    from recgpt.baselines.training import pad_right

    model = MFGAN(small_cfg(), ml100k.n_items)
    torch.manual_seed(0)
    model.net = model.build().eval()
    windows = [s[:15] for s in ml100k.train[:8]]
    batch = pad_right(windows)
    changed = batch.clone()
    changed[:, 10:] = (changed[:, 10:] + 7) % ml100k.n_items  # later items and the target itself
    with torch.no_grad():
        a, b = model.net(batch), model.net(changed)
        _, target_logits = last_logits(model.net, batch)
        _, other_target = last_logits(model.net, torch.cat([batch[:, :-1], changed[:, -1:]], 1))
        history_scores = model.scores([w[:-1] for w in windows])
    assert torch.allclose(a[:, :10], b[:, :10], atol=1e-5) and not torch.allclose(a[:, 10:], b[:, 10:], atol=1e-3)
    assert torch.allclose(target_logits, other_target, atol=1e-5)  # the scored item is never an input
    assert torch.allclose(target_logits, history_scores, atol=1e-4)
    # catalog row 0 is an item, not padding: a history starting with it scores differently from one without it
    assert model.net.item_emb.padding_idx == ml100k.n_items
    with torch.no_grad():
        assert not torch.allclose(model.scores([[0, 5]]), model.scores([[5]]), atol=1e-3)


def test_fakes_skip_the_true_item_and_keep_the_history(ml100k):
    from recgpt.baselines.mfgan.discriminator import fake_sequences
    from recgpt.baselines.mfgan.model import MFGAN

    model = MFGAN(small_cfg(), ml100k.n_items)
    torch.manual_seed(0)
    model.net = model.build().eval()
    windows = [s[-12:] for s in ml100k.train[:32]]
    fakes = fake_sequences(model, windows, 10, np.random.default_rng(0))
    for w, f in zip(windows, fakes.tolist()):
        f = [i for i in f if i >= 0]
        assert f[:-1] == w[:-1] and f[-1] not in set(w)


@pytest.mark.slow
def test_discriminator_separates_real_from_shuffled_and_rewards_in_unit_interval(ml100k):
    from recgpt.baselines.mfgan.discriminator import Discriminators, discriminator_loss
    from recgpt.baselines.mfgan.factors import build_factor_table, preset
    from recgpt.baselines.training import pad_right, training_windows

    torch.manual_seed(0)
    table = build_factor_table(preset("ml-100k"), ml100k.items, ml100k.item_ids, ml100k.train)
    discs = Discriminators(table.values, table.sizes(), MFGANConfig(history=10))
    opt = torch.optim.AdamW(discs.parameters(), lr=3e-3)
    rng = np.random.default_rng(0)
    windows = training_windows(ml100k.train, 11)
    permutation = torch.as_tensor(rng.permutation(ml100k.n_items))  # shuffled: same sequences, other items

    def shuffled(rows):
        return torch.where(rows >= 0, permutation[rows.clamp(min=0)], rows)

    held_out = pad_right([windows[i] for i in rng.integers(0, len(windows), 256)])
    for _ in range(60):
        real = pad_right([windows[i] for i in rng.integers(0, len(windows), 64)])
        loss = discriminator_loss(discs, real, shuffled(real))
        opt.zero_grad()
        loss.backward()
        opt.step()
    discs.eval()
    real_reward, fake_reward = discs.reward(held_out), discs.reward(shuffled(held_out))
    for r in (real_reward, fake_reward):
        assert bool(((r >= 0) & (r <= 1)).all())
    auc = (real_reward[:, None] > fake_reward[None, :]).float().mean().item()
    assert auc > 0.8, auc


def test_policy_gradient_raises_the_rewarded_sampled_item():
    """Synthetic mechanism check: reward 1 for item 3 only; the gradient flows through the sampled items'
    log-probabilities (not the true item's), so p(3) rises although 3 is never a training target."""
    from recgpt.baselines.mfgan.model import policy_gradient_loss
    from recgpt.baselines.sasrec import SASRecNet

    class RewardItem3:
        def reward(self, sequences):
            last = sequences[torch.arange(len(sequences)), (sequences >= 0).sum(1) - 1]
            return (last == 3).float()

    torch.manual_seed(0)
    batch = torch.as_tensor([[1, 2, 5], [2, 1, 6], [5, 6, 1]] * 4)
    probs = {}
    for weight in (0.0, 20.0):
        torch.manual_seed(0)
        net = SASRecNet(8, 16, 1, 2, 0.0, 4)
        opt = torch.optim.SGD(net.parameters(), lr=0.05)
        gen = torch.Generator().manual_seed(0)
        for _ in range(30):
            loss, _ = policy_gradient_loss(net, RewardItem3(), batch, 8, weight, gen)
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            probs[weight] = torch.softmax(net(batch[:, :2])[:, -1], -1)[:, 3].mean().item()
    assert probs[20.0] > 2 * probs[0.0], probs


@pytest.mark.slow
@pytest.mark.parametrize("reward", ["pg", "official"])
def test_short_fit_saves_and_loads_identical_scores(reward, prepared_dir, tmp_path):
    from recgpt.baselines.base import load_baseline
    from recgpt.baselines.mfgan.model import MFGAN

    split = split_of(prepared_dir, "ml-100k", users=200)
    model = MFGAN(small_cfg(reward=reward), split.n_items).fit(split)
    log = model.fit_log["adversarial"]
    assert log["reward"] == reward and len(log["rounds"]) == 1 and 0 <= log["rounds"][0]["mean_reward"] <= 1
    loaded = load_baseline(model.save(tmp_path / "m"))
    histories = split.test.histories[:50]
    with torch.no_grad():
        assert torch.equal(model.scores(histories), loaded.scores(histories))
        generator, loaded_generator = model.variants()["mfgan-generator"], loaded.variants()["mfgan-generator"]
        assert torch.equal(generator.scores(histories), loaded_generator.scores(histories))
        assert torch.equal(model.discs.reward(torch.as_tensor([split.train[0][:8]])),
                           loaded.discs.reward(torch.as_tensor([split.train[0][:8]])))
    assert loaded.factors.manifest() == model.factors.manifest()


@pytest.mark.slow
def test_killed_adversarial_stage_resumes_to_the_uninterrupted_state(prepared_dir, tmp_path, monkeypatch,
                                                                   kill_at_call):
    """Killed in its second round, a rerun skips the finished MLE and the first round and ends where an
    uninterrupted fit ends: same generator, discriminators and round log."""
    import recgpt.baselines.mfgan.model as mfgan_model
    from recgpt.baselines.mfgan.model import MFGAN

    torch.set_num_threads(1)
    split = split_of(prepared_dir, "ml-100k", users=200)
    cfg = small_cfg(rounds=3)

    def fit(resume_dir):
        model = MFGAN(cfg, split.n_items)
        model.resume_dir = resume_dir
        return model.fit(split)

    whole = fit(None)
    real = kill_at_call(mfgan_model, "validation_ndcg", 2)  # dies in round two
    with pytest.raises(Killed):
        fit(tmp_path / "resume")
    assert (tmp_path / "resume" / "adversarial-mfgan" / "step-1.safetensors").is_file()
    rounds_scored = []
    monkeypatch.setattr(mfgan_model, "validation_ndcg", lambda *a, **k: rounds_scored.append(1) or real(*a, **k))
    resumed = fit(tmp_path / "resume")
    assert len(rounds_scored) == 2  # rounds 2 and 3 only: round 1 came from its checkpoint
    assert resumed.fit_log["resumed_after_epoch"] == 1  # the generator's MLE was not redone
    assert [r["round"] for r in resumed.fit_log["adversarial"]["rounds"]] == [1, 2, 3]
    def without_time(log):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in log["adversarial"]["rounds"]]

    assert without_time(resumed.fit_log) == without_time(whole.fit_log)
    for mine, theirs in ((resumed.net, whole.net), (resumed.discs, whole.discs)):
        for key, value in theirs.state_dict().items():
            assert torch.equal(value, mine.state_dict()[key]), key
