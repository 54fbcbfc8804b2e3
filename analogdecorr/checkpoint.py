"""Checkpoints: atomic ``torch.save`` of plain state that loads with ``torch.load(weights_only=True)``.

A checkpoint is a dict of tensors, plain Python values (dict/list/tuple/str/int/float/bool/None) and
state_dicts. Before saving, numpy arrays become tensors and numpy scalars Python numbers, so no custom class
is pickled and loading never executes code from the file. The dict must hold a ``"fingerprint"``
(``RunConfig.fingerprint()``): :func:`load_checkpoint` refuses to resume from a checkpoint written by a
different configuration, and names the keys that differ (:func:`differing_keys`, :func:`describe_difference`).
Which fields may differ (the run length, where it is written ...) each RunConfig field declares itself
(``resumable``, ``config.RESUMABLE_CHANGES``): they are not in the fingerprint.
"""

from __future__ import annotations

import json
import math
import pickle
import re
import zipfile
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .atomic import atomic_write
from .config import RunConfig, to_plain
from .errors import ConfigError, DataError

FORMAT_KEY = "analogdecorr_checkpoint"
FORMAT_VERSION = 1


def to_weights_only(obj: Any, where: str = "state") -> Any:
    """``obj`` with numpy values converted to tensors/Python numbers and Paths to str; TypeError (naming the
    key) for anything ``torch.load(weights_only=True)`` could not read back."""
    if isinstance(obj, np.generic):  # before the Python types: np.float64 is a float subclass
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str, bytes, torch.Tensor, torch.Size, torch.dtype)):
        return obj
    if isinstance(obj, np.ndarray):
        if obj.dtype == object:
            raise TypeError(f"{where} is a numpy object array; store its items as a list instead")
        return torch.from_numpy(np.ascontiguousarray(obj).copy())
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, OrderedDict):
        return OrderedDict((k, to_weights_only(v, f"{where}[{k!r}]")) for k, v in obj.items())
    if isinstance(obj, Mapping):
        return {k: to_weights_only(v, f"{where}[{k!r}]") for k, v in obj.items()}
    if isinstance(obj, tuple):
        return tuple(to_weights_only(v, f"{where}[{i}]") for i, v in enumerate(obj))
    if isinstance(obj, (list, set, frozenset)):
        return [to_weights_only(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    raise TypeError(
        f"{where} is a {type(obj).__module__}.{type(obj).__qualname__}; checkpoints hold only tensors and "
        "plain Python values (convert it, e.g. a generator's state to a tensor)"
    )


def save_checkpoint(path: str | Path, state: Mapping[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically (temp file + fsync + os.replace); returns the path.

    Numpy values are converted (see :func:`to_weights_only`); anything else that is not a tensor or plain
    value raises TypeError before the old checkpoint is touched.
    """
    if "fingerprint" not in state:
        raise ValueError("checkpoint state needs a 'fingerprint' (RunConfig.fingerprint()) for --resume")
    payload = to_weights_only(dict(state))
    payload[FORMAT_KEY] = FORMAT_VERSION
    with atomic_write(path, "wb") as f:
        torch.save(payload, f)
    return Path(path)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint safely (weights_only, onto the CPU) without checking its fingerprint.

    DataError if the file is missing, truncated, not a torch file, holds pickled objects, or was not written
    by :func:`save_checkpoint`.
    """
    p = Path(path)
    if not p.exists():
        raise DataError(f"no checkpoint at {p}; run without --resume to start the run")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        m = re.search(r"unsupported global:?\s*(?:GLOBAL\s+)?([\w.]+)", str(e), re.IGNORECASE)
        reason = f"a pickled {m.group(1)}" if m else type(e).__name__
        raise DataError(
            f"checkpoint {p} holds objects that are not plain tensors/values ({reason[:160]}); it was not "
            "written by analogdecorr. Delete it or choose another --out"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, KeyError, IndexError) as e:
        raise DataError(
            f"checkpoint {p} is corrupt or truncated ({type(e).__name__}: {str(e).strip()[:120]}); delete it "
            "to start over, or restore a backup"
        ) from None
    if not isinstance(state, dict) or FORMAT_KEY not in state or "fingerprint" not in state:
        raise DataError(
            f"{p} is not an analogdecorr checkpoint (no format marker or fingerprint); delete it or choose "
            "another --out"
        )
    if state[FORMAT_KEY] != FORMAT_VERSION:
        raise DataError(
            f"checkpoint {p} has format version {state[FORMAT_KEY]}, this analogdecorr reads version "
            f"{FORMAT_VERSION}; resume with the analogdecorr version that wrote it"
        )
    del state[FORMAT_KEY]
    return state


def load_checkpoint(path: str | Path, expected_fingerprint: Mapping[str, Any] | None) -> dict[str, Any]:
    """Load ``path`` and check that it came from the same configuration (``expected_fingerprint``; None skips
    the check). ConfigError naming the differing keys on a mismatch, DataError if missing or corrupt."""
    state = read_checkpoint(path)
    if expected_fingerprint is not None:
        saved = state["fingerprint"]
        if not isinstance(saved, Mapping):
            raise DataError(f"checkpoint {path} has a malformed fingerprint; delete it or use another --out")
        if differing_keys(saved, expected_fingerprint):
            raise ConfigError(
                f"cannot resume {path}: it was written with a different configuration "
                f"({describe_difference(saved, expected_fingerprint)}). Resume with the original settings, "
                "or choose another --out to start a new run"
            )
    return state


# ------------------------------------------------------------------------------------------ resume diffing
#: What a field added later meant in checkpoints written before it existed (when that is not its default): runs
#: before the validation split trained on the whole training set.
BEFORE_FIELD_EXISTED: dict[str, Any] = {"val_frac": 0.0}


def differing_keys(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """Keys whose values differ between two fingerprints (a key missing on one side counts as different,
    except a key absent from ``saved`` whose current value is the default, i.e. a field added later)."""
    defaults = {**RunConfig().to_dict(), **BEFORE_FIELD_EXISTED}
    a, b = to_plain(dict(saved)), to_plain(dict(current))
    keys = []
    for k in sorted(set(a) | set(b)):
        if k in a and k in b:
            if not _same(a[k], b[k]):
                keys.append(k)
        elif k in b and k in defaults and _same(b[k], defaults[k]):
            continue
        else:
            keys.append(k)
    return keys


def describe_difference(saved: Mapping[str, Any], current: Mapping[str, Any]) -> str:
    """Human-readable list of the differing keys: ``"lr: 0.001 (checkpoint) vs 0.0001 (now); rule: ..."``."""
    missing = object()
    a, b = to_plain(dict(saved)), to_plain(dict(current))
    parts = []
    for k in differing_keys(saved, current):
        old, new = a.get(k, missing), b.get(k, missing)
        old_s = "absent" if old is missing else json.dumps(old, allow_nan=True)
        new_s = "absent" if new is missing else json.dumps(new, allow_nan=True)
        parts.append(f"{k}: {old_s} (checkpoint) vs {new_s} (now)")
    return "; ".join(parts)


def _same(x: Any, y: Any) -> bool:
    """Equality for plain config values: 1 == 1.0, NaN == NaN, but True != 1."""
    if isinstance(x, bool) or isinstance(y, bool):
        return isinstance(x, bool) and isinstance(y, bool) and x == y
    if isinstance(x, (int, float)) and isinstance(y, (int, float)):
        return x == y or (math.isnan(x) and math.isnan(y))
    if isinstance(x, list) and isinstance(y, list):
        return len(x) == len(y) and all(_same(p, q) for p, q in zip(x, y, strict=True))
    if isinstance(x, dict) and isinstance(y, dict):
        return x.keys() == y.keys() and all(_same(x[k], y[k]) for k in x)
    return type(x) is type(y) and x == y


# The contract's short names.
save = save_checkpoint
load = load_checkpoint
