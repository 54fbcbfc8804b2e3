"""Named recipes: run configurations chosen by a tuned sweep, shipped as TOML files in this folder and run by
name, like aihwkit's presets: ``analogdecorr train --recipe NAME [flags]``; ``analogdecorr recipes`` lists them.

A recipe is a plain run-configuration TOML (the same keys as ``--config``; no seed) whose first comment line
says what it is, followed by comment lines saying which sweep chose it, on what metric, and how to reproduce
it. Precedence when training: flags > ``--config`` file > recipe > defaults; the ``device`` and ``io`` tables
merge key by key (a ``--config`` file's ``io = {out_noise = 0}`` changes that one key of the recipe's ``io``).

``analogdecorr recipes --write SWEEP_FOLDER --into DIR`` writes one recipe per chosen row of a tuned sweep's
chosen.toml (see :mod:`analogdecorr.sweep.tune`).
"""

from __future__ import annotations

import difflib
import json
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..packaged import first_comment, packaged_dir, toml_files

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

#: Keys a recipe never sets: the seed is the user's, and so is where a run is written (besides the default).
NOT_IN_RECIPES = ("seed",)
#: Table-valued keys, merged key by key across layers.
TABLE_KEYS = ("device", "io")
_NAME = re.compile(r"[^a-z0-9.+]+")
FOLDER = "recipes"


def recipes_dir() -> Path:
    """The folder of the packaged recipes."""
    return packaged_dir(FOLDER)


def builtin_recipes() -> dict[str, Path]:
    """Name (the file stem) → path of every packaged recipe, sorted by name."""
    return toml_files(recipes_dir())


#: The first comment line of a recipe: what it is (one line for the listing).
describe = first_comment


def resolve_recipe(name_or_path: str | Path) -> Path:
    """The recipe file: a packaged recipe of that name, else an existing .toml path; ConfigError (one line,
    the closest names) for neither."""
    text = str(name_or_path)
    builtin = builtin_recipes()
    if text in builtin:
        return builtin[text]
    path = Path(text)
    if path.suffix == ".toml" and path.is_file():
        return path
    close = difflib.get_close_matches(text, list(builtin), n=3, cutoff=0.4)
    hint = f" (closest: {', '.join(close)})" if close else ""
    if path.suffix == ".toml" or "/" in text:
        raise ConfigError(f"no recipe file {text}; give an existing .toml or a recipe name (analogdecorr recipes "
                          f"lists them){hint}")
    raise ConfigError(f"unknown recipe {text!r}{hint}; `analogdecorr recipes` lists the "
                      f"{len(builtin)} recipes, or give a path to a .toml")


def load_recipe(name_or_path: str | Path) -> dict[str, Any]:
    """A recipe's key = value pairs (keys with underscores), checked: unknown keys name the closest valid one,
    a seed is refused. Values are checked when the configuration is resolved."""
    import dataclasses

    from ..choices import choice_message
    from ..config import RunConfig, load_toml

    path = resolve_recipe(name_or_path)
    values = {str(k).replace("-", "_"): v for k, v in load_toml(path).items()}
    fields = [f.name for f in dataclasses.fields(RunConfig)]
    for key in values:
        if key in NOT_IN_RECIPES:
            raise ConfigError(f"recipe {path}: sets {key!r}; a recipe leaves the seed to the run (--seed)")
        if key not in fields:
            raise ConfigError(f"recipe {path}: {choice_message(key, fields, 'config key')}")
    return values


def layer(recipe: Mapping[str, Any], config_file: Mapping[str, Any]) -> dict[str, Any]:
    """The file layer of :func:`analogdecorr.config.resolve`: the ``--config`` file's values over the recipe's
    (keys normalised to underscores; ``device``/``io`` merged key by key)."""
    out = {str(k).replace("-", "_"): v for k, v in recipe.items()}
    for raw, value in config_file.items():
        key = str(raw).replace("-", "_")
        if key in TABLE_KEYS and isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


