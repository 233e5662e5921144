"""Config of the in-domain baselines (`recgpt baseline NAME --dataset D`): split, training and evaluation.

One dataclass for every baseline: each model reads the keys it needs (a key a model ignores is harmless).
"""
from dataclasses import dataclass, field
from typing import Optional

from recgpt.config.errors import check
from recgpt.config.predict import STRATEGIES

PROTOCOLS = ("loo", "horizon", "cold")
FACTOR_KINDS = ("category", "band", "popularity")
REWARDS = ("official", "pg")


@dataclass
class FactorConfig:
    """One item factor of MFGAN (recgpt.baselines.mfgan.factors): a column of the prepared items, binned."""
    name: str = "???"
    field: str = ""  # items.parquet column; unused by kind popularity (training-split counts)
    kind: str = "category"  # category | band (numeric quantile bands) | popularity
    separator: str = ","  # category: list values in the field are split on this
    pick: int = 0  # category: which list value (0 first, -1 last, 1 second level of a category path)
    max_values: int = 50  # category: the most frequent values keep a bin, the rest share "other"
    bands: int = 5  # band / popularity: quantile bands

    def __post_init__(self):
        check(self.kind in FACTOR_KINDS, "baseline.mfgan.factors.kind", f"one of {FACTOR_KINDS}, got {self.kind!r}")
        check(self.kind == "popularity" or bool(self.field), "baseline.mfgan.factors.field",
              f"factor {self.name!r} of kind {self.kind} needs a field")
        check(self.bands >= 1 and self.max_values >= 1, "baseline.mfgan.factors", "bands and max_values must be >= 1")


@dataclass
class MFGANConfig:
    """MFGAN: the generator is SASRec+ trained by the baseline keys above; these drive the adversarial stage."""
    factors: list[FactorConfig] = field(default_factory=list)  # empty: the dataset's preset (mfgan/factors.py)
    # official: the generator's cross-entropy weighted by the reward of its own argmax item (RUCAIBox/MFGAN);
    # pg: cross-entropy + pg_weight * REINFORCE over `samples` sampled next items, mean reward of the other
    # samples subtracted as baseline.
    reward: str = "pg"
    samples: int = 8
    pg_weight: float = 1.0
    rounds: int = 3  # alternating rounds; the round with the best validation NDCG@10 is kept
    generator_steps: int = 50  # generator minibatches per round
    discriminator_steps: int = 50  # discriminator minibatches per round
    pretrain_steps: int = 200  # discriminator minibatches before the first round
    generator_lr: float = 1e-4
    discriminator_lr: float = 1e-3
    fake_top_k: int = 10  # a fake's last item: one of the generator's top-k (the true item and history skipped)
    history: int = 20  # items of history a discriminator reads before the proposed item
    d_model: int = 32
    n_layers: int = 1
    n_heads: int = 2
    dropout: float = 0.25
    max_seconds: float = 0.0  # wall-clock cap on the adversarial stage; 0 = none
    # Also run these from the same pretrained generator, reported as mfgan-<name> (not saved): official, pg,
    # mle (the same schedule with pg_weight 0: continued MLE only, the control for extra generator steps).
    ablations: list[str] = field(default_factory=list)

    def __post_init__(self):
        check(set(self.ablations) <= {"official", "pg", "mle"}, "baseline.mfgan.ablations",
              f"a list of official, pg, mle; got {self.ablations}")
        check(self.reward in REWARDS, "baseline.mfgan.reward", f"one of {REWARDS}, got {self.reward!r}")
        for key in ("samples", "rounds", "fake_top_k", "history", "d_model", "n_layers", "n_heads"):
            check(getattr(self, key) >= 1, f"baseline.mfgan.{key}", f"must be >= 1, got {getattr(self, key)}")
        check(self.samples >= 2 or self.reward != "pg", "baseline.mfgan.samples", "pg needs >= 2 samples (baseline)")
        for key in ("generator_steps", "discriminator_steps", "pretrain_steps", "max_seconds", "pg_weight"):
            check(getattr(self, key) >= 0, f"baseline.mfgan.{key}", f"must be >= 0, got {getattr(self, key)}")
        check(self.d_model % self.n_heads == 0, "baseline.mfgan.d_model", "must be a multiple of n_heads")


