"""The embedding cache's own layout: keys inside the shards, vectorised membership, format-1 conversion, bad shards.

Texts are real ml-100k item texts; the vectors are random (the encoder is not what is tested here)."""
import hashlib
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from recgpt.io import ArtifactError
from recgpt.tokenizer.cache import EmbeddingCache, text_sha

MODEL = "all-MiniLM-L6-v2"


@pytest.fixture
def texts(real_items) -> list[str]:
    return list(dict.fromkeys(real_items[1]))[:600]  # distinct real texts


def vectors_for(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 8)).astype(np.float16)


def test_shards_hold_their_keys_and_index_lists_only_shards(texts, tmp_path):
    shas, vectors = [text_sha(t) for t in texts], vectors_for(len(texts))
    cache = EmbeddingCache(tmp_path, MODEL)
    for start in range(0, 500, 128):
        cache.add(shas[start:min(start + 128, 500)], vectors[start:min(start + 128, 500)])
    index = json.loads((tmp_path / "index.json").read_text())
    assert index == {"model": MODEL, "format": 2, "shards": [f"shard-{i:05d}.safetensors" for i in range(4)]}
    keys = np.concatenate([load_file(tmp_path / s)["shas"].numpy() for s in index["shards"]])
    assert keys.dtype == np.uint8 and keys.shape == (500, 32)
    assert [bytes(k).hex() for k in keys] == shas[:500]
    again = EmbeddingCache(tmp_path, MODEL)
    assert len(again) == 500 and shas[0] in again and shas[550] not in again
    query = shas[450:] + shas[:3]  # 50 cached, 100 not, 3 cached
    assert again.missing(query).tolist() == list(range(50, 150))
    picked = list(range(499, -1, -7))
    assert np.array_equal(again.get([shas[i] for i in picked]), vectors[picked])
    with pytest.raises(KeyError, match=shas[520]):
        again.get([shas[0], shas[520]])
    # the instance that wrote sees its own shards, and one written by another instance after it opened
    other = EmbeddingCache(tmp_path, MODEL)
    other.add(shas[500:], vectors[500:])
    cache.add(shas[:10], vectors[:10])  # written again: stored twice, counted and returned once
    assert len(cache) == len(texts) and not len(cache.missing(shas))
    assert np.array_equal(cache.get(shas), vectors)


def test_building_the_lookup_reads_no_embeddings(texts, tmp_path, monkeypatch):
    import safetensors

    shas = [text_sha(t) for t in texts]
    EmbeddingCache(tmp_path, MODEL).add(shas, vectors_for(len(shas)))
    read, real_open = [], safetensors.safe_open

    class Spy:
        def __init__(self, *args, **kwargs):
            self.inner = real_open(*args, **kwargs)

        def __enter__(self):
            handle = self.inner.__enter__()

            class Handle:
                def __getattr__(_, name):
                    return getattr(handle, name)

                def get_tensor(_, name):
                    read.append(name)
                    return handle.get_tensor(name)

            return Handle()

        def __exit__(self, *exc):
            return self.inner.__exit__(*exc)

    monkeypatch.setattr(safetensors, "safe_open", Spy)
    cache = EmbeddingCache(tmp_path, MODEL)
    assert len(cache) == len(shas) and not len(cache.missing(shas))
    assert read and set(read) == {"shas"}
    cache.get(shas[:2])
    assert read[-1] == "embeddings"


def test_digests_sharing_a_prefix_are_told_apart(tmp_path):
    """Two keys with the same first 8 bytes: the full digest decides (a prefix hit alone is never trusted)."""
    first = hashlib.sha256(b"one").hexdigest()
    twin = first[:16] + hashlib.sha256(b"two").hexdigest()[16:]
    third = first[:16] + hashlib.sha256(b"three").hexdigest()[16:]
    cache = EmbeddingCache(tmp_path, MODEL)
    cache.add([first], vectors_for(1, 1))
    assert cache.missing([twin, first, third]).tolist() == [0, 2] and twin not in cache
    with pytest.raises(KeyError):
        cache.get([twin])
    cache.add([third, twin], vectors_for(2, 2))
    reopened = EmbeddingCache(tmp_path, MODEL)
    assert len(reopened) == 3 and not len(reopened.missing([twin, third, first]))
    assert np.array_equal(reopened.get([twin, third, first]),
                          np.concatenate([vectors_for(2, 2)[::-1], vectors_for(1, 1)]))

    # many at once: a tenth of 3,000 stored keys share their prefix with another, stored or asked for
    rng = np.random.default_rng(3)
    keys = [rng.bytes(32).hex() for _ in range(4000)]
    keys[1::10] = [k[:16] + rng.bytes(24).hex() for k in keys[0::10]]  # stored twins (and 100 unstored ones)
    keys[3005::10] = [k[:16] + rng.bytes(24).hex() for k in keys[0:1000:10]]  # unstored twins of stored keys
    stored, asked = keys[:3000], keys[::-1]  # the last 1,000 are not stored
    big = EmbeddingCache(tmp_path / "big", MODEL)
    for start in range(0, 3000, 700):
        big.add(stored[start:start + 700], vectors_for(len(stored[start:start + 700]), start))
    held = set(stored)
    assert big.missing(asked).tolist() == [i for i, k in enumerate(asked) if k not in held]
    assert len(EmbeddingCache(tmp_path / "big", MODEL)) == 3000


