"""Config of `recgpt rerank`: a re-ranker trained on source domains, for catalogs it never saw."""
from dataclasses import dataclass, field
from pathlib import Path

from recgpt.config.errors import check


@dataclass
class RerankConfig:
    # Source domains (names under configs/datasets/ or prepared folders) it trains on: each sequence's last
    # transition, with popularity and co-occurrence counted without it.
    sources: list[str] = field(default_factory=list)
    # Held-out source domains (never among the sources) whose LOO users choose the step; never a reported target.
    fit_domains: list[str] = field(default_factory=list)
    out: str = "ckpt/reranker"
    steps: int = 3000
    every: int = 250  # the step is chosen among every `every` steps, step 0 (the base rule itself) included
    fit_users: int = 1000  # seeded LOO users per fit domain
    batch: int = 32  # histories per step, each with its next item among the base rule's top `rerank`
    # Sources per step: the loss is the mean over this many consecutive sources of the round robin, batch / it
    # histories each (1: one source per step).
    domains_per_step: int = 1
    rerank: int = 100  # how many of the base rule's top items it re-orders
    hidden: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.01
    seed: int = 0
    # A trained re-ranker folder to start from (fine-tuning: its hidden and rerank are kept); empty: the base rule.
    init_from: str = ""
    # Seeded users of each source held out of its training whose last transition (counted without it) also chooses
    # the step: what lets a re-ranker train on the catalog it will serve (0: none held out).
    valid_users: int = 0

    def __post_init__(self):
        names = {Path(d).name for d in self.sources}
        both = sorted(names & {Path(d).name for d in self.fit_domains})
        check(not both, "rerank.fit_domains", f"{both} also among rerank.sources: the step is chosen on held-out domains")
        check(len(names) == len(self.sources), "rerank.sources", f"a domain given twice in {list(self.sources)}")
        for key in ("steps", "every", "fit_users", "batch", "domains_per_step", "rerank", "hidden", "valid_users"):
            least = 0 if key in ("steps", "valid_users") else 1  # 0 steps: the base rule itself, as a re-ranker
            check(getattr(self, key) >= least, f"rerank.{key}", f"must be >= {least}, got {getattr(self, key)}")
        check(self.domains_per_step <= self.batch, "rerank.domains_per_step",
              f"at most rerank.batch ({self.batch}) sources per step, got {self.domains_per_step}")
        check(self.lr > 0 and self.weight_decay >= 0, "rerank.lr", f"lr > 0 and weight_decay >= 0, got {self.lr}, "
                                                                    f"{self.weight_decay}")

    def check_ready(self) -> None:
        """What `recgpt rerank` needs beyond valid values (the defaults name no domain)."""
        check(bool(self.sources), "rerank.sources", "give the source domains to train on, e.g. rerank.sources=[a,b]")
        check(bool(self.fit_domains) or self.valid_users > 0, "rerank.fit_domains",
              "give held-out source domains to choose the step on, or hold users of the sources out with "
              "rerank.valid_users=N")
