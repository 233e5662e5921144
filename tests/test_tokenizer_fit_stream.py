"""The tokenizer fit streams its embeddings: from a memory-mapped file, in batches, with the same result as
the fit on the same embeddings held in memory (real ml-100k MiniLM embeddings)."""
import numpy as np
import pytest
import torch

from recgpt.config import TokenizerConfig
from recgpt.tokenizer import fit as fit_mod
from recgpt.tokenizer import fit_tokenizer, load_embeddings

KINDS = {
    "fsq": dict(kind="fsq", encoder="mlp", epochs=3, batch_size=128, hidden=64),
    "rqvae": dict(kind="rqvae", epochs=2, rq_warmup_epochs=1, batch_size=128, hidden=64, codebook_size=16,
                  kmeans_iters=10, kmeans_max_items=600),
    "rqkmeans": dict(kind="rqkmeans", codebook_size=16, kmeans_iters=10, kmeans_max_items=600),
}


class CountedReads:
    """An [N, D] array-like that records the most rows one read returned and refuses a whole-matrix copy."""

    def __init__(self, data):
        self.data, self.shape, self.dtype, self.most = data, data.shape, data.dtype, 0

    def __len__(self):
        return self.shape[0]

    def __getitem__(self, key):
        out = self.data[key]
        self.most = max(self.most, len(out))
        return out

    def __array__(self, *args, **kwargs):
        raise AssertionError("the whole embedding matrix was read at once")


@pytest.fixture(scope="module")
def mapped(real_embeddings, tmp_path_factory):
    return load_embeddings(real_embeddings.save(tmp_path_factory.mktemp("emb") / "emb"), mmap=True)


def test_mmap_load_stays_on_disk(mapped, real_embeddings):
    assert isinstance(mapped.vectors, np.memmap) and mapped.vectors.dtype == np.float16
    assert np.array_equal(np.asarray(mapped.vectors), real_embeddings.vectors)
    assert mapped.item_ids == real_embeddings.item_ids and mapped.model == real_embeddings.model


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_streaming_fit_equals_in_memory_fit(kind, mapped, real_embeddings, monkeypatch):
    cfg = TokenizerConfig(**KINDS[kind], seed=3)
    in_memory = fit_tokenizer(real_embeddings, cfg, progress=False)
    monkeypatch.setattr(fit_mod, "CHUNK", 256)  # several chunks over the 1,682 items
    reads = CountedReads(mapped.vectors)
    streamed = fit_tokenizer(reads, cfg, embed_model=mapped.model, progress=False)
    assert 0 < reads.most <= 600 < len(mapped.vectors)  # a chunk, a batch or the k-means sample at a time
    a, b = in_memory.model.state_dict(), streamed.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert np.array_equal(in_memory.encode(real_embeddings), streamed.encode(mapped))
    drop = ("fit_seconds",)
    assert {k: v for k, v in in_memory.report.items() if k not in drop} == \
        {k: v for k, v in streamed.report.items() if k not in drop}
    assert streamed.report["n_unique_embeddings"] == len(np.unique(real_embeddings.vectors, axis=0))


def test_streamed_statistics_match_the_whole_matrix(real_embeddings, monkeypatch):
    monkeypatch.setattr(fit_mod, "CHUNK", 100)
    x = torch.from_numpy(real_embeddings.vectors.astype(np.float32))
    model = fit_mod.build_model("rqkmeans", x.shape[1], {"n_codes": 1, "codebook_size": 2})
    fit_mod.set_standardization(model, fit_mod.RowSource(real_embeddings.vectors))
    assert torch.allclose(model.shift, x.mean(0), atol=1e-6)
    assert torch.allclose(model.scale, x.std(0).clamp_min(1e-6), rtol=1e-4)  # one MiniLM dimension is constant
    shrink = lambda rows: (rows * 0.9 + 0.01,)  # noqa: E731  (a "model" that maps each row on its own)
    expected = fit_mod.reconstruction_errors(x, shrink(x)[0])
    got = fit_mod.streamed_reconstruction(shrink, fit_mod.RowSource(real_embeddings.vectors))
    assert got == pytest.approx(expected, rel=1e-5)


def test_mmap_reader_on_a_file_written_in_chunks_and_on_damage(tmp_path):
    import importlib.util
    from pathlib import Path

    from recgpt.io import ArtifactError

    # the scale bench writes its vectors chunk by chunk (loaded by path: bench/ on sys.path shadows packages)
    bench = Path(__file__).resolve().parents[1] / "bench"
    spec = importlib.util.spec_from_file_location("bench_scale", bench / "scale.py")
    bench_scale = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_scale)
    write_random_embeddings = bench_scale.write_random_embeddings

    write_random_embeddings(tmp_path / "emb", 1000, chunk=300)
    emb = load_embeddings(tmp_path / "emb", mmap=True)
    assert emb.vectors.shape == (1000, 384) and len(emb.item_ids) == 1000
    norms = np.linalg.norm(np.asarray(emb.vectors, dtype=np.float32), axis=1)
    assert np.allclose(norms, 1, atol=2e-3) and len(np.unique(np.asarray(emb.vectors), axis=0)) == 1000
    path = tmp_path / "emb" / "embeddings.safetensors"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ArtifactError, match=r"tensor 'embeddings' \(1000, 384\) does not fit the file"):
        load_embeddings(tmp_path / "emb", mmap=True)
    path.write_bytes(b"\xff" * 16)
    with pytest.raises(ArtifactError, match="not a readable safetensors file"):
        load_embeddings(tmp_path / "emb", mmap=True)
