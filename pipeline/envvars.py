"""Typed reads of environment variables, with errors that name the fix.

Every settings class reads the environment through these helpers, once, at
start; a bad value fails there with a message, never deep inside a run.
"""
import os
from pathlib import Path

from visionfleet.pipeline.errors import ConfigError


def env_str(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or default


def env_int(name: str, default: int, *, minimum: int = 1, maximum: int | None = None) -> int:
    return _number(name, default, int, "a whole number", minimum, maximum)


def env_float(name: str, default: float, *, minimum: float = 0.0, maximum: float | None = None) -> float:
    return _number(name, default, float, "a number", minimum, maximum)


def _number(name, default, parse, kind, minimum, maximum):
    raw = env_str(name)
    if raw is None:
        return default
    try:
        value = parse(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not {kind}; set it to e.g. {default}") from None
    if value < minimum or (maximum is not None and value > maximum):
        upper = f" and at most {maximum}" if maximum is not None else ""
        raise ConfigError(f"{name}={value} is out of range; set it to at least {minimum}{upper}")
    return value


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env_str(name, default)
    if value not in choices:
        raise ConfigError(f"{name}={value!r} is not one of {', '.join(choices)}; set it to one of them")
    return value


def visionfleet_home() -> Path:
    """Where this machine keeps the embedded broker, state and model cache (VISIONFLEET_HOME)."""
    return Path(env_str("VISIONFLEET_HOME") or Path.home() / ".cache" / "visionfleet").resolve()
