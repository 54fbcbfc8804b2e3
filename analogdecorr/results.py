"""results.json: schema, atomic writes and the versions of everything that produced a run.

Schema (every key after "epochs" is an optional extra section)::

    {"config": {...RunConfig.to_dict()...},
     "versions": {"python", "torch", "aihwkit", "numpy", "amaranth", "analogdecorr"},
     "epochs": [{"epoch", "train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc",
                 "corr_before": [per layer], "corr_after": [per layer], "seconds", ...,
                 "zz_cond", "zz_eig_max", "zz_eig_min", "zz_rank": [per layer],   # spectrum of cov(z), below
                 "grad_cosine": [per layer],                    # NP with probe_size > 0: cos(G_NP, ∂L/∂W)
                 "update_cosine",                               # analog local rules: cos(pulsed, intended ΔW)
                 "cosim": [{"layer", "samples", "learned", "saturation": {x, xc, rw, z, p, v, e, r},
                            "r_rel_dist", "z_rel_dist", "scale"}]}, ...],          # decor_numerics = fixed
     "summary": {"best_val_epoch", "best_val_acc", "test_acc_at_best_val", "last_epoch", "val_acc_last",
                 "test_acc_last"},                                         # see run_summary
     "drift": [{"t_seconds", "acc", "compensated"}, ...],                      # analog runs
     "cosim": {"unit": {"source", "fields", "shift_derived", ...}, "layers": [{"layer", "format"}],
               "record", "scales"},                                          # decor_numerics = fixed
     "corr_matrices": [{"layer", "before": [[...]], "after": [[...]]}, ...]}   # last epoch

The file is strict JSON: NaN and ±Inf are written as null (read back as None).

Diagnostics (analogdecorr.diagnostics): ``zz_*`` describe the centred covariance of each layer's decorrelated input
z over the first 1000 training samples (the rows ``corr_after`` uses), in evaluation mode, at the end of the epoch:
top and bottom eigenvalue, the rank (eigenvalues above 1e-10·λ_max) and the condition number over that range (a
rank below d flags directions without variance, or a layer wider than the probe rows; then the bottom eigenvalue is
the sample covariance's). ``grad_cosine``: one NP estimate on the first ``probe_size`` training samples against the
exact gradient at the present weights (tiles: NP's reads are analog, the weights are read exactly).
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import platform
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .atomic import atomic_write  # also this module's name for it (the study scripts use it)
from .errors import DataError

#: Keys every epoch row written by the trainer has (plots rely on them).
EPOCH_KEYS = (
    "epoch", "train_loss", "train_acc", "test_loss", "test_acc", "corr_before", "corr_after", "seconds"
)
VERSION_PACKAGES = ("torch", "aihwkit", "numpy", "amaranth", "analogdecorr")

def to_jsonable(obj: Any, where: str = "") -> Any:
    """Plain JSON types from ``obj``: tuples → lists, numpy/torch scalars and arrays → numbers/lists,
    Path → str, non-finite floats → None. Raises TypeError naming the offending key for anything else."""
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v, f"{where}.{k}" if where else str(k)) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, Path):
        return str(obj)
    tolist = getattr(obj, "tolist", None)  # numpy arrays/scalars, torch tensors
    if callable(tolist) and type(obj).__module__.split(".")[0] in ("numpy", "torch"):
        return to_jsonable(tolist(), where)
    raise TypeError(f"results field {where or '<root>'} holds a {type(obj).__name__}, which JSON can't store")


def write_json_atomic(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as strict JSON to ``path`` atomically (temp file + fsync + os.replace); returns path."""
    with atomic_write(path, "w") as f:
        json.dump(to_jsonable(obj), f, indent=1, allow_nan=False)
        f.write("\n")
    return Path(path)