def write_format_1(folder, shas, vectors, shard_size):
    """A cache as recgpt wrote it before shards held keys: index.json with every text's [shard, row]."""
    folder.mkdir(parents=True)
    index = {"model": MODEL, "shards": [], "rows": {}}
    for number, start in enumerate(range(0, len(shas), shard_size)):
        name = f"shard-{number:05d}.safetensors"
        save_file({"embeddings": torch.from_numpy(vectors[start:start + shard_size])}, str(folder / name),
                  metadata={"model": MODEL})
        index["shards"].append(name)
        for row, sha in enumerate(shas[start:start + shard_size]):
            index["rows"][sha] = [number, row]
    (folder / "index.json").write_text(json.dumps(index))


def test_format_1_cache_is_converted_on_open(texts, tmp_path):
    shas, vectors = [text_sha(t) for t in texts], vectors_for(len(texts))
    # the last shard repeats text 0 (two runs embedded it): its key points there, its first row is no one's
    old_shas, old_vectors = shas[:300] + [shas[0]], np.concatenate([vectors[:300], vectors[:1] + 1])
    write_format_1(tmp_path / "c", old_shas, old_vectors, 100)
    old_rows = json.loads((tmp_path / "c" / "index.json").read_text())["rows"]
    cache = EmbeddingCache(tmp_path / "c", MODEL)
    assert len(cache) == 300 and cache.missing(shas[295:305]).tolist() == [5, 6, 7, 8, 9]
    expected = old_vectors[[100 * s + r for s, r in (old_rows[sha] for sha in shas[:300])]]
    assert np.array_equal(cache.get(shas[:300]), expected)  # text 0: the row its old key pointed to
    index = json.loads((tmp_path / "c" / "index.json").read_text())
    assert "rows" not in index and index["format"] == 2 and len(index["shards"]) == 4
    last = load_file(tmp_path / "c" / index["shards"][3])
    assert last["shas"].shape == (1, 32) and last["embeddings"].shape == (1, 8)
    assert bytes(last["shas"][0].numpy()).hex() == shas[0]
    first = load_file(tmp_path / "c" / index["shards"][0])["shas"].numpy()
    assert not first[0].any() and bytes(first[1]).hex() == shas[1]
    assert np.array_equal(cache.get(shas[:1]), vectors[:1] + 1)
    cache.add(shas[300:], vectors[300:])  # new shards go on in format 2
    back = EmbeddingCache(tmp_path / "c", MODEL)
    assert len(back) == len(texts) and np.array_equal(back.get(shas[300:]), vectors[300:])
    assert not list((tmp_path / "c").glob("*.tmp"))


def test_bad_shards_and_index_are_named(texts, tmp_path):
    shas, vectors = [text_sha(t) for t in texts[:20]], vectors_for(20)
    EmbeddingCache(tmp_path / "a", MODEL).add(shas, vectors)
    shard = tmp_path / "a" / "shard-00000.safetensors"
    save_file({"embeddings": torch.from_numpy(vectors)}, str(shard))  # no keys
    with pytest.raises(ArtifactError, match=r"shard-00000.safetensors: no tensor 'shas'"):
        len(EmbeddingCache(tmp_path / "a", MODEL))
    keys = torch.from_numpy(np.frombuffer(bytes.fromhex("".join(shas)), np.uint8).reshape(20, 32).copy())
    save_file({"embeddings": torch.from_numpy(vectors), "shas": keys[:19]}, str(shard))
    with pytest.raises(ArtifactError, match=r"shard-00000.safetensors: tensor 'shas' is uint8 \(19, 32\), not "
                                            r"uint8 \[20, 32\]"):
        EmbeddingCache(tmp_path / "a", MODEL).missing(shas)
    save_file({"embeddings": torch.from_numpy(vectors), "shas": keys.to(torch.int32)}, str(shard))
    with pytest.raises(ArtifactError, match="shard-00000.safetensors: tensor 'shas' is int32"):
        EmbeddingCache(tmp_path / "a", MODEL).get(shas)
    shard.write_bytes(b"\x00garbage")
    with pytest.raises(ArtifactError, match="shard-00000.safetensors: not a readable safetensors file"):
        shas[0] in EmbeddingCache(tmp_path / "a", MODEL)
    index = tmp_path / "a" / "index.json"
    index.write_text(json.dumps({"model": MODEL, "format": 3, "shards": []}))
    with pytest.raises(ArtifactError, match="index.json: cache format 3"):
        EmbeddingCache(tmp_path / "a", MODEL)
    index.write_text(json.dumps({"model": MODEL, "shards": ["shard-00000.safetensors"], "rows": {"ab": [0, 0]}}))
    with pytest.raises(ArtifactError, match="index.json: 'rows' holds a bad entry"):
        EmbeddingCache(tmp_path / "a", MODEL)
    write_format_1(tmp_path / "b", shas, vectors, 20)
    rows = json.loads((tmp_path / "b" / "index.json").read_text())
    rows["rows"][shas[3]] = [0, 20]
    (tmp_path / "b" / "index.json").write_text(json.dumps(rows))
    with pytest.raises(ArtifactError, match="index.json: a row of shard-00000.safetensors beyond its 20 vectors"):
        EmbeddingCache(tmp_path / "b", MODEL)
    with pytest.raises(ValueError, match="not a hex sha256 digest: 'xyz'"):
        EmbeddingCache(tmp_path / "c", MODEL).missing([shas[0], "xyz"])