@dataclass
class BaselineConfig:
    name: str = "sasrec"  # a name of recgpt.baselines.NAMES
    dataset: Optional[str] = None  # a name under configs/datasets/ or a prepared folder
    # loo: valid = second-to-last, test = last; horizon: last `horizon` items as an unordered target set,
    # users split 50/50 into valid / test; cold: `cold_fraction` of users held out of training entirely,
    # each reduced to one 2-4 item window, split 50/50 into valid / test.
    protocol: str = "loo"
    horizon: int = 10
    cold_fraction: float = 0.2
    output_dir: Optional[str] = None  # default: outputs/baselines/<dataset>-<protocol>/<name>
    # Evaluation. Strategies other than exact need a generative model (sasrec, gpt2, bert4rec, markov).
    strategies: list[str] = field(default_factory=lambda: ["exact"])
    ks: list[int] = field(default_factory=lambda: [1, 3, 5, 10, 20])
    allow_history: bool = False  # may a user's own history items be recommended
    temperatures: list[float] = field(default_factory=lambda: [1.0])  # sample/rra/ra: chosen on validation
    n_samples: int = 8
    beam_size: int = 10
    max_valid_users: int = 1000  # seeded subset used for early stopping and temperature choice
    max_test_users: Optional[int] = None
    # An exported recgpt model's hybrid score weights are fitted on this many validation users (None: all of
    # them; on 1,000 the yelp fit overweighted popularity, docs/benchmarks.md).
    max_fit_users: Optional[int] = None
    eval_batch: int = 256
    # Training (torch models): early stopping on validation NDCG@10.
    epochs: int = 100
    patience: int = 3
    eval_every_epochs: int = 1
    max_seconds: float = 0.0  # wall-clock cap on training; 0 = none
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    max_len: int = 50  # items of history a sequence model sees
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 2
    dropout: float = 0.2
    mask_prob: float = 0.2  # bert4rec: share of items masked
    # BPR-MF (implicit): cheap epochs, so validated every bpr_epochs_per_eval of them (less noisy stopping)
    factors: int = 64
    bpr_lr: float = 0.05  # 0.01 (implicit's default) takes ~80 epochs to leave chance on sparse amazon_scientific
    regularization: float = 0.01
    bpr_epochs: int = 400
    bpr_epochs_per_eval: int = 10
    # item-kNN: neighbours kept per item (the user's last items are weighted as predict.knn says)
    knn_neighbors: int = 100
    mfgan: MFGANConfig = field(default_factory=MFGANConfig)
    # Also report HR/NDCG@k against `sampled_negatives` random unseen items per test user (the protocol of
    # SASRec / MFGAN papers), beside full ranking; 0 = off.
    sampled_negatives: int = 0
    threads: int = 1
    device: str = "cpu"
    seed: int = 0

    def __post_init__(self):
        check(self.protocol in PROTOCOLS, "baseline.protocol", f"one of {PROTOCOLS}, got {self.protocol!r}")
        check(self.horizon >= 1, "baseline.horizon", f"must be >= 1, got {self.horizon}")
        check(0.0 < self.cold_fraction < 1.0, "baseline.cold_fraction", f"must be in (0, 1), got {self.cold_fraction}")
        check(len(self.strategies) > 0 and set(self.strategies) <= set(STRATEGIES), "baseline.strategies",
              f"a non-empty list of {STRATEGIES}, got {self.strategies}")
        check(len(self.ks) > 0 and all(k >= 1 for k in self.ks), "baseline.ks", f"positive ints, got {self.ks}")
        check(len(self.temperatures) > 0 and all(t > 0 for t in self.temperatures), "baseline.temperatures",
              f"positive values, got {self.temperatures}")
        for key in ("n_samples", "beam_size", "max_valid_users", "eval_batch", "epochs", "patience",
                    "eval_every_epochs", "bpr_epochs", "bpr_epochs_per_eval", "batch_size", "max_len", "d_model", "n_layers", "n_heads", "factors",
                    "knn_neighbors", "threads"):
            check(getattr(self, key) >= 1, f"baseline.{key}", f"must be >= 1, got {getattr(self, key)}")
        for key in ("max_test_users", "max_fit_users"):
            check(getattr(self, key) is None or getattr(self, key) >= 1, f"baseline.{key}",
                  f"must be >= 1, got {getattr(self, key)}")
        check(self.d_model % self.n_heads == 0, "baseline.d_model", f"must be a multiple of n_heads ({self.n_heads})")
        check(0.0 <= self.dropout < 1.0, "baseline.dropout", f"must be in [0, 1), got {self.dropout}")
        check(0.0 < self.mask_prob < 1.0, "baseline.mask_prob", f"must be in (0, 1), got {self.mask_prob}")
        check(self.max_seconds >= 0, "baseline.max_seconds", f"must be >= 0, got {self.max_seconds}")
        check(self.sampled_negatives >= 0, "baseline.sampled_negatives", f"must be >= 0, got {self.sampled_negatives}")
        check(self.lr > 0 and self.bpr_lr > 0, "baseline.lr", "learning rates must be > 0")
