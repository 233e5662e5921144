"""Where an exported model lives: `ckpt/<run>/best` (config.json + model.safetensors + tokenizer/ + codes)."""
from pathlib import Path

from recgpt.io import ArtifactError


def resolve_model_dir(path) -> Path:
    """An exported model folder, or a run folder holding best/: the folder with config.json."""
    path = Path(path)
    if (path / "best" / "config.json").is_file() and not (path / "config.json").is_file():
        path = path / "best"
    if not (path / "config.json").is_file():
        raise ArtifactError(f"no model at {path}: expected config.json + model.safetensors "
                            "(an exported ckpt/<run>/best folder or a run folder holding best/)")
    return path