# ------------------------------------------------------------------------------------ from a tuned sweep
def recipe_name(prefix: str, row: Mapping[str, str]) -> str:
    """``prefix-label-label``, lower case, runs of characters other than a-z 0-9 . + as one '-'."""
    parts = [prefix, *row.values()]
    return "-".join(p for p in (_NAME.sub("-", str(x).lower()).strip("-") for x in parts) if p)


def read_chosen(path: str | Path) -> dict[str, Any]:
    """A tuned sweep's chosen.toml (``path`` is the file or the sweep folder); ConfigError if absent/invalid."""
    from ..sweep.tune import CHOSEN_FILE

    p = Path(path)
    if p.is_dir():
        p = p / CHOSEN_FILE
    if not p.is_file():
        raise ConfigError(f"no {CHOSEN_FILE} at {p}; run a sweep with a [tune] table first (its folder holds "
                          f"{CHOSEN_FILE} once a row has chosen)")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p} is not a valid chosen.toml ({e}); rerun the sweep to rewrite it") from None
    if not data.get("row"):
        raise ConfigError(f"{p} has no chosen row yet; let the sweep finish a row's search first")
    return data


def recipe_text(name: str, sweep: str, source: str, entry: Mapping[str, Any], command: str) -> str:
    """The TOML of one recipe: comment lines (what, who chose it, on what, how to reproduce), then its keys."""
    chosen = entry.get("chosen_text") or " ".join(f"{k}={v}" for k, v in entry["chosen"].items())
    what = " ".join(f"{k}={v}" for k, v in entry["row"].items())
    lines = [
        f"# {sweep} {what}: {chosen} (tuned on {entry['metric']})",
        f"# Chosen by the tuned sweep {sweep!r} ({source}), row {what}:",
        f"# the setting with the best mean {entry['metric']} over search seeds {entry['search_seeds']} "
        f"({entry['search_mean']:.3f} ± {entry['search_std']:.3f})",
        f"# among {entry['search_settings']} searched settings, each run at its "
        f"{'best-validation' if entry['select'] == 'validation' else 'last'} epoch.",
    ]
    if "final_test_acc_mean" in entry:
        lines.append(f"# Final seeds {entry['final_seeds']}: test accuracy at the selected epoch "
                     f"{entry['final_test_acc_mean']:.3f} ± {entry['final_test_acc_std']:.3f}.")
    lines += [f"# Written by `{command}`.", f"# Run it: analogdecorr train --recipe {name} [--seed N ...]", ""]
    config = {k: v for k, v in entry["config"].items() if k not in NOT_IN_RECIPES}
    config.setdefault("out", f"runs/recipes/{name}")
    return "\n".join(lines) + "".join(f"{key} = {_toml_value(v)}\n" for key, v in config.items())


def _toml_value(v: Any) -> str:
    """A TOML value on one line (lists as [a, b], tables inline), so a recipe reads like a --config file."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a valid TOML basic string
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, Mapping):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise ConfigError(f"cannot write {v!r} ({type(v).__name__}) into a recipe")


def write_recipes(chosen: str | Path, into: str | Path, prefix: str | None = None,
                  command: str = "analogdecorr recipes --write") -> list[Path]:
    """One recipe file per chosen row of ``chosen`` (a chosen.toml or its sweep folder) in ``into``, named
    :func:`recipe_name` (prefix default: the sweep's name); each written atomically. Returns the paths."""
    from ..results import atomic_write

    data = read_chosen(chosen)
    sweep = str(data.get("sweep", "sweep"))
    into = Path(into)
    paths = []
    names = [recipe_name(prefix or sweep, entry["row"]) for entry in data["row"]]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"two rows would both be recipe {dup[0]!r}; give another --prefix or rename the rows")
    for name, entry in zip(names, data["row"], strict=True):
        path = into / f"{name}.toml"
        with atomic_write(path) as f:
            f.write(recipe_text(name, sweep, str(data.get("source", "")), entry, command))
        paths.append(path)
    return paths
