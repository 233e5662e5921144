"""Where an exported model lives (`ckpt/<run>/best`: config.json + model.safetensors + tokenizer/ + codes) and
how it is loaded: strictly, every weight of the config present and nothing else."""
from contextlib import contextmanager
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


def load_decoder(model_dir: Path):
    """ItemCodeDecoder.from_pretrained with errors naming the file (missing, corrupt or truncated weights)."""
    from safetensors import SafetensorError

    from recgpt.model import ItemCodeDecoder

    weights = model_dir / "model.safetensors"
    if not weights.is_file():
        raise ArtifactError(f"missing file: {weights} (the model's weights; re-export it with `recgpt eval`)")
    try:
        with quiet_transformers():  # its load report would print a table; the mismatch is our one line below
            model, info = ItemCodeDecoder.from_pretrained(str(model_dir), output_loading_info=True)
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise ArtifactError(f"{weights} (or {model_dir / 'config.json'}) cannot be loaded, corrupt or truncated? "
                            f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
    problems = [f"{len(keys)} {kind.replace('_', ' ')} ({key_list(keys)})" for kind, keys in info.items()
                if kind.endswith("_keys") and keys]
    if problems:  # e.g. a config.json edited to more layers: the extra ones would be random weights
        raise ArtifactError(f"{weights} does not match {model_dir / 'config.json'}: {'; '.join(problems)}; "
                            "the weights and the config must come from the same export (`recgpt eval`)")
    return model


def key_list(keys, shown: int = 4) -> str:
    names = sorted(str(k[0] if isinstance(k, tuple) else k) for k in keys)
    return ", ".join(names[:shown]) + (f", ... {len(names) - shown} more" if len(names) > shown else "")


@contextmanager
def quiet_transformers():
    from transformers.utils import logging as hf_logging

    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()  # e.g. "Writing model shards" for a one-file save
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def save_model(model, folder) -> None:
    """save_pretrained as safetensors + config.json, without transformers' progress bars."""
    with quiet_transformers():
        model.save_pretrained(str(folder), safe_serialization=True)
