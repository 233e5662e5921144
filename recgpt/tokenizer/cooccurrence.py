"""Item embeddings without item text: truncated SVD of the item x context co-occurrence matrix.

The id-only path through the tokenizer: these vectors take the place of text embeddings, and the usual
`fit_tokenizer` (RQ-KMeans by default for them) turns them into codes, so collisions, slot usage and the
disambiguation slot work as for text. Items that appear in the same contexts get the same leading codes.

- Contexts: a user ("user") or a user's session ("session", cut by the inactivity gap of
  recgpt.data.sessions); a session context separates the many items one user touches once, which a
  user context would give identical vectors.
- Optional item features (e.g. Taobao's category) are one-hot columns with weight `feature_weight`.
- Cell value log(1 + events); rows L2-normalised before the SVD and after it. An item with no event and no
  feature has a zero co-occurrence part (counted as `n_empty_text`, like an item without text).
- Hashed id (`id_dims` > 0): a fixed pseudo-random unit vector per item id (seeded by its sha256), scaled by
  `id_weight`, appended. Items the data cannot tell apart (one view in one session) have equal
  co-occurrence vectors; the hashed part spreads them over the deeper residual levels instead of piling
  them onto one tuple that only the disambiguation slot separates. Fit without `tokenizer.standardize`,
  so the weight keeps its meaning.
Pass only training interactions, or held-out targets leak into the codes.
"""
from typing import Optional, Sequence

import hashlib

import numpy as np
import pandas as pd

from recgpt.data.sessions import session_ids
from recgpt.tokenizer.embed import Embeddings


def context_matrix(interactions: pd.DataFrame, item_ids: Sequence[str], context: str, gap_minutes: float,
                   features: Optional[pd.Series], feature_weight: float):
    """Sparse [N_items, contexts (+ feature values)] matrix with log(1 + count) cells."""
    from scipy import sparse

    index = pd.Index([str(i) for i in item_ids])
    rows = index.get_indexer(interactions["item_id"].astype(str))
    keep = rows >= 0  # interactions of items outside `item_ids` are ignored
    if context == "session":
        sessions = session_ids(interactions["user_id"], interactions["timestamp"], gap_minutes * 60.0)
        keys = interactions["user_id"].astype(str) + "#" + pd.Series(sessions, index=interactions.index).astype(str)
    elif context == "user":
        keys = interactions["user_id"].astype(str)
    else:
        raise ValueError(f"context must be 'user' or 'session', got {context!r}")
    cols = pd.factorize(keys[keep])[0]
    counts = sparse.coo_matrix((np.ones(len(cols)), (rows[keep], cols)), shape=(len(index), cols.max() + 1 if
                                                                                 len(cols) else 0)).tocsr()
    counts.data = np.log1p(counts.data)  # duplicates were summed by tocsr
    blocks = [counts]
    if features is not None:
        values = pd.Series(features).reindex(index)
        present = values.notna().to_numpy() & (values.astype(str) != "").to_numpy()
        codes = pd.factorize(values[present])[0]
        onehot = sparse.csr_matrix((np.full(len(codes), feature_weight), (np.flatnonzero(present), codes)),
                                   shape=(len(index), codes.max() + 1 if len(codes) else 0))
        blocks.append(onehot)
    return sparse.hstack(blocks).tocsr()


def hashed_id_vectors(item_ids: Sequence[str], dims: int) -> np.ndarray:
    """[N, dims] unit vectors, each a function of its item id only (not of the catalog or its order)."""
    out = np.empty((len(item_ids), dims))
    for row, item in enumerate(item_ids):
        seed = int.from_bytes(hashlib.sha256(str(item).encode()).digest()[:8], "little")
        out[row] = np.random.default_rng(seed).standard_normal(dims)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def l2_rows(x):
    from sklearn.preprocessing import normalize

    return normalize(x, norm="l2", axis=1)


def cooccurrence_embeddings(interactions: pd.DataFrame, item_ids: Sequence[str], dim: int = 64,
                            context: str = "session", gap_minutes: float = 30.0,
                            features: Optional[pd.Series] = None, feature_name: str = "feature",
                            feature_weight: float = 1.0, id_dims: int = 0, id_weight: float = 0.5,
                            seed: int = 0) -> Embeddings:
    """Embeddings [len(item_ids), dim] (fp16); `features` is indexed by item id (e.g. items.set_index
    ("item_id")["category"])."""
    from sklearn.decomposition import TruncatedSVD

    matrix = l2_rows(context_matrix(interactions, item_ids, context, gap_minutes, features, feature_weight))
    if matrix.shape[1] <= dim:
        raise ValueError(f"co-occurrence matrix has {matrix.shape[1]} columns: choose dim < that (got {dim})")
    vectors = l2_rows(TruncatedSVD(n_components=dim, random_state=seed).fit_transform(matrix))
    empty = int((matrix.getnnz(axis=1) == 0).sum())
    model = f"cooccurrence-svd:{context}" + (f"-{gap_minutes:g}min" if context == "session" else "") + f",d={dim}"
    if features is not None:
        model += f",+{feature_name}x{feature_weight:g}"
    if id_dims:
        vectors = np.hstack([vectors, id_weight * hashed_id_vectors(item_ids, id_dims)])
        model += f",+hashed-id{id_dims}x{id_weight:g}"
    return Embeddings([str(i) for i in item_ids], vectors.astype(np.float16), model, empty)
