"""Fitted tokenizers on real MiniLM embeddings of ml-100k items: codes, determinism, artifacts, bad input."""
import copy
import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from recgpt.config import TokenizerConfig
from recgpt.io import ArtifactError
from recgpt.tokenizer import (CollisionError, embed_items, fit_tokenizer, format_report, load_item_codes,
                              load_tokenizer, save_item_codes)
from recgpt.tokenizer.fit import recon_loss
from fixtures_tokenizer import SMALL_FITS

KINDS = list(SMALL_FITS)


@pytest.mark.parametrize("name", KINDS)
def test_codes_in_range_unique_and_deterministic(fitted_tokenizers, real_embeddings, name):
    tok = fitted_tokenizers[name]
    codes = tok.encode(real_embeddings)
    assigned = tok.assign(real_embeddings)
    assert codes.shape == (1682, tok.n_codes) and assigned.shape == (1682, len(tok.slot_vocab_sizes))
    assert np.array_equal(assigned[:, :-1], codes)
    assert (assigned >= 0).all() and (assigned < np.array(tok.slot_vocab_sizes)).all()
    assert len(np.unique(assigned, axis=0)) == len(assigned)
    assert np.array_equal(tok.encode(real_embeddings), codes)
    assert np.array_equal(tok.encode(real_embeddings.vectors[::-1])[::-1], codes)  # batch order is irrelevant


@pytest.mark.parametrize("kind", ["fsq", "rqvae"])
def test_fit_is_seeded_and_deterministic(real_embeddings, kind):
    x = real_embeddings.vectors[:400]
    cfg = TokenizerConfig(kind=kind, encoder="mlp", epochs=2, batch_size=64, hidden=64, codebook_size=16,
                          kmeans_iters=5)

    def codes(seed):
        return fit_tokenizer(x, replace(cfg, seed=seed), embed_model="m", progress=False).encode(x)

    first = codes(0)
    assert np.array_equal(codes(0), first)
    assert not np.array_equal(codes(1), first)


@pytest.mark.parametrize("name", KINDS)
def test_save_load_gives_identical_codes(fitted_tokenizers, real_embeddings, tmp_path, name):
    tok = fitted_tokenizers[name]
    folder = tok.save(tmp_path / name)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors", "report.json"]
    config = json.loads((folder / "config.json").read_text())
    assert config["embed_model"] == "all-MiniLM-L6-v2" and config["embed_dim"] == 384
    assert config["slot_vocab_sizes"] == tok.slot_vocab_sizes and config["kind"] == tok.kind
    back = load_tokenizer(folder)
    assert back.slot_vocab_sizes == tok.slot_vocab_sizes and back.embed_model == tok.embed_model
    assert np.array_equal(back.assign(real_embeddings), tok.assign(real_embeddings))
    ids = real_embeddings.item_ids
    save_item_codes(tmp_path / "codes" / "codes.safetensors", ids, tok.assign(real_embeddings))
    ids_back, codes_back = load_item_codes(tmp_path / "codes" / "codes.safetensors")
    assert ids_back == ids and codes_back.dtype == np.int32
    assert np.array_equal(codes_back, tok.assign(real_embeddings))


@pytest.mark.parametrize("name", ["fsq-mlp", "fsq-reshape", "rqvae"])
def test_straight_through_gradients_reach_encoder(fitted_tokenizers, real_embeddings, name):
    model = copy.deepcopy(fitted_tokenizers[name].model).train()
    x = torch.as_tensor(real_embeddings.vectors[:256]).float()
    recon, _, aux = model(x)
    (recon_loss(recon, x, "mse") + aux).backward()
    encoder_grads = [p.grad for p in model.encoder.parameters()]
    assert all(g is not None and g.abs().sum() > 0 for g in encoder_grads)


def test_report_contents(fitted_tokenizers):
    for name, tok in fitted_tokenizers.items():
        r = tok.report
        assert r["n_items"] == 1682 and r["n_heldout"] == 84 and r["reconstruction_on"] == "heldout"
        assert r["collisions_after"]["collision_rate"] == 0.0
        assert 0.0 <= r["collisions_before"]["collision_rate"] < 1.0
        # no collapse: the largest tuple leaves the disambiguation slot most of its room
        assert r["max_items_per_tuple"] == r["collisions_before"]["max_items_per_tuple"] <= tok.dedup_size // 4
        assert r["items_over_dedup_capacity"] == 0
        assert len(r["dead_code_share"]) == tok.n_codes and all(0 <= d < 1 for d in r["dead_code_share"])
        assert len(r["slots"]) == len(tok.slot_vocab_sizes)
        for slot in r["slots"][:-1]:
            assert 0 < slot["usage"] <= 1 and slot["entropy_bits"] > 0
        assert np.isfinite(r["reconstruction"]["mse"])
        table = format_report(r)
        assert "collision rate before" in table and "| 0 | " in table


@pytest.mark.parametrize("name", ["rqvae", "rqkmeans"])
def test_residual_codebooks_are_used(fitted_tokenizers, name):
    # 1,682 items over 32 codes a level: a healthy fit uses most codes of every level
    r = fitted_tokenizers[name].report
    assert max(r["dead_code_share"]) < 0.25, r["dead_code_share"]
    assert r["collisions_before"]["collision_rate"] < 0.10


