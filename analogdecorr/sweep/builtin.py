"""Sweep files shipped inside the package (analogdecorr/sweeps/*.toml), run by name like aihwkit's presets:
``analogdecorr sweep demo``. A name that is not one of them but is a file on disk is read as a path."""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError
from ..packaged import first_comment, packaged_dir, toml_files

FOLDER = "sweeps"


def builtin_dir() -> Path:
    """The folder of the packaged sweep files."""
    return packaged_dir(FOLDER)


def builtin_sweeps() -> dict[str, Path]:
    """Name (the file stem) → path of every packaged sweep file, sorted by name."""
    return toml_files(builtin_dir())


#: The first comment line of a sweep file: what it runs (one line for ``--list``).
describe = first_comment


def resolve_sweep(name_or_path: str | Path) -> Path:
    """The sweep file to run: an existing path as given, else the packaged sweep of that name; ConfigError
    (one line, the built-in names) for neither."""
    text = str(name_or_path)
    path = Path(text)
    if path.is_file():
        return path
    builtin = builtin_sweeps()
    if text in builtin:
        return builtin[text]
    names = ", ".join(builtin) or "none installed"
    looks_like_path = path.suffix == ".toml" or "/" in text or "\\" in text
    what = f"no sweep file {text}" if looks_like_path else f"{text!r} is neither a sweep file nor a built-in sweep"
    raise ConfigError(f"{what}; built-in sweeps: {names} (analogdecorr sweep --list), or give a path to a .toml")
