"""What training and evaluation read: corpus sequences, the item code table aligned with the corpus item
index, optional text embeddings, and the hashes that tie a checkpoint to them."""
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from recgpt.io import ArtifactError
from recgpt.tokenizer.base import tokenizer_hash
from recgpt.train.batching import EpochPlan, collate, plan_epoch


class SequenceSource:
    """Item-index sequences held in an Arrow list column (memory-mapped when it comes from `datasets`)."""

    def __init__(self, column, groups: Optional[list] = None, behaviors=None):
        self.column = column if isinstance(column, (pa.ChunkedArray, pa.Array)) else pa.array(column, pa.list_(pa.int32()))
        self.behaviors = behaviors  # aligned behaviour id lists (data.behaviors corpora), else None
        self.lengths = pc.list_value_length(self.column).to_numpy(zero_copy_only=False).astype(np.int64)
        self.groups = groups  # per-sequence dataset name (eval reports losses per dataset)

    @classmethod
    def from_dataset(cls, ds, group_column: str = "dataset"):
        table = ds.with_format("arrow")[:] if getattr(ds, "_indices", None) is not None else ds.data.table
        groups = table.column(group_column).to_pylist() if group_column in table.column_names else None
        behaviors = table.column("behaviors") if "behaviors" in table.column_names else None
        return cls(table.column("items"), groups, behaviors)

    def __len__(self) -> int:
        return len(self.lengths)

    def take(self, indices, column=None) -> dict:
        indices = sorted(set(int(i) for i in indices))
        values = (self.column if column is None else column).take(pa.array(indices, pa.int64())).to_pylist()
        return dict(zip(indices, values))

    def take_behaviors(self, indices) -> Optional[dict]:
        """Behaviour ids of these sequences; None without a behaviour column (the model reads "none")."""
        return None if self.behaviors is None else self.take(indices, self.behaviors)

    def subset(self, keep: np.ndarray) -> "SequenceSource":
        keep = np.asarray(keep, np.int64)
        groups = [self.groups[i] for i in keep] if self.groups is not None else None
        behaviors = self.behaviors.take(pa.array(keep)) if self.behaviors is not None else None
        return SequenceSource(self.column.take(pa.array(keep)), groups, behaviors)


@dataclass
class TrainingInputs:
    train: SequenceSource
    heldout: SequenceSource
    codes: torch.Tensor  # int32 [N_items, n_slots], row i = corpus item_index i
    slot_vocab_sizes: list
    corpus_hash: str
    tokenizer_hash: str
    tokenizer_dir: Optional[Path] = None
    codes_path: Optional[Path] = None
    text_emb: Optional[torch.Tensor] = None  # [N_items, D] aligned like codes
    item_group: Optional[torch.Tensor] = None  # Long[N_items]: index of the item's source dataset
    catalog_negatives: int = 0  # items drawn uniformly per micro-batch as extra InfoNCE negatives
    item_popularity: Optional[torch.Tensor] = None  # Float[N_items]: log(1 + count in the training sequences)
    slot_levels: Optional[list] = None  # per slot, the tokenizer's FSQ grid levels ([] = not a grid)
    extra: dict = field(default_factory=dict)
    behavior_input: bool = False  # batches carry the corpus's behaviour ids (model.behavior_input)

    @property
    def n_slots(self) -> int:
        return int(self.codes.shape[1])

    @property
    def text_dim(self) -> Optional[int]:
        return None if self.text_emb is None else int(self.text_emb.shape[1])


def align_codes(corpus_item_ids: list, code_ids: list, codes: torch.Tensor, where: str) -> torch.Tensor:
    """Reorder the code table to the corpus item index; every corpus item must have a code row."""
    if list(code_ids) == list(corpus_item_ids):
        return codes
    row = {item_id: i for i, item_id in enumerate(code_ids)}
    missing = [item_id for item_id in corpus_item_ids if item_id not in row]
    if missing:
        raise ArtifactError(f"{where}: {len(missing)} corpus items have no code (first: {missing[0]!r}); "
                            "was the tokenizer fitted on this corpus?")
    return codes[torch.as_tensor([row[item_id] for item_id in corpus_item_ids])]


def read_slot_vocab_sizes(tokenizer_dir: Path) -> list:
    """The code range of each slot, from the tokenizer's config.json (no need to load its weights)."""
    from recgpt.io import read_json

    sizes = read_json(Path(tokenizer_dir) / "config.json").get("slot_vocab_sizes")
    if not sizes or not all(isinstance(v, int) and v > 0 for v in sizes):
        raise ArtifactError(f"{Path(tokenizer_dir) / 'config.json'}: slot_vocab_sizes must be a list of positive "
                            f"ints, got {sizes!r}")
    return list(sizes)


