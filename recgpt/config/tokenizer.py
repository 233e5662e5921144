"""Config of the item tokenizer (embedding -> a few discrete codes per item)."""
from dataclasses import dataclass, field

from recgpt.config.errors import check


@dataclass
class TokenizerConfig:
    kind: str = "fsq"  # fsq | rqvae | rqkmeans
    output_dir: str = "outputs/tokenizer"
    n_codes: int = 4  # codes per item before collision resolution
    # FSQ
    levels: list[int] = field(default_factory=lambda: [8, 8, 8, 6, 5])
    encoder: str = "mlp"  # reshape (RecGPT) | mlp (learned)
    hidden: int = 512
    # RQ-VAE / RQ-KMeans
    codebook_size: int = 256
    commitment: float = 0.25
    # optimisation
    epochs: int = 30
    batch_size: int = 1024
    lr: float = 1e-3
    heldout: float = 0.05  # share of items held out to measure reconstruction error
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self):
        check(self.kind in ("fsq", "rqvae", "rqkmeans"), "tokenizer.kind", f"fsq|rqvae|rqkmeans, got {self.kind!r}")
        check(self.encoder in ("reshape", "mlp"), "tokenizer.encoder", f"reshape|mlp, got {self.encoder!r}")
        check(self.n_codes >= 1, "tokenizer.n_codes", f"must be >= 1, got {self.n_codes}")
        check(all(level >= 2 for level in self.levels), "tokenizer.levels", f"each level must be >= 2: {self.levels}")
        check(self.codebook_size >= 2, "tokenizer.codebook_size", f"must be >= 2, got {self.codebook_size}")
        check(0.0 <= self.heldout < 1.0, "tokenizer.heldout", f"must be in [0, 1), got {self.heldout}")
        check(self.lr > 0, "tokenizer.lr", f"must be > 0, got {self.lr}")