def read_results(path: str | Path) -> dict[str, Any]:
    """Load a results.json (DataError if it is missing, not JSON, or not an analogdecorr results file)."""
    p = Path(path)
    if p.is_dir():
        p = p / "results.json"
    if not p.exists():
        raise DataError(f"no results file at {p}; train a run first (analogdecorr train --out {p.parent})")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise DataError(f"{p} is not a text file; pass a results.json from analogdecorr train") from None
    except json.JSONDecodeError as e:
        raise DataError(
            f"{p} is corrupt (invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}); "
            "re-run the training or restore the file"
        ) from None
    except OSError as e:
        raise DataError(f"cannot read {p}: {e.strerror}") from None
    if not isinstance(data, dict) or not isinstance(data.get("epochs"), list) or "config" not in data:
        raise DataError(
            f"{p} is not an analogdecorr results file (needs 'config' and an 'epochs' list); "
            "pass the results.json written by analogdecorr train"
        )
    return data


def run_summary(epochs: list[Mapping[str, Any]]) -> dict[str, Any]:
    """The run's selection figures from its epoch rows: the epoch with the highest validation accuracy (the
    earliest on a tie; None without a validation split), the test accuracy there, and at the last epoch.

    Test accuracy is only ever read at an epoch chosen without looking at it (the best-validation or the last).
    """
    last = epochs[-1] if epochs else {}
    scored = [(r["val_acc"], -int(r["epoch"]), r) for r in epochs if r.get("val_acc") is not None]
    best = max(scored, key=lambda t: (t[0], t[1]))[2] if scored else None
    return {
        "best_val_epoch": best["epoch"] if best else None,
        "best_val_acc": best["val_acc"] if best else None,
        "test_acc_at_best_val": best["test_acc"] if best else None,
        "last_epoch": last.get("epoch"),
        "val_acc_last": last.get("val_acc"),
        "test_acc_last": last.get("test_acc"),
    }


def versions() -> dict[str, str]:
    """Versions of Python and the packages that determine a run's numbers ('not installed' if absent)."""
    out = {"python": platform.python_version()}
    for name in VERSION_PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


class Results:
    """The in-memory results of one run; :meth:`save` always writes a complete, valid file atomically.

    ``epochs`` is the list of per-epoch rows (may be reassigned, e.g. on resume); ``extra`` holds further
    top-level sections such as "drift", "analog" or "corr_matrices".
    """

    def __init__(
        self,
        config: Mapping[str, Any] | None = None,
        versions: Mapping[str, str] | None = None,
        epochs: list[dict] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        self.config: dict[str, Any] = dict(config or {})
        self.versions: dict[str, str] = dict(versions or {})
        self.epochs: list[dict] = list(epochs or [])
        self.extra: dict[str, Any] = dict(extra or {})
        reserved = {"config", "versions", "epochs"} & set(self.extra)
        if reserved:
            raise ValueError(f"extra sections may not be named {sorted(reserved)}")

    def add_epoch(self, row: Mapping[str, Any]) -> None:
        """Append one epoch's figures (a copy; must contain at least the keys in :data:`EPOCH_KEYS`)."""
        missing = [k for k in EPOCH_KEYS if k not in row]
        if missing:
            raise ValueError(f"epoch row lacks {missing}; every row needs {list(EPOCH_KEYS)}")
        self.epochs.append(dict(row))

    def to_dict(self) -> dict[str, Any]:
        """The results.json content (the sections are the live objects; :meth:`save` converts them)."""
        reserved = {"config", "versions", "epochs"} & set(self.extra)
        if reserved:
            raise ValueError(f"extra sections may not be named {sorted(reserved)}")
        return {"config": self.config, "versions": self.versions, "epochs": self.epochs, **self.extra}

    def save(self, path: str | Path) -> Path:
        """Write results.json atomically (the old file stays intact if anything fails)."""
        return write_json_atomic(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> Results:
        """Read a results.json back (DataError if missing or corrupt), e.g. to append drift results."""
        data = read_results(path)
        extra = {k: v for k, v in data.items() if k not in ("config", "versions", "epochs")}
        return cls(data["config"], data.get("versions", {}), data["epochs"], extra)
