"""Config of checkpoint selection and prediction."""
from dataclasses import dataclass, field
from typing import Optional, Union

from recgpt.config.errors import check

# components of a hybrid score: code log-prob, dense head, content kNN (a fixed prior), the catalog's popularity
SCORE_COMPONENTS = ("code", "dense", "knn", "pop")
from recgpt.config.args import STRATEGIES  # noqa: F401 (listed by --help)
SCORINGS = ("auto", "exact", "trie", "liger")
SELECT_BY = ("loss", "zero_shot")  # eval.select_by


@dataclass
class EvalConfig:
    # heldout_users: held-out users of the pretraining corpus; domains: separate prepared datasets
    source: str = "heldout_users"
    domains: list[str] = field(default_factory=list)
    batch_tokens: int = 16384
    # loss: the lowest held-out loss wins. zero_shot: the best zero-shot NDCG@10 (leave-one-out, history
    # excluded) on zero_shot_domain, a held-out *source* domain (a name under configs/datasets/ or a prepared
    # folder) that is neither pretrained on nor reported; held-out loss is still computed and recorded.
    select_by: str = "loss"
    zero_shot_domain: Optional[str] = None
    zero_shot_users: int = 1000  # seeded users of that domain
    # Hybrid score weights (recgpt.predict.hybrid) fitted after the export on held-out *source* domains (names
    # like zero_shot_domain; default [zero_shot_domain]) and stored in best/config.json: components to weigh
    # (code, dense, knn, pop; empty: no fit, the model scores by its default), seeded LOO users per domain.
    score_fit: list[str] = field(default_factory=list)
    score_fit_domains: list[str] = field(default_factory=list)
    score_fit_users: int = 1000

    @property
    def fit_domains(self) -> list[str]:
        return list(self.score_fit_domains) or ([self.zero_shot_domain] if self.zero_shot_domain else [])

    def __post_init__(self):
        check(self.source in ("heldout_users", "domains"), "eval.source", f"heldout_users|domains, got {self.source!r}")
        check(self.select_by in SELECT_BY, "eval.select_by", f"{'|'.join(SELECT_BY)}, got {self.select_by!r}")
        check(self.select_by == "loss" or bool(self.zero_shot_domain), "eval.zero_shot_domain",
              "eval.select_by=zero_shot needs a held-out source domain")
        check(self.zero_shot_users >= 1, "eval.zero_shot_users", f"must be >= 1, got {self.zero_shot_users}")
        if self.score_fit:
            unknown = sorted(set(self.score_fit) - set(SCORE_COMPONENTS))
            check(not unknown, "eval.score_fit", f"components are {', '.join(SCORE_COMPONENTS)}, got {unknown}")
            check(len(set(self.score_fit)) == len(self.score_fit), "eval.score_fit", f"repeated in {self.score_fit}")
            check(bool(self.fit_domains), "eval.score_fit_domains",
                  "eval.score_fit needs held-out source domains (or eval.zero_shot_domain)")
        check(self.score_fit_users >= 1, "eval.score_fit_users", f"must be >= 1, got {self.score_fit_users}")


@dataclass
class ContentKnnConfig:
    """Content kNN (what a user can do without recgpt): the user vector is the mean of the last `last` items'
    unit text embeddings weighted decay^age (age 0 = the most recent); items are ranked by cosine to it. The one
    definition read by the report's content-kNN row, the `knn` score component and `recgpt baseline`."""

    last: int = 5
    decay: float = 0.7

    def __post_init__(self):
        check(self.last >= 1, "predict.knn.last", f"must be >= 1, got {self.last}")
        check(0.0 < self.decay <= 1.0, "predict.knn.decay", f"must be in (0, 1], got {self.decay}")


@dataclass
class PredictConfig:
    # A name under configs/datasets/ (prepared on demand into data.prepared_root) or a prepared folder.
    dataset: Optional[str] = None
    model_dir: str = "ckpt/run/best"  # an exported model folder, or a run folder holding best/
    tokenizer_dir: Optional[str] = None  # default: <model_dir>/tokenizer; any other must be the same tokenizer
    output_dir: Optional[str] = None  # default: <run>/predict/<dataset>-<protocol>
    protocol: str = "loo"  # loo | cold | horizon
    horizon: int = 1  # target-set size of the horizon protocol (and sequence length of rra/ra)
    # exact: one-step top-K; greedy | sample | beam (item-level) | rra | ra: multi-step generation
    strategy: str = "exact"
    # How each step scores the catalog: exact (full catalog, one gather for the parallel head), trie
    # (constrained beam search over codes), auto (exact for the parallel head, trie for the autoregressive one),
    # liger (a code + dense model: the trie beam's items plus every item it never saw in pretraining, re-ranked
    # by its score without the code component).
    scoring: str = "auto"
    # The hybrid score weights: self (each user scored with the point of the fitted weight grid that ranks the
    # user's own last history item best, the dataset's log before the targets as the prior: the same ranking of
    # its sequences' last items; recgpt.predict.self_weights; the exact strategy at any horizon, else fitted) or
    # fitted (the weights fitted on the held-out source domains, the same for every user).
    weights: str = "self"
    # A trained re-ranker folder (`recgpt rerank`): the model row is then its order of the top of the per-user
    # content kNN + popularity rule plus the log's co-occurrence (one exact step; history items excluded in every
    # row), and a "priors+cooc" row reports that base rule itself. None: the model's own scoring.
    reranker: Optional[str] = None
    beam_size: int = 20
    temperature: float = 1.0
    n_samples: int = 8
    ks: list[int] = field(default_factory=lambda: [1, 3, 5, 10, 20])
    # may a user's own history items be recommended: auto (placed as often as the catalog's log repeats an item,
    # recgpt.predict.repeats: a log that never repeats gives false; the exact strategy, else false), true or false
    allow_history: Union[bool, str] = "auto"
    knn: ContentKnnConfig = field(default_factory=ContentKnnConfig)  # content kNN: the row and the `knn` component
    batch_size: int = 256
    max_users: Optional[int] = None  # a seeded subset of the users
    # refuse a report on fewer evaluable users than this (or than max_users when that is smaller): a handful of
    # users gives no figure (a horizon protocol on short sequences can leave a few of thousands)
    min_users: int = 50
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self):
        check(self.protocol in ("loo", "cold", "horizon"), "predict.protocol", f"loo|cold|horizon, got {self.protocol!r}")
        from recgpt.config.args import check_recommend_args  # the one check the Python API makes too

        check(len(self.ks) > 0, "predict.ks", "give at least one K")
        check_recommend_args("predict.", ks=self.ks, horizon=self.horizon, strategy=self.strategy,
                             n_samples=self.n_samples, temperature=self.temperature, beam_size=self.beam_size,
                             seed=self.seed, weights=self.weights)
        check(isinstance(self.allow_history, bool) or self.allow_history == "auto", "predict.allow_history",
              f"true|false|auto, got {self.allow_history!r}")
        check(self.scoring in SCORINGS, "predict.scoring", f"{'|'.join(SCORINGS)}, got {self.scoring!r}")
        check(self.batch_size >= 1, "predict.batch_size", f"must be >= 1, got {self.batch_size}")
        check(self.max_users is None or self.max_users >= 1, "predict.max_users", f"must be >= 1, got {self.max_users}")
        check(self.min_users >= 1, "predict.min_users", f"must be >= 1, got {self.min_users}")
