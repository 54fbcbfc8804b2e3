"""Choosing from a fixed set of names: the one place that turns a misspelt name into an error naming the
closest valid one."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

from .errors import ConfigError


def closest_hint(name: str, valid: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest valid name, or an empty string."""
    close = difflib.get_close_matches(str(name), list(valid), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def check_choice(name: str, valid: Iterable[str], what: str) -> str:
    """``name`` if it is one of ``valid``, else ConfigError naming ``what``, the closest name and all choices."""
    valid = tuple(valid)
    if name not in valid:
        raise ConfigError(f"unknown {what} '{name}'{closest_hint(name, valid)}; choose from {', '.join(valid)}")
    return name


def check_choices(values: Any, valid: Iterable[str], what: str, aliases: Mapping[str, str] | None = None) -> tuple:
    """A non-empty tuple of choices from a sequence or a comma-separated string (aliases mapped first)."""
    valid = tuple(valid)
    if isinstance(values, str):
        values = [v.strip() for v in values.split(",") if v.strip()]
    chosen = tuple((aliases or {}).get(v, v) for v in values)
    if not chosen:
        raise ConfigError(f"no {what} given; choose from {', '.join(valid)}")
    return tuple(check_choice(v, valid, what) for v in chosen)
