"""Cheap floors every learned model must clear: popularity, first-order Markov transitions, item-kNN.

  popularity  training interaction counts
  markov      P(next | last item) from training transition counts, add-one smoothed towards popularity
  itemknn     cosine co-occurrence of items in training users, the `knn_neighbors` strongest per item kept;
              score = sum over the last `predict.knn.last` items of decay**age * similarity
"""
import numpy as np
import scipy.sparse as sp
import torch

from recgpt.baselines.base import Baseline


def sparse_state(matrix, popularity) -> dict:
    t = matrix.tocoo()
    return {"rows": torch.from_numpy(t.row.astype(np.int64)), "cols": torch.from_numpy(t.col.astype(np.int64)),
            "values": torch.from_numpy(t.data), "popularity": popularity}


def sparse_from_state(tensors, n_items: int):
    return sp.csr_matrix((tensors["values"].numpy(), (tensors["rows"].numpy(), tensors["cols"].numpy())),
                         shape=(n_items, n_items))


def _counts(sequences, n_items: int) -> torch.Tensor:
    from recgpt.data.popularity import item_counts

    return torch.as_tensor(item_counts(sequences, n_items)).float()


class Popularity(Baseline):
    name = "popularity"

    def fit(self, split):
        self.counts = _counts(split.train, self.n_items)
        return self

    def scores(self, histories, users=None):
        # Ties to the smaller row, as recgpt.predict.baselines.popularity does.
        return self.counts.expand(len(histories), -1).clone()

    def state(self):
        return {"counts": self.counts}

    def load_state(self, tensors):
        self.counts = tensors["counts"]


class Markov(Baseline):
    name = "markov"
    generative = True

    def fit(self, split):
        src = [s[j] for s in split.train for j in range(len(s) - 1)]
        dst = [s[j + 1] for s in split.train for j in range(len(s) - 1)]
        self.transitions = sp.csr_matrix((np.ones(len(src), dtype=np.float32), (src, dst)),
                                         shape=(self.n_items, self.n_items))
        self.transitions.sum_duplicates()
        self.popularity = _counts(split.train, self.n_items)
        return self

    def scores(self, histories, users=None):
        last = [h[-1] if len(h) else 0 for h in histories]
        counts = torch.from_numpy(self.transitions[last].toarray())
        prior = (self.popularity + 1) / (self.popularity.sum() + self.n_items)
        probs = (counts + prior) / (counts.sum(dim=1, keepdim=True) + 1)
        return torch.log(probs)

    def state(self):
        return sparse_state(self.transitions, self.popularity)

    def load_state(self, tensors):
        self.transitions = sparse_from_state(tensors, self.n_items)
        self.popularity = tensors["popularity"]


class ItemKNN(Baseline):
    name = "itemknn"

    def fit(self, split):
        users = [u for u, s in enumerate(split.train) for _ in set(s)]
        items = [i for s in split.train for i in set(s)]
        ui = sp.csr_matrix((np.ones(len(items), dtype=np.float32), (users, items)),
                           shape=(len(split.train), self.n_items))
        co = (ui.T @ ui).tocsr()
        co.setdiag(0)
        co.eliminate_zeros()
        norm = np.sqrt(np.asarray(ui.sum(axis=0)).ravel()) + 1e-9
        sim = sp.diags(1 / norm) @ co @ sp.diags(1 / norm)
        self.similarity = self._top_neighbours(sim.tocsr(), self.cfg.knn_neighbors)
        self.popularity = _counts(split.train, self.n_items)
        return self

    @staticmethod
    def _top_neighbours(sim, k: int):
        rows, cols, vals = [], [], []
        for i in range(sim.shape[0]):
            start, end = sim.indptr[i], sim.indptr[i + 1]
            data, idx = sim.data[start:end], sim.indices[start:end]
            keep = np.argsort(-data, kind="stable")[:k]
            rows += [i] * len(keep)
            cols += idx[keep].tolist()
            vals += data[keep].tolist()
        return sp.csr_matrix((np.asarray(vals, dtype=np.float32), (rows, cols)), shape=sim.shape)

    def scores(self, histories, users=None):
        n_last, decay = self.knn.last, self.knn.decay
        weights = np.zeros((len(histories), self.n_items), dtype=np.float32)
        for b, h in enumerate(histories):
            for age, item in enumerate(reversed(list(h)[-n_last:])):
                weights[b, item] += decay ** age
        out = torch.from_numpy((sp.csr_matrix(weights) @ self.similarity).toarray())
        # Popularity breaks ties among items without any co-occurrence (a tiny, rank-preserving term).
        return out + 1e-6 * self.popularity / (self.popularity.max() + 1)

    def state(self):
        return sparse_state(self.similarity, self.popularity)

    def load_state(self, tensors):
        self.similarity = sparse_from_state(tensors, self.n_items)
        self.popularity = tensors["popularity"]
