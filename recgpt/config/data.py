"""Config of the data stages: importing raw files into prepared datasets and merging them into a corpus."""
from dataclasses import dataclass, field

from recgpt.config.errors import check

FORMATS = ("recbole", "lcrec", "steam", "movielens", "amazon", "table", "taobao", "retailrocket")


@dataclass
class TextConfig:
    # Item text = the values of `fields` joined with `separator`; list values are joined with ", ".
    # Empty or missing fields are skipped; an item with no non-empty field has no text ("").
    fields: list[str] = field(default_factory=lambda: ["title"])
    separator: str = " | "
    max_chars: int = 512  # keeps embedding cost bounded; ~128 MiniLM tokens

    def __post_init__(self):
        check(len(self.fields) > 0, "text.fields", "needs at least one field")
        check(self.max_chars > 0, "text.max_chars", f"must be > 0, got {self.max_chars}")


@dataclass
class ImportConfig:
    # What to do with rows that cannot be used as they are. Every choice is counted in the manifest.
    duplicates: str = "keep"  # keep | drop: repeated (user, item) rows; "drop" keeps the earliest
    items_without_text: str = "keep"  # keep | drop: interactions with items that have no text
    min_items: int = 1  # users with fewer interactions (after the above) are dropped and counted
    # Where rows without a timestamp go in a user's order when other rows of that user have one.
    # "last": after the dated rows (Steam shows the year only for reviews older than the crawl year, so
    # undated reviews are the newest), keeping file order among themselves. "first": before them.
    null_timestamps: str = "last"

    def __post_init__(self):
        check(self.duplicates in ("keep", "drop"), "imports.duplicates", f"keep|drop, got {self.duplicates!r}")
        check(self.items_without_text in ("keep", "drop"), "imports.items_without_text",
              f"keep|drop, got {self.items_without_text!r}")
        check(self.min_items >= 1, "imports.min_items", f"must be >= 1, got {self.min_items}")
        check(self.null_timestamps in ("first", "last"), "imports.null_timestamps",
              f"first|last, got {self.null_timestamps!r}")


@dataclass
class DatasetSpec:
    """How to import one raw dataset: a YAML under configs/datasets/ holds one of these."""
    name: str = "???"
    # recbole | lcrec | steam | movielens | amazon | table | taobao | retailrocket
    format: str = "???"
    # Folder of the raw files, relative paths resolved against data.raw_root.
    path: str = "???"
    # Format-specific file names, e.g. {"inter": "ml-100k.inter", "item": "ml-100k.item"}.
    files: dict[str, str] = field(default_factory=dict)
    # Column mapping (table/amazon formats): {"user": ..., "item": ..., "timestamp": ..., "item_key": ...};
    # table also "behavior" (multi-behaviour logs: the event type column, names normalised as in
    # recgpt.data.behavior).
    columns: dict[str, str] = field(default_factory=dict)
    timestamp_unit: str = "s"  # s | ms: unit of numeric raw timestamps; prepared timestamps are unix seconds
    text: TextConfig = field(default_factory=TextConfig)
    # Raw item fields kept in items.parquet (as text) beside the text fields but not part of the text, e.g. for
    # item factors (recgpt.baselines.mfgan.factors); a field absent from the item file is simply not kept.
    item_fields: list[str] = field(default_factory=list)
    imports: ImportConfig = field(default_factory=ImportConfig)

    def __post_init__(self):
        check(self.format in FORMATS, "format", f"one of {FORMATS}, got {self.format!r}")
        check(self.timestamp_unit in ("s", "ms"), "timestamp_unit",
              f"s|ms, got {self.timestamp_unit!r}")
        check(bool(self.name) and "/" not in self.name and ":" not in self.name, "name",
              f"a plain name without '/' or ':', got {self.name!r}")


@dataclass
class DataConfig:
    raw_root: str = "../shared/data"  # a dataset spec's `path` is relative to this folder
    prepared_root: str = "outputs/prepared"  # one folder per dataset
    corpus_dir: str = "outputs/corpus"
    # Names of configs/datasets/*.yaml (or prepared folders) merged into the pretraining corpus.
    datasets: list[str] = field(default_factory=lambda: ["ml-100k", "amazon_games", "yelp", "lastfm",
                                                         "amazon_scientific"])
    max_items: int = 256  # longer users are cut into windows of at most this many items
    min_items: int = 2  # shorter sequences carry no next-item target and are counted, then dropped
    heldout_users: float = 0.02  # seeded share of users held out for eval loss
    horizon: int = 10  # last-N hold-out length for long-horizon splits
    # Session-wise protocols (recgpt.data.sessions): a user's next event starts a new session when it comes
    # more than this many minutes after the previous one (GAMER's session-wise multi-behaviour setting).
    session_gap_minutes: float = 30.0
    # In-domain training on one dataset's own training split: all (pretraining), loo (each user's last two
    # items, the valid and test targets, left out) or horizon (the last data.horizon items left out).
    train_split: str = "all"
    # Seeded share of the users not held out whose sequences are trained on (the same users for a seed; a smaller
    # share is a subset of a larger one); the others are left out of the corpus and counted. A scarce-data setting
    # for fine-tuning against training from scratch; the held-out users do not change.
    train_users: float = 1.0
    # Multi-behaviour logs: the corpus keeps each event's behaviour (a `behaviors` column of recgpt.model.behavior
    # ids, 0 where a dataset has none), read by a model with model.behavior_input=true.
    behaviors: bool = False
    seed: int = 0

    def __post_init__(self):
        check(self.max_items >= 2, "data.max_items", f"must be >= 2, got {self.max_items}")
        check(self.min_items >= 1, "data.min_items", f"must be >= 1, got {self.min_items}")
        check(0.0 <= self.heldout_users < 1.0, "data.heldout_users", f"must be in [0, 1), got {self.heldout_users}")
        check(0.0 < self.train_users <= 1.0, "data.train_users", f"must be in (0, 1], got {self.train_users}")
        check(self.horizon >= 1, "data.horizon", f"must be >= 1, got {self.horizon}")
        check(self.session_gap_minutes > 0, "data.session_gap_minutes", f"must be > 0, got {self.session_gap_minutes}")
        check(self.train_split in ("all", "loo", "horizon"), "data.train_split",
              f"all|loo|horizon, got {self.train_split!r}")
        check(len(set(self.datasets)) == len(self.datasets), "data.datasets", f"repeated names in {self.datasets}")
