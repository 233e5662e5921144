"""ItemTokenizer: a fitted quantizer behind one interface, saved as a folder of config.json +
model.safetensors + report.json; item code tables as codes.safetensors + item_ids.json.

encode(emb) -> int64 [N, n_codes] (codes before collision resolution); assign(emb) -> int64 [N, n_slots]
with the disambiguation slot appended, every row unique. Slot k's codes lie in [0, slot_vocab_sizes[k]).
"""
import os
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from safetensors.torch import save_file

from recgpt.io import (ArtifactError, load_safetensors, read_json, release_pages, require_files, sha256_file,
                       sha256_json, write_json)
from recgpt.tokenizer.collisions import resolve_collisions
from recgpt.tokenizer.fsq import FSQAutoencoder
from recgpt.tokenizer.rq import RQKMeans, RQVAE

CONFIG_FILE, MODEL_FILE, REPORT_FILE = "config.json", "model.safetensors", "report.json"
CODES_FILE, IDS_FILE = "codes.safetensors", "item_ids.json"
FORMAT_VERSION = 1


def build_model(kind: str, dim: int, params: dict) -> torch.nn.Module:
    if kind == "fsq":
        return FSQAutoencoder(dim, params["n_codes"], params["levels"], params["encoder"], params["hidden"])
    if kind == "rqvae":
        return RQVAE(dim, params["n_codes"], params["codebook_size"], params["latent_dim"], params["hidden"],
                     params["commitment"], params["rotation_trick"], params.get("dead_code_steps", 0),
                     params.get("sinkhorn_iters", 0), params.get("seed", 0))
    if kind == "rqkmeans":
        return RQKMeans(dim, params["n_codes"], params["codebook_size"])
    raise ArtifactError(f"unknown tokenizer kind {kind!r}")


def slot_levels_from_config(config: dict) -> list:
    """Per slot of a tokenizer's config.json: its FSQ grid levels, [] for the disambiguation slot and for
    tokenizers that are not FSQ (their codes have no grid)."""
    sizes = config.get("slot_vocab_sizes") or []
    levels = (config.get("params") or {}).get("levels") if config.get("kind") == "fsq" else None
    n_codes = int(config.get("n_codes", 0))
    return [[int(v) for v in levels] if levels and k < n_codes else [] for k in range(len(sizes))]


class ItemTokenizer:
    def __init__(self, kind: str, model: torch.nn.Module, params: dict, embed_model: str, embed_dim: int,
                 dedup_size: int, report: Optional[dict] = None):
        self.kind, self.model, self.params = kind, model.eval(), dict(params)
        self.embed_model, self.embed_dim, self.dedup_size = embed_model, int(embed_dim), int(dedup_size)
        self.report = report

    @property
    def n_codes(self) -> int:
        return int(self.params["n_codes"])

    @property
    def code_vocab(self) -> int:
        return int(self.model.code_vocab)

    @property
    def slot_vocab_sizes(self) -> list[int]:
        return [self.code_vocab] * self.n_codes + [self.dedup_size]

    @property
    def n_slots(self) -> int:
        return self.n_codes + 1

    def config(self) -> dict:
        return {"format_version": FORMAT_VERSION, "kind": self.kind, "embed_model": self.embed_model,
                "embed_dim": self.embed_dim, "n_codes": self.n_codes, "code_vocab": self.code_vocab,
                "dedup_size": self.dedup_size, "slot_vocab_sizes": self.slot_vocab_sizes, "params": self.params}

    def embedding_rows(self, emb, embed_model: Optional[str] = None):
        """The [N, D] rows of `emb` (an array, a memmap, a tensor or an Embeddings, whose model is then checked),
        not copied: clear errors for a different encoder or a wrong shape. NaN/inf is checked as rows are read."""
        if hasattr(emb, "vectors") and hasattr(emb, "model"):
            embed_model, emb = emb.model, emb.vectors
        if embed_model is not None and embed_model != self.embed_model:
            raise ValueError(f"embeddings come from {embed_model!r} but this tokenizer was fitted on "
                             f"{self.embed_model!r} embeddings: embed the items with embed.model={self.embed_model}")
        if isinstance(emb, torch.Tensor):
            emb = emb.detach().cpu().numpy()
        elif not hasattr(emb, "shape"):
            emb = np.asarray(emb)
        if len(emb.shape) != 2 or emb.shape[1] != self.embed_dim:
            raise ValueError(f"embeddings of shape {tuple(emb.shape)}: this tokenizer expects [N, {self.embed_dim}] "
                             f"({self.embed_model})")
        return emb

    def check_embeddings(self, emb, embed_model: Optional[str] = None) -> torch.Tensor:
        """float32 [N, D] tensor of all rows (see embedding_rows; every row checked for NaN/inf)."""
        x = torch.as_tensor(np.ascontiguousarray(self.embedding_rows(emb, embed_model))).float()
        check_finite(x)
        return x

    @torch.no_grad()
    def encode(self, emb, embed_model: Optional[str] = None, batch_size: int = 8192) -> np.ndarray:
        """Codes of every row, read `batch_size` rows at a time (a memmap stays on disk)."""
        rows = self.embedding_rows(emb, embed_model)
        out = np.zeros((len(rows), self.n_codes), np.int64)
        for start in range(0, len(rows), batch_size):
            x = torch.from_numpy(np.asarray(rows[start:start + batch_size], dtype=np.float32))
            check_finite(x, offset=start)
            out[start:start + len(x)] = self.model.encode(x).numpy()
            release_pages(rows)  # a memmap's pages read so far leave the resident set
        return out

    @torch.no_grad()
    def decode(self, codes) -> np.ndarray:
        codes = torch.as_tensor(np.asarray(codes)[:, :self.n_codes], dtype=torch.long)
        return self.model.decode(codes).numpy()

    def assign(self, emb, embed_model: Optional[str] = None, item_ids: Optional[Sequence] = None) -> np.ndarray:
        return resolve_collisions(self.encode(emb, embed_model), self.dedup_size, item_ids)

    def save(self, folder) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous() for k, v in self.model.state_dict().items()}
        save_file(state, str(folder / MODEL_FILE), metadata={"kind": self.kind})
        if self.report is not None:
            write_json(folder / REPORT_FILE, self.report)
        write_json(folder / CONFIG_FILE, self.config())  # last: a folder with config.json is complete
        return folder