def read_slot_levels(tokenizer_dir: Path) -> list:
    """Per slot, the FSQ grid levels from the tokenizer's config.json ([] where a slot is not a grid)."""
    from recgpt.io import read_json
    from recgpt.tokenizer.base import slot_levels_from_config

    return slot_levels_from_config(read_json(Path(tokenizer_dir) / "config.json"))


def default_codes_path(cfg) -> Path:
    return Path(cfg.train.codes_path) if cfg.train.codes_path else Path(cfg.tokenizer.output_dir) / "codes.safetensors"


def load_training_inputs(cfg) -> TrainingInputs:
    """Corpus at data.corpus_dir + tokenizer at tokenizer.output_dir; errors name the missing path."""
    from recgpt.data import load_corpus
    from recgpt.tokenizer import load_item_codes

    corpus_dir, tokenizer_dir = Path(cfg.data.corpus_dir), Path(cfg.tokenizer.output_dir)
    if not corpus_dir.is_dir():
        raise ArtifactError(f"corpus not found: {corpus_dir} (data.corpus_dir); build it with `recgpt corpus`")
    if not tokenizer_dir.is_dir():
        raise ArtifactError(f"tokenizer not found: {tokenizer_dir} (tokenizer.output_dir); fit it with `recgpt tokenize fit`")
    codes_path = default_codes_path(cfg)
    if not codes_path.is_file():
        raise ArtifactError(f"item codes not found: {codes_path} (train.codes_path)")
    corpus = load_corpus(corpus_dir)
    if len(corpus.sequences["train"]) == 0:
        raise ArtifactError(f"corpus {corpus_dir} (data.corpus_dir) has no training sequence: nothing to pretrain on")
    slot_vocab_sizes = read_slot_vocab_sizes(tokenizer_dir)
    ids, codes = load_item_codes(codes_path)
    codes = torch.as_tensor(np.asarray(codes)).to(torch.int32)
    item_ids = corpus.items.sort_values("item_index")["item_id"].tolist()
    codes = align_codes(item_ids, ids, codes, str(codes_path))
    if codes.shape[1] != len(slot_vocab_sizes) or (codes.amax(0) >= torch.tensor(slot_vocab_sizes)).any() or codes.min() < 0:
        raise ArtifactError(f"{codes_path}: codes of shape {tuple(codes.shape)} do not fit slot_vocab_sizes "
                            f"{slot_vocab_sizes} of {tokenizer_dir / 'config.json'}")
    text_emb, item_group = None, None
    dense = cfg.model.dense
    if cfg.model.needs_text:
        text_emb = _load_text_embeddings(cfg, item_ids)
        datasets = corpus.items.sort_values("item_index")["dataset"].tolist()
        if cfg.model.center_text:
            text_emb = center_by_group(text_emb, datasets)
        if dense is not None:
            item_group = torch.as_tensor(np.unique(np.asarray(datasets, dtype=str), return_inverse=True)[1].reshape(-1),
                                         dtype=torch.long)
    train = SequenceSource.from_dataset(corpus.sequences["train"])
    behavior_input = cfg.model.behavior is not None
    if behavior_input and train.behaviors is None:
        raise ArtifactError(f"corpus {corpus_dir} (data.corpus_dir) has no behaviour column, which "
                            "model.behavior reads; rebuild it with data.behaviors=true")
    return TrainingInputs(
        train=train, behavior_input=behavior_input,
        heldout=SequenceSource.from_dataset(corpus.sequences["heldout"]),
        codes=codes, slot_vocab_sizes=slot_vocab_sizes,
        corpus_hash=corpus.hash, tokenizer_hash=tokenizer_hash(tokenizer_dir, codes_path),
        tokenizer_dir=tokenizer_dir, codes_path=codes_path, text_emb=text_emb, item_group=item_group,
        catalog_negatives=dense.catalog_negatives if dense is not None else 0,
        item_popularity=log_popularity(train, len(codes)) if dense is not None and dense.popularity != "none" else None,
        slot_levels=read_slot_levels(tokenizer_dir))


def log_popularity(source: SequenceSource, n_items: int) -> torch.Tensor:
    """Float[N_items]: log(1 + occurrences of each item in the training sequences); an item's count is its own
    dataset's (item indices are namespaced), as a catalog's popularity is counted over its own log."""
    from recgpt.data.popularity import item_counts, log_popularity as log1p_counts

    return log1p_counts(item_counts(source.column, n_items))


