class ConfigError(ValueError):
    """A config key, type or value is wrong; the message names the key."""


class UnknownDataset(ConfigError):
    """No dataset spec of that name (as opposed to a spec that exists but is wrong)."""


def check(condition: bool, key: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"{key}: {message}")
