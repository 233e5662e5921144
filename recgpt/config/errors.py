class ConfigError(ValueError):
    """A config key, type or value is wrong; the message names the key."""


class UnknownDataset(ConfigError):
    """No dataset spec of that name (as opposed to a spec that exists but is wrong)."""


def check(condition: bool, key: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"{key}: {message}")


def check_device(device: str, key: str) -> None:
    """A device the machine has: `embed.device=cuda` on a CPU-only machine fails here, naming the key."""
    import torch

    try:
        kind = torch.device(device).type
    except (RuntimeError, TypeError):
        raise ConfigError(f"{key}: {device!r} is not a device (cpu, cuda, cuda:1, mps)") from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{key}={device}: no CUDA device is available here (torch {torch.__version__}, CUDA build "
                          f"{torch.version.cuda or 'none'}); use {key}=cpu or install a CUDA build of torch")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"{key}={device}: MPS is not available here; use {key}=cpu")
