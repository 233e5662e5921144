"""`recgpt tokenize embed|fit|assign` on the tiny corpus of configs/tiny.yaml (real ml-100k + lastfm items)."""
import json

import numpy as np
import pytest

from recgpt.tokenizer import load_embeddings, load_item_codes, load_tokenizer
from recgpt.tokenizer.cli import main


@pytest.mark.slow
def test_embed_and_fit_the_tiny_corpus(tiny_tokenizer, tiny_corpus):
    from recgpt.data import load_corpus

    items = load_corpus(tiny_corpus).items.sort_values("item_index")
    tok = load_tokenizer(tiny_tokenizer)
    ids, codes = load_item_codes(tiny_tokenizer / "codes.safetensors")
    assert ids == items["item_id"].tolist()  # row i = global item index i
    assert codes.shape == (len(ids), len(tok.slot_vocab_sizes))
    assert (codes >= 0).all() and (codes < np.array(tok.slot_vocab_sizes)).all()
    assert len(np.unique(codes, axis=0)) == len(ids)
    report = json.loads((tiny_tokenizer / "report.json").read_text())
    assert report["n_items"] == len(ids) and report["collisions_after"]["collision_rate"] == 0.0
    manifest = json.loads((tiny_tokenizer / "manifest.json").read_text())
    assert manifest["counts"]["items"] == len(ids) and len(manifest["embeddings_sha256"]) == 64
    emb = load_embeddings(tiny_tokenizer.parent / "embeddings")
    assert np.array_equal(tok.assign(emb), codes)


@pytest.mark.slow
def test_assign_another_dataset(tiny_tokenizer, prepared_dir, tokenizer_cache_dir, tmp_path, capsys):
    out = tmp_path / "ml-100k-emb"
    common = [f"embed.cache_dir={tokenizer_cache_dir}", f"embed.output_dir={out}"]
    assert main(["embed", "--items", str(prepared_dir("ml-100k")), *common]) == 0
    assert main(["assign", "--embeddings", str(out), f"tokenizer.output_dir={tiny_tokenizer}"]) == 0
    ids, codes = load_item_codes(out / "codes.safetensors")
    assert len(ids) == 1682 and len(np.unique(codes, axis=0)) == 1682
    assert "collision rate before resolution" in capsys.readouterr().out


def test_cli_errors_are_one_clear_line(tmp_path, capsys):
    assert main(["fit", f"tokenizer.embeddings_dir={tmp_path / 'none'}"]) == 2  # bad input
    err = capsys.readouterr().err
    assert "recgpt tokenize fit: item embeddings not found" in err and "Traceback" not in err
    assert main(["nonsense"]) == 2
    assert "usage: recgpt tokenize" in capsys.readouterr().err
