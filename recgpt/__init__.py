"""recgpt: pretrain a generative recommendation foundation model over item codes and use it zero-shot."""
import os

__version__ = "0.2.0"


def _deepspeed_accelerator() -> None:
    """On a machine without CUDA, tell DeepSpeed (imported by transformers and accelerate when installed) that
    the accelerator is the CPU, instead of letting it warn on every import that it could not find one."""
    if "DS_ACCELERATOR" in os.environ:
        return
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return
    if not torch.cuda.is_available():
        os.environ["DS_ACCELERATOR"] = "cpu"


_deepspeed_accelerator()