def check_finite(x: torch.Tensor, what: str = "embeddings", offset: int = 0) -> None:
    """`offset`: the row number of x's first row (x is a batch of a larger table)."""
    bad = ~torch.isfinite(x).all(-1)
    if bad.any():
        rows = torch.nonzero(bad).flatten() + offset
        raise ValueError(f"{what}: {len(rows)} row(s) hold NaN or inf, e.g. rows {rows[:5].tolist()}")


def load_tokenizer(folder) -> ItemTokenizer:
    folder = require_files(folder, [CONFIG_FILE, MODEL_FILE, REPORT_FILE], "tokenizer")
    cfg = read_json(folder / CONFIG_FILE)
    missing = [k for k in ("kind", "embed_model", "embed_dim", "dedup_size", "params") if k not in cfg]
    if missing:
        raise ArtifactError(f"{folder / CONFIG_FILE}: missing keys {missing}")
    model = build_model(cfg["kind"], cfg["embed_dim"], cfg["params"])
    state, _ = load_safetensors(folder / MODEL_FILE)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise ArtifactError(f"{folder / MODEL_FILE} does not match {folder / CONFIG_FILE}: {e}") from None
    return ItemTokenizer(cfg["kind"], model, cfg["params"], cfg["embed_model"], cfg["embed_dim"],
                         cfg["dedup_size"], read_json(folder / REPORT_FILE))


def save_item_codes(path, ids: Sequence, codes) -> None:
    """`path` is codes.safetensors; item_ids.json goes beside it."""
    path = Path(path)
    codes = torch.as_tensor(np.asarray(codes)).to(torch.int32).contiguous()
    if codes.ndim != 2 or codes.shape[0] != len(ids):
        raise ValueError(f"save_item_codes: {len(ids)} ids but codes of shape {tuple(codes.shape)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")  # then renamed: a link at `path` is replaced, not followed
    tmp.unlink(missing_ok=True)
    save_file({"codes": codes}, str(tmp))
    os.replace(tmp, path)
    write_json(path.parent / IDS_FILE, [str(i) for i in ids])


def load_item_codes(path) -> tuple[list[str], np.ndarray]:
    path = Path(path)
    tensors, _ = load_safetensors(path)
    if "codes" not in tensors:
        raise ArtifactError(f"{path}: no tensor 'codes'")
    ids = read_json(path.parent / IDS_FILE)
    codes = tensors["codes"]
    if codes.ndim != 2 or codes.shape[0] != len(ids):
        raise ArtifactError(f"{path}: codes of shape {tuple(codes.shape)} but {len(ids)} ids in {IDS_FILE}")
    return [str(i) for i in ids], codes.numpy()


def tokenizer_hash(tokenizer_dir: Path, codes_path: Path) -> str:
    """Identity of a tokenizer + its item codes: checkpoints trained with other codes are refused."""
    parts = {"codes": sha256_file(codes_path)}
    for name in ("config.json", "model.safetensors"):
        if (Path(tokenizer_dir) / name).is_file():
            parts[name] = sha256_file(Path(tokenizer_dir) / name)
    return sha256_json(parts)
