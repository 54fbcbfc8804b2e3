"""Choosing from a fixed set of names: the one place that turns a misspelt name into an error naming the
closest valid one and the choices."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

from .errors import ConfigError

#: How alike (difflib ratio) a valid name must be to be suggested: 'nq' -> 'np' (0.5) is, 'xyzzy' -> 'lr' is not.
CUTOFF = 0.5


def closest(name: object, valid: Iterable[str], cutoff: float = CUTOFF) -> str | None:
    """The valid name most like ``name``, or None if none is alike enough."""
    close = difflib.get_close_matches(str(name), list(valid), n=1, cutoff=cutoff)
    return close[0] if close else None


def closest_hint(name: object, valid: Iterable[str], cutoff: float = CUTOFF) -> str:
    """`` (did you mean 'x'?)`` for the closest valid name, or an empty string."""
    close = closest(name, valid, cutoff)
    return f" (did you mean '{close}'?)" if close else ""


def choice_message(name: object, valid: Iterable[str], what: str, where: str = "", cutoff: float = CUTOFF,
                   listing: str | None = None) -> str:
    """``unknown <what> 'name'<where> (did you mean 'x'?); choose from a, b, c``: for callers that add context.

    ``listing`` replaces ``choose from ...`` where the list is too long for one line (e.g. a command that
    prints it)."""
    valid = tuple(valid)
    listing = listing or f"choose from {', '.join(valid)}"
    return f"unknown {what} '{name}'{where}{closest_hint(name, valid, cutoff)}; {listing}"


def check_choice(name: Any, valid: Iterable[str], what: str, *, where: str = "",
                 error: type[Exception] = ConfigError, cutoff: float = CUTOFF, listing: str | None = None) -> str:
    """``name`` if it is one of ``valid``, else ``error`` (ConfigError; FormatError for hardware formats)
    naming ``what``, the closest name and all choices."""
    valid = tuple(valid)
    if name not in valid:
        raise error(choice_message(name, valid, what, where, cutoff, listing))
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
