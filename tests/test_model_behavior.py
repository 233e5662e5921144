"""Behaviour input and target-behaviour conditioning (recgpt.model.behavior, recgpt.baselines.behavior_models) on
the real Taobao UserBehavior events: the behaviour changes the logits of both models, conditioning on a target
behaviour changes the prediction, the switch off leaves the code decoder as it was, and a data.behaviors
corpus carries each event's behaviour into the training batches."""
import dataclasses

import numpy as np
import pytest
import torch

from recgpt.baselines.behavior import BUY, N_BEHAVIORS, build_behavior_split, pack, unpack
from recgpt.baselines.training import pad_right
from recgpt.data import load_prepared
from recgpt.data.behavior import BEHAVIOR_ID, behavior_ids
from recgpt.model.behavior import next_behaviors
from tests.fixtures_model import make_model


@pytest.fixture(scope="module")
def taobao_split(prepared_dir):
    return build_behavior_split(load_prepared(prepared_dir("taobao_userbehavior")), "all")


def stand_in_codes(n_items: int) -> torch.Tensor:
    """Distinct code tuples per catalog row (the tokenizer is measured elsewhere; here only the input matters)."""
    rows = torch.arange(n_items)
    return torch.stack([rows % 64, rows // 64 % 64, rows // 4096], 1)


def short_fit(model, split, steps: int = 3):
    torch.manual_seed(0)
    model.net = model.build()
    opt = torch.optim.AdamW(model.net.parameters(), lr=3e-3)
    windows = [s[-21:] for s in split.train[:32] if len(s) >= 2]
    for _ in range(steps):
        loss = model.loss(pad_right(windows))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.net.eval()
    return float(loss.detach())


def models(split, behavior_target: bool):
    from recgpt.baselines.behavior_models import BehaviorCodeModel, BehaviorSASRec
    from recgpt.config import load_config

    cfg = load_config(None, ["baseline.d_model=32", "baseline.n_layers=1", "baseline.max_len=20",
                             "baseline.dropout=0.0"]).baseline
    codes = stand_in_codes(split.n_items)
    return [BehaviorSASRec(cfg, split.n_items).configure(True, behavior_target),
            BehaviorCodeModel(cfg, split.n_items, codes, [64, 64, int(codes[:, 2].max()) + 1])
            .configure(True, behavior_target)]


def test_packing_round_trips_and_next_behaviour_shift():
    events = pack([5, 0, 7], [BUY, 1, 3])
    assert [unpack(e) for e in events] == [(5, BUY), (0, 1), (7, 3)]
    items, beh = unpack(pad_right([events, events[:1]]))
    assert items[1].tolist() == [5, -1, -1] and beh[1].tolist() == [BUY, 0, 0]
    segment, pos = (items >= 0).long(), torch.arange(3).expand(2, 3)
    assert next_behaviors(beh, segment, pos).tolist() == [[1, 3, 0], [0, 0, 0]]
    assert next_behaviors(beh, segment, pos, torch.tensor([BUY, 2])).tolist() == [[1, 3, BUY], [2, 0, 0]]


def test_split_never_trains_on_a_target(taobao_split, prepared_dir):
    split = taobao_split
    assert split.counts["next_buy_users"] == 558 and split.counts["next_any_users"] == 815
    # each user's training sequence is a prefix of every evaluated history, and the target comes after it
    train = dict(zip(split.train_users, split.train))
    for protocol, c in split.tests.items():
        for user, history in zip(c.user_ids, c.histories):
            assert history[:len(train[user])] == train[user], protocol
    last_buy = split.tests["next_buy"]
    assert all(len(train[u]) <= len(h) for u, h in zip(last_buy.user_ids, last_buy.histories))
    buy_only = build_behavior_split(load_prepared(prepared_dir("taobao_userbehavior")), "buy")
    assert all(unpack(e)[1] == BUY for s in buy_only.train for e in s)
    assert buy_only.counts["train_events"] == sum(unpack(e)[1] == BUY for s in split.train for e in s)


@pytest.mark.slow
def test_behaviour_input_changes_the_logits_of_both_models(taobao_split):
    histories = [h[-20:] for h in taobao_split.tests["next_buy"].histories[:16]]
    masked = [pack(*zip(*[(unpack(e)[0], 0) for e in h])) for h in histories]
    for model in models(taobao_split, behavior_target=False):
        short_fit(model, taobao_split)
        with torch.no_grad():
            real, blind = model.scores(histories), model.scores(masked)
        assert torch.isfinite(real).all()
        # a view and a purchase of the same items are different inputs: every user's scores move
        assert ((real - blind).abs().amax(1) > 1e-4).all(), model.name


@pytest.mark.slow
def test_target_behaviour_conditioning_changes_the_prediction(taobao_split):
    histories = [h[-20:] for h in taobao_split.tests["next_buy"].histories[:32]]
    for model in models(taobao_split, behavior_target=True):
        short_fit(model, taobao_split)
        model.target_behavior = BUY
        buy, _ = model.recommend(histories, 10, allow_history=True)
        scores_buy = model.scores(histories)
        model.target_behavior = BEHAVIOR_ID["view"]
        view, _ = model.recommend(histories, 10, allow_history=True)
        assert ((scores_buy - model.scores(histories)).abs().amax(1) > 1e-4).all(), model.name
        assert sum(a != b for a, b in zip(buy, view)) >= 1, model.name  # some top-10 list changes


def test_switch_off_leaves_the_code_model_unchanged(ml100k_users):
    from tests.fixtures_model import layout

    before = make_model(seed=3)
    off = make_model(seed=3, behavior=None)
    on = make_model(seed=3, behavior={"target": True})
    assert not any("behavior" in k for k in off.state_dict())
    assert all(torch.equal(v, off.state_dict()[k]) for k, v in before.state_dict().items())
    users = ml100k_users[:4]
    codes, item_pos, segment, _, _ = layout(users, [[0, 1], [2, 3]], sum(len(u) for u in users))
    batch = {"codes": codes, "item_pos": item_pos, "segment": segment}
    behavior = torch.randint(1, N_BEHAVIORS, segment.shape, generator=torch.Generator().manual_seed(0))
    ref = before(**batch).logits
    assert torch.equal(off(**batch, behavior=behavior).logits, ref)  # a model without the input ignores it
    # with the input on, the behaviour embeddings are the only difference: zeroed, the logits are the same
    state = {k: v for k, v in before.state_dict().items()}
    on.load_state_dict({**on.state_dict(), **state})
    with torch.no_grad():
        on.behavior.input.weight.zero_()
        on.behavior.target.weight.zero_()
    assert torch.allclose(on(**batch, behavior=behavior).logits, ref, atol=1e-5)
    with torch.no_grad():
        on.behavior.input.weight.normal_()
    assert not torch.allclose(on(**batch, behavior=behavior).logits, ref, atol=1e-3)


@pytest.mark.slow
def test_behaviour_corpus_feeds_the_batches(tmp_path, tiny_data_config, prepared_dir):
    from recgpt.data import build_corpus, load_corpus
    from recgpt.train.batching import collate
    from recgpt.train.inputs import SequenceSource

    prepared = load_prepared(prepared_dir("taobao_userbehavior"))
    prepared_dir("lastfm")
    cfg = dataclasses.replace(tiny_data_config, datasets=["taobao_userbehavior", "lastfm"], behaviors=True,
                              heldout_users=0.0, corpus_dir=str(tmp_path / "c"))
    corpus = load_corpus(build_corpus(cfg))
    train = corpus.sequences["train"]
    source = SequenceSource.from_dataset(train)
    assert source.behaviors is not None
    dataset = np.asarray(train["dataset"])
    counts = np.bincount(np.concatenate([np.asarray(b) for b, d in zip(train["behaviors"], dataset)
                                         if d == "taobao_userbehavior"]), minlength=N_BEHAVIORS)
    expected = prepared.manifest["counts"]["behaviors"]
    dropped = corpus.manifest["counts"]["per_dataset"]["taobao_userbehavior"]["short_sequence_items_dropped"]
    got = {name: int(counts[BEHAVIOR_ID[name]]) for name in expected}
    assert counts[0] == 0 and sum(got.values()) == sum(expected.values()) - dropped
    assert all(0 <= expected[n] - got[n] <= dropped for n in expected)
    # one user's windows, in order, are the tail of that user's prepared behaviours, event by event
    user = train[int(np.flatnonzero(dataset == "taobao_userbehavior")[0])]["user_id"]
    mine = sorted((r for r in train if r["user_id"] == user), key=lambda r: r["window"])
    stored = [b for r in mine for b in r["behaviors"]]
    rows = prepared.interactions[prepared.interactions["user_id"] == user.split(":", 1)[1]]
    assert len(stored) > 30 and stored == behavior_ids(rows["behavior"].tolist())[-len(stored):].tolist()
    assert all(max(b) == 0 for b, d in zip(train["behaviors"], dataset) if d == "lastfm")  # no column: none
    first = int(np.flatnonzero(dataset == "taobao_userbehavior")[0])
    n = min(30, len(train[first]["items"]))
    rows = [[(first, 0, n)]]
    batch = collate(rows, source.take([first]), torch.zeros((len(corpus.items), 3), dtype=torch.long),
                    behaviors=source.take_behaviors([first]))
    assert batch["behavior"][0].tolist() == list(train[first]["behaviors"][:n])
    # the training stream hands them to the objective of a behaviour-input decoder, and they change its loss
    from recgpt.train.inputs import MicroBatchStream, TrainingInputs
    from recgpt.train.objective import NextItemObjective

    codes = stand_in_codes(len(corpus.items)).to(torch.int32)
    inputs = TrainingInputs(train=source, heldout=source, codes=codes, slot_vocab_sizes=[64, 64, 64],
                            corpus_hash="", tokenizer_hash="", behavior_input=True)
    batch, _ = MicroBatchStream(source, inputs, "bucket", 32, 2000, seed=0, rank=0, world=1).next()
    assert batch["behavior"].shape == batch["segment"].shape and (batch["behavior"][batch["segment"] == 0] == 0).all()
    objective = NextItemObjective(make_model(slot_vocab_sizes=[64, 64, 64], behavior={"target": False}, seed=1))
    with torch.no_grad():
        objective.decoder.behavior.input.weight.normal_()
        blind = objective(**{**batch, "behavior": torch.zeros_like(batch["behavior"])})
        assert not torch.allclose(objective(**batch)[0], blind[0])
    plain = load_corpus(build_corpus(dataclasses.replace(cfg, behaviors=False, corpus_dir=str(tmp_path / "p"))))
    assert "behaviors" not in plain.sequences["train"].column_names
    assert plain.sequences["train"]["items"] == train["items"]
