"""The collaborative text adapter (recgpt.tokenizer.align) on real ml-100k titles and sequences."""
import json

import numpy as np
import pandas as pd
import pytest
import torch

from recgpt.tokenizer.align import AlignConfig, Domain, TextAdapter, info_nce, next_item_pairs, train_adapter


@pytest.fixture(scope="module")
def ml100k_rows(prepared_dir, real_embeddings):
    """Each ml-100k user's items as rows of real_embeddings, in order."""
    from recgpt.predict.protocols import user_sequences

    row_of = {item: row for row, item in enumerate(real_embeddings.item_ids)}
    seqs = user_sequences(pd.read_parquet(prepared_dir("ml-100k") / "interactions.parquet"))
    return [[row_of[i] for i in items] for items in seqs]


def test_untrained_adapter_is_the_identity_and_round_trips(real_embeddings, tmp_path):
    x = torch.nn.functional.normalize(torch.from_numpy(real_embeddings.vectors.astype(np.float32)), dim=1)
    adapter = TextAdapter(x.shape[1], 64)
    assert torch.allclose(adapter(x), x, atol=1e-6)
    torch.nn.init.normal_(adapter.up.weight, std=0.05)  # a trained-looking adapter moves the vectors ...
    moved = adapter.transform(real_embeddings.vectors)
    assert np.abs(moved.astype(np.float32) - x.numpy()).max() > 1e-2
    loaded = TextAdapter.load(adapter.save(tmp_path / "adapter"))  # ... and a saved one moves them the same way
    assert np.array_equal(loaded.transform(real_embeddings.vectors), moved)
    np.testing.assert_allclose(np.linalg.norm(moved.astype(np.float32), axis=1), 1.0, atol=2e-3)


def test_a_centering_adapter_starts_at_the_centered_catalog_and_old_adapters_load_plain(real_embeddings, tmp_path):
    x = real_embeddings.vectors.astype(np.float32)
    centered = x - x.mean(0)
    centered /= np.linalg.norm(centered, axis=1, keepdims=True)
    adapter = TextAdapter(x.shape[1], 16, center=True)  # untrained: content kNN's own centered vectors
    np.testing.assert_allclose(adapter.transform(real_embeddings.vectors).astype(np.float32), centered, atol=2e-3)
    assert np.abs(centered - x).max() > 0.1  # centering moves MiniLM vectors: the check above could fail
    folder = adapter.save(tmp_path / "adapter")
    assert TextAdapter.load(folder).center
    config = json.loads((folder / "adapter.json").read_text())
    del config["center"]  # an adapter written before centering existed was trained on plain vectors
    (folder / "adapter.json").write_text(json.dumps(config))
    assert not TextAdapter.load(folder).center


def test_next_item_pairs_leave_out_repeats_and_single_items():
    pairs = next_item_pairs([[1, 2, 2, 3], [4], [], [5, 6]])
    assert pairs.tolist() == [[1, 2], [2, 3], [5, 6]]


def test_copies_of_a_positive_are_not_negatives():
    adapter = TextAdapter(8, 4)
    vectors = torch.nn.functional.normalize(torch.randn(5, 8), dim=1)
    same = torch.tensor([[0, 1]] * 6)  # six copies of one pair: nothing is left to tell apart
    with torch.no_grad():
        assert float(info_nce(adapter, vectors, same, 0.05)) == pytest.approx(0.0, abs=1e-6)
        assert np.isfinite(float(info_nce(adapter, vectors, torch.tensor([[0, 1], [2, 3], [0, 1], [4, 3]]), 0.05)))


def test_alignment_loss_falls_on_pairs_of_users_it_never_saw(real_embeddings, ml100k_rows):
    rng = np.random.default_rng(0)
    held = set(rng.permutation(len(ml100k_rows))[:len(ml100k_rows) // 5].tolist())
    train = Domain("ml-100k", real_embeddings.vectors,
                   next_item_pairs([s for u, s in enumerate(ml100k_rows) if u not in held]))
    test = torch.from_numpy(next_item_pairs([s for u, s in enumerate(ml100k_rows) if u in held]))
    vectors = torch.from_numpy(real_embeddings.vectors.astype(np.float32))
    vectors = vectors - vectors.mean(0)  # the catalog centered, as train_adapter reads it (AlignConfig.center)
    cfg = AlignConfig(hidden=128, epochs=2, batch_size=256, max_pairs_per_domain=20_000, lr=2e-3)
    kept = {}

    def held_out_loss(epoch, adapter, loss):
        with torch.no_grad():
            order = torch.from_numpy(rng.permutation(len(test))[:4096])
            kept[epoch] = np.mean([float(info_nce(adapter, vectors, test[order[s:s + 256]], cfg.temperature))
                                   for s in range(0, len(order), 256)])

    history = train_adapter([train], cfg, held_out_loss)
    assert [h["epoch"] for h in history] == [0, 1, 2]
    assert history[-1]["loss"] < 0.9 * history[0]["loss"]  # epoch 0: the untrained identity
    assert kept[2] < 0.95 * kept[0]


def test_plain_and_identity_vectors_give_the_same_knn_rows(prepared_dir, real_embeddings):
    from recgpt.predict.transfer import baselines_eval

    identity = TextAdapter(real_embeddings.dim, 32).transform(real_embeddings.vectors)
    result = baselines_eval(prepared_dir("ml-100k"), real_embeddings.item_ids,
                            {"plain": real_embeddings.vectors, "identity": identity}, "loo", 300)
    assert result["users"] == 300
    assert result["methods"]["plain"]["NDCG@10"] > 0
    assert abs(result["methods"]["plain"]["NDCG@10"] - result["methods"]["identity"]["NDCG@10"]) < 0.01
    assert set(result["methods"]) == {"plain", "identity", "popularity"}


def test_refuses_what_it_cannot_train_on(real_embeddings, tmp_path):
    from recgpt.io import ArtifactError

    with pytest.raises(ValueError, match="no \\(item, next item\\) pairs"):
        train_adapter([Domain("empty", real_embeddings.vectors, np.zeros((0, 2), np.int64))], AlignConfig())
    with pytest.raises(ValueError, match="align.hidden"):
        AlignConfig(hidden=0)
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "adapter.safetensors").write_bytes(b"")
    (tmp_path / "x" / "adapter.json").write_text('{"kind": "tokenizer"}')
    with pytest.raises(ArtifactError, match="not a text adapter"):
        TextAdapter.load(tmp_path / "x")