def center_by_group(emb: torch.Tensor, groups: list) -> torch.Tensor:
    """Each group's rows (one dataset's items) minus that group's mean: label-free, as a new catalog is centered."""
    out = emb.clone().float()
    names = np.asarray(groups, dtype=object)
    for name in set(groups):
        rows = torch.as_tensor(np.flatnonzero(names == name))
        out[rows] -= out[rows].mean(0)
    return out


def _load_text_embeddings(cfg, item_ids: list) -> torch.Tensor:
    from recgpt.tokenizer.embed import load_embeddings

    folder = Path(cfg.train.text_embeddings_dir or cfg.embed.output_dir or Path(cfg.data.corpus_dir) / "embeddings")
    if not folder.is_dir():
        raise ArtifactError(f"text embeddings not found: {folder} (train.text_embeddings_dir; model.text_input / model.dense)")
    emb = load_embeddings(folder)
    vectors = torch.as_tensor(np.asarray(emb.vectors, dtype=np.float32))
    return align_codes(item_ids, list(emb.item_ids), vectors, str(folder)).float()


class MicroBatchStream:
    """This rank's micro-batches in a reproducible order; position = (epoch, local index) is all resume needs."""

    def __init__(self, source: SequenceSource, inputs: TrainingInputs, mode: str, row_items: int,
                 tokens_per_batch: int, seed: int, rank: int, world: int, shuffle: bool = True):
        self.source, self.inputs = source, inputs
        self.mode, self.row_items, self.tokens_per_batch = mode, row_items, tokens_per_batch
        self.seed, self.rank, self.world, self.shuffle = seed, rank, world, shuffle
        self.epoch, self.index = 0, 0
        self._plan_epoch: Optional[int] = None

    def plan_any(self, epoch: int) -> EpochPlan:
        if self._plan_epoch != epoch:
            self._plan = plan_epoch(self.source.lengths, self.mode, self.row_items, self.tokens_per_batch,
                                    self.inputs.n_slots, self.seed, epoch, self.shuffle)
            self._targets = self._plan.batch_targets(self.inputs.n_slots)
            self._plan_epoch = epoch
        return self._plan

    def plan(self, epoch: int) -> EpochPlan:
        plan = self.plan_any(epoch)
        if self.local_batches == 0:
            raise ArtifactError(f"{plan.n_batches} micro-batches per epoch cannot feed {self.world} "
                                "processes: the corpus is too small for this batch size")
        return plan

    @property
    def local_batches(self) -> int:
        return self._plan.n_batches // self.world  # the remainder is dropped so every rank steps together

    def state(self) -> dict:
        return {"epoch": self.epoch, "index": self.index}

    def load_state(self, state: dict) -> None:
        self.epoch, self.index = int(state["epoch"]), int(state["index"])

    def batch(self, b: int) -> dict:
        rows = self._plan.batch_pieces(b)
        wanted = [s for row in rows for s, _, _ in row]
        behaviors = self.source.take_behaviors(wanted) if self.inputs.behavior_input else None
        batch = collate(rows, self.source.take(wanted), self.inputs.codes, self.inputs.text_emb, behaviors,
                        self.inputs.item_group, self.inputs.item_popularity)
        if self.inputs.catalog_negatives and self.inputs.text_emb is not None:  # reproducible per (epoch, batch)
            gen = torch.Generator().manual_seed(int(np.random.SeedSequence([self.seed, self.epoch, b]).generate_state(1)[0]))
            rows = torch.randint(0, len(self.inputs.text_emb), (self.inputs.catalog_negatives,), generator=gen)
            batch["negative_emb"] = self.inputs.text_emb[rows].float()
            batch["negative_group"] = self.inputs.item_group[rows]
            if self.inputs.item_popularity is not None:
                batch["negative_popularity"] = self.inputs.item_popularity[rows]
        return batch

    def next(self) -> tuple[dict, int]:
        """(this rank's next micro-batch, real target tokens of that micro-batch summed over all ranks)."""
        self.plan(self.epoch)
        if self.index >= self.local_batches:
            self.epoch, self.index = self.epoch + 1, 0
            self.plan(self.epoch)
        first = self.index * self.world
        global_targets = int(self._targets[first:first + self.world].sum())
        batch = self.batch(first + self.rank)
        self.index += 1
        return batch, global_targets