def test_learned_encoder_reconstructs_better_than_reshape(fitted_tokenizers):
    # collisions are compared in bench/tokenizers.py on 42k items; here both sit near the floor set by the
    # 18 ml-100k items whose text repeats an earlier item's
    mlp, reshape = fitted_tokenizers["fsq-mlp"].report, fitted_tokenizers["fsq-reshape"].report
    assert mlp["reconstruction"]["mse"] < reshape["reconstruction"]["mse"]
    floor = 1 - mlp["n_unique_embeddings"] / mlp["n_items"]
    assert floor > 0 and mlp["collisions_before"]["collision_rate"] >= floor


@pytest.fixture(scope="module")
def other_dataset_embeddings(data_root, embed_config):
    """80 real Amazon video game titles: a dataset the tokenizers never saw."""
    items = pd.read_csv(data_root / "amazon_games" / "amazon_games.item", sep="\t", nrows=80)
    return embed_items(items["item_id:token"].astype(str), items["title:token_seq"].astype(str), embed_config)


def test_encodes_unseen_dataset_and_checks_encoder(fitted_tokenizers, other_dataset_embeddings):
    tok = fitted_tokenizers["fsq-mlp"]
    codes = tok.assign(other_dataset_embeddings)
    assert codes.shape == (80, 5) and (codes < np.array(tok.slot_vocab_sizes)).all()
    assert len(np.unique(codes, axis=0)) == 80
    wrong = replace(other_dataset_embeddings, model="all-mpnet-base-v2")
    with pytest.raises(ValueError, match="come from 'all-mpnet-base-v2' but this tokenizer was fitted on "
                                         "'all-MiniLM-L6-v2'"):
        tok.encode(wrong)


def test_bad_embeddings_are_clear_errors(fitted_tokenizers, real_embeddings):
    tok = fitted_tokenizers["rqkmeans"]
    x = real_embeddings.vectors[:10].astype(np.float32)
    bad = x.copy()
    bad[3, 7], bad[6, 0] = np.nan, np.inf
    with pytest.raises(ValueError, match=r"2 row\(s\) hold NaN or inf, e.g. rows \[3, 6\]"):
        tok.encode(bad)
    with pytest.raises(ValueError, match=r"NaN or inf"):
        fit_tokenizer(np.concatenate([bad, x]), TokenizerConfig(kind="rqkmeans", codebook_size=2),
                      embed_model="all-MiniLM-L6-v2", progress=False)
    with pytest.raises(ValueError, match=r"shape \(10, 100\): this tokenizer expects \[N, 384\]"):
        tok.encode(x[:, :100])
    with pytest.raises(ValueError, match="pass embed_model"):
        fit_tokenizer(x, TokenizerConfig(kind="rqkmeans", codebook_size=2), progress=False)
    with pytest.raises(ValueError, match="codebook_size=32 exceeds the 9 training items"):
        fit_tokenizer(x, TokenizerConfig(kind="rqkmeans", codebook_size=32, heldout=0.1),
                      embed_model="all-MiniLM-L6-v2", progress=False)


def test_too_many_items_on_one_tuple_is_an_error(fitted_tokenizers, real_embeddings):
    tok = fitted_tokenizers["fsq-mlp"]
    same = np.repeat(real_embeddings.vectors[:1], tok.dedup_size + 1, axis=0)
    with pytest.raises(CollisionError, match=f"{tok.dedup_size + 1} items share the code tuple .* "
                                             f"tokenizer.dedup_size={tok.dedup_size}"):
        tok.assign(same)
    assert tok.assign(same[:-1])[:, -1].tolist() == list(range(tok.dedup_size))


def test_damaged_tokenizer_folders(fitted_tokenizers, real_embeddings, tmp_path):
    folder = fitted_tokenizers["fsq-reshape"].save(tmp_path / "tok")
    model = folder / "model.safetensors"
    data = model.read_bytes()
    model.write_bytes(data[:-100])
    with pytest.raises(ArtifactError, match="model.safetensors: not a readable safetensors file"):
        load_tokenizer(folder)
    model.write_bytes(data)
    (folder / "report.json").unlink()
    with pytest.raises(ArtifactError, match="tokenizer at .* is incomplete: missing report.json"):
        load_tokenizer(folder)
    with pytest.raises(ArtifactError, match="not a folder"):
        load_tokenizer(tmp_path / "absent")
    codes_path = tmp_path / "codes" / "codes.safetensors"
    save_item_codes(codes_path, real_embeddings.item_ids[:5], np.zeros((5, 5), np.int64))
    codes_path.write_bytes(codes_path.read_bytes()[:20])
    with pytest.raises(ArtifactError, match="codes.safetensors: not a readable safetensors file"):
        load_item_codes(codes_path)


@pytest.mark.parametrize("overrides", [dict(kind="fsq", loss="cosine"), dict(kind="rqvae", rotation_trick=True)])
def test_other_training_options_fit(real_embeddings, overrides):
    x = real_embeddings.vectors[:300]
    cfg = TokenizerConfig(**overrides, epochs=2, batch_size=64, hidden=64, codebook_size=16, kmeans_iters=5)
    tok = fit_tokenizer(x, cfg, embed_model="m", progress=False)
    assert tok.report["reconstruction"]["cosine"] > 0.1  # better than unrelated vectors
    assert tok.report["params"] == tok.params and tok.encode(x).shape == (300, 4)
