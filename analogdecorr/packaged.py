"""TOML files shipped inside the package and used by name, like aihwkit's presets: the built-in sweeps
(``analogdecorr/sweeps``) and the named recipes (``analogdecorr/recipes``)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def packaged_dir(folder: str) -> Path:
    """The package's folder ``folder`` (e.g. "sweeps")."""
    return Path(str(resources.files("analogdecorr") / folder))


def toml_files(folder: Path) -> dict[str, Path]:
    """Name (the file stem) → path of every .toml file in ``folder``, sorted by name ({} without the folder)."""
    return {p.stem: p for p in sorted(folder.glob("*.toml"))} if folder.is_dir() else {}


def first_comment(path: Path) -> str:
    """The first comment line of a TOML file before any other content: what it is, for a one-line listing."""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            return line.lstrip("#").strip()
        if line.strip():
            break
    return ""
