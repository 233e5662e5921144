class ConfigError(ValueError):
    """A config key, type or value is wrong; the message names the key."""


def check(condition: bool, key: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"{key}: {message}")
