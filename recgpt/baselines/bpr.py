"""BPR-MF (Rendle et al. 2009) with the `implicit` library: matrix factorisation trained with the pairwise
BPR loss on the training user x item matrix. Early stopping on validation NDCG@10 every `bpr_epochs_per_eval`
epochs (implicit continues from its current factors when fit is called again).

Known users score with their own factors; a user absent from training (cold start) is folded in as the mean
of their history's item factors. implicit's last factor column is the item bias (user side fixed to 1).
"""
import numpy as np
import scipy.sparse as sp
import torch
from tqdm.auto import tqdm

from recgpt.baselines.base import Baseline


class BPRMF(Baseline):
    name = "bpr"

    def fit(self, split):
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        from recgpt.baselines.data import subset
        from recgpt.baselines.training import validation_ndcg

        c = self.cfg
        users = [u for u, s in enumerate(split.train) for _ in s]
        items = [i for s in split.train for i in s]
        matrix = sp.csr_matrix((np.ones(len(items), dtype=np.float32), (users, items)),
                               shape=(len(split.train), self.n_items))
        matrix.data[:] = 1.0  # repeats count once
        model = BayesianPersonalizedRanking(factors=c.factors, learning_rate=c.bpr_lr, regularization=c.regularization,
                                            iterations=c.bpr_epochs_per_eval, random_state=c.seed, num_threads=c.threads)
        self.user_index = {u: i for i, u in enumerate(split.train_users)}
        valid = subset(split.valid, c.max_valid_users, c.seed)
        best, bad, log = -1.0, 0, []
        for epoch in tqdm(range(c.bpr_epochs_per_eval, c.bpr_epochs + 1, c.bpr_epochs_per_eval), desc="bpr", leave=False):
            model.fit(matrix, show_progress=False)
            self.user_factors = torch.from_numpy(np.array(model.user_factors))
            self.item_factors = torch.from_numpy(np.array(model.item_factors))
            ndcg = validation_ndcg(self, valid, c)
            log.append({"epoch": epoch, "valid_ndcg@10": ndcg})
            if ndcg > best:
                best, bad, kept = ndcg, 0, (self.user_factors.clone(), self.item_factors.clone())
            else:
                bad += 1
                if bad >= c.patience:
                    break
        self.user_factors, self.item_factors = kept
        self.fit_log = {"epochs": log, "best_valid_ndcg@10": best}
        return self

    def _user_vectors(self, histories, users):
        out = []
        for b, h in enumerate(histories):
            row = self.user_index.get(str(users[b])) if users is not None else None
            if row is not None:
                out.append(self.user_factors[row])
            else:
                folded = self.item_factors[list(h)].mean(dim=0).clone()
                folded[-1] = 1.0
                out.append(folded)
        return torch.stack(out)

    def scores(self, histories, users=None):
        return self._user_vectors(histories, users) @ self.item_factors.T

    def state(self):
        return {"user_factors": self.user_factors, "item_factors": self.item_factors}

    def load_state(self, tensors):
        self.user_factors, self.item_factors = tensors["user_factors"], tensors["item_factors"]

    def extra_meta(self):
        return {"users": sorted(self.user_index, key=self.user_index.get)}

    def load_extra(self, meta):
        self.user_index = {u: i for i, u in enumerate(meta.get("users", []))}
