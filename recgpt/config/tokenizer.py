"""Config of the item tokenizer (embedding -> a few discrete codes per item)."""
from dataclasses import dataclass, field
from typing import Optional

from recgpt.config.errors import check

KINDS = ("fsq", "rqvae", "rqkmeans")  # listed by `recgpt tokenize fit --help`


@dataclass
class TokenizerConfig:
    kind: str = "fsq"  # fsq | rqvae | rqkmeans
    output_dir: str = "outputs/tokenizer"
    embeddings_dir: Optional[str] = None  # default: embed.output_dir, else <corpus_dir>/embeddings
    n_codes: int = 4  # codes per item before collision resolution (RQ: number of residual levels)
    # Size of the extra disambiguation slot: the k-th item sharing a code tuple gets code k there.
    # Fixed at fit time; a catalogue with more than this many items on one tuple is an error.
    dedup_size: int = 64
    # Shift and scale each embedding dimension by training-item statistics before encoding (all kinds).
    standardize: bool = True
    # FSQ
    levels: list[int] = field(default_factory=lambda: [8, 8, 8, 6, 5])
    encoder: str = "mlp"  # reshape (RecGPT: chunk + shared linear) | mlp (learned)
    hidden: int = 512
    loss: str = "mse"  # mse | cosine reconstruction loss
    # RQ-VAE / RQ-KMeans
    codebook_size: int = 256
    latent_dim: int = 32  # RQ-VAE latent width
    commitment: float = 0.25
    rotation_trick: bool = False  # RQ-VAE: rotation trick instead of the straight-through estimator
    # RQ-VAE: epochs as a plain autoencoder before k-means initialises the codebooks on the trained latents
    rq_warmup_epochs: int = 5
    # RQ-VAE anti-collapse: a code no item of the last N batches chose restarts at a random residual (0 = off)
    dead_code_steps: int = 50
    # RQ-VAE: Sinkhorn-Knopp iterations of the balanced last-level assignment during training (0 = nearest code)
    sinkhorn_iters: int = 20
    kmeans_iters: int = 50
    # k-means (RQ-KMeans; the RQ-VAE's codebook initialisation) on a seeded sample of at most this many training
    # items: at millions of items the float64 copy k-means makes would not fit (15 M x 384 x 8 B = 46 GB)
    kmeans_max_items: int = 250_000
    # optimisation
    epochs: int = 30
    batch_size: int = 1024
    lr: float = 1e-3
    warmup_steps: int = 100
    weight_decay: float = 0.0
    heldout: float = 0.05  # share of items held out to measure reconstruction error
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self):
        check(self.kind in KINDS, "tokenizer.kind", f"{'|'.join(KINDS)}, got {self.kind!r}")
        check(self.encoder in ("reshape", "mlp"), "tokenizer.encoder", f"reshape|mlp, got {self.encoder!r}")
        check(self.loss in ("mse", "cosine"), "tokenizer.loss", f"mse|cosine, got {self.loss!r}")
        check(self.n_codes >= 1, "tokenizer.n_codes", f"must be >= 1, got {self.n_codes}")
        check(self.dedup_size >= 1, "tokenizer.dedup_size", f"must be >= 1, got {self.dedup_size}")
        check(len(self.levels) >= 1 and all(level >= 2 for level in self.levels), "tokenizer.levels",
              f"each level must be >= 2: {self.levels}")
        check(self.codebook_size >= 2, "tokenizer.codebook_size", f"must be >= 2, got {self.codebook_size}")
        check(self.latent_dim >= 1, "tokenizer.latent_dim", f"must be >= 1, got {self.latent_dim}")
        check(self.hidden >= 1, "tokenizer.hidden", f"must be >= 1, got {self.hidden}")
        check(self.rq_warmup_epochs >= 0, "tokenizer.rq_warmup_epochs", f"must be >= 0, got {self.rq_warmup_epochs}")
        check(self.dead_code_steps >= 0, "tokenizer.dead_code_steps", f"must be >= 0, got {self.dead_code_steps}")
        check(self.sinkhorn_iters >= 0, "tokenizer.sinkhorn_iters", f"must be >= 0, got {self.sinkhorn_iters}")
        check(self.kmeans_max_items >= 2, "tokenizer.kmeans_max_items", f"must be >= 2, got {self.kmeans_max_items}")
        check(self.kmeans_iters >= 1, "tokenizer.kmeans_iters", f"must be >= 1, got {self.kmeans_iters}")
        check(self.epochs >= 0, "tokenizer.epochs", f"must be >= 0, got {self.epochs}")
        check(self.batch_size >= 1, "tokenizer.batch_size", f"must be >= 1, got {self.batch_size}")
        check(0.0 <= self.heldout < 1.0, "tokenizer.heldout", f"must be in [0, 1), got {self.heldout}")
        check(self.lr > 0, "tokenizer.lr", f"must be > 0, got {self.lr}")
        check(self.warmup_steps >= 0, "tokenizer.warmup_steps", f"must be >= 0, got {self.warmup_steps}")
