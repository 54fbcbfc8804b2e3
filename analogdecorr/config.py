"""Run configuration: defaults, TOML loading, precedence (flags > file > defaults) and validation.

Every problem raises :class:`~analogdecorr.errors.ConfigError` with a message that names the key, the bad
value and the fix, so the CLI can print it as one line.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .choices import check_choice, choice_message
from .errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

try:  # the data module owns the list of datasets; fall back while it is absent
    from .data import DATASETS
except ImportError:  # pragma: no cover - only before data.py exists
    DATASETS = ("digits", "mnist1d", "correlated", "mnist", "fashion_mnist", "cifar10")

RULES = ("bp", "fa", "dfa", "np")
DECORS = ("none", "scaled", "offdiag", "whiten", "kappa", "centre", "zca")
ACTIVATIONS = ("relu", "leaky_relu", "tanh", "sigmoid", "gelu", "elu")
OPTIMIZERS = ("adam", "sgd")
LR_SCHEDULES = ("constant", "cosine", "step", "exponential")
BACKENDS = ("float", "analog")
MODELS = ("mlp", "conv")
DECOR_NUMERICS = ("float", "fixed")
#: Decorrelation rules the fixed-point unit implements (``decor_numerics = "fixed"``).
UNIT_DECORS = ("offdiag", "whiten")
UNIT_ROUNDINGS = ("trunc", "half_up", "half_even", "stochastic")

#: Fields with a fixed set of values (the CLI may show these as choices).
CHOICES: dict[str, tuple[str, ...]] = {
    "dataset": tuple(DATASETS),
    "model": MODELS,
    "activation": ACTIVATIONS,
    "rule": RULES,
    "decor": DECORS,
    "optimizer": OPTIMIZERS,
    "lr_schedule": LR_SCHEDULES,
    "backend": BACKENDS,
    "decor_numerics": DECOR_NUMERICS,
    "unit_rounding": UNIT_ROUNDINGS,
}


@dataclass(frozen=True)
class RunConfig:
    """One training run. Defaults are the README's main job (NP + scaled decorrelation, 4×1000 MLP, digits).

    Immutable: derive variants with ``dataclasses.replace`` or :func:`resolve`. Lists are tuples;
    ``device`` and ``io`` are plain dicts of aihwkit parameters (copied by :func:`resolve`; do not mutate).
    """

    # data
    dataset: str = "digits"
    data_dir: str | None = None
    seed: int = 0
    rho: float = 0.3
    n_features: int = 64
    n_samples: int = 5000
    val_frac: float = 0.1
    # model
    model: str = "mlp"
    hidden: tuple[int, ...] = (1000, 1000, 1000, 1000)
    activation: str = "leaky_relu"
    conv_channels: tuple[int, ...] = (16, 32)
    # learning rule and decorrelation
    rule: str = "np"
    decor: str = "scaled"
    decor_lr: float = 1e-4
    sample_frac: float = 0.1
    scale_free: bool = False
    kappa: float = 0.5
    # fixed-point decorrelation (co-simulation of the FPGA unit; None = derived, see analogdecorr.cosim.unit)
    decor_numerics: str = "float"
    unit: str | None = None
    unit_width: int = 16
    unit_frac: int | None = None
    unit_r_width: int | None = None
    unit_r_frac: int | None = None
    unit_shift: int | None = None
    unit_rounding: str = "half_even"
    unit_centre_shift: int | None = None
    decor_scale: float | None = None
    cosim_record: int = 10_000
    # optimisation
    optimizer: str = "adam"
    lr: float = 1e-4
    momentum: float = 0.0
    weight_decay: float = 0.0
    lr_schedule: str = "constant"
    sigma: float = 1e-3
    batch_size: int = 64
    epochs: int = 10
    out: str = "runs/default"
    # analog backend
    backend: str = "float"
    preset: str = "IdealizedPreset"
    device: dict = field(default_factory=dict)
    io: dict = field(default_factory=dict)
    drift_times: tuple[float, ...] = (1, 3600, 86400, 2592000, 31536000)
    drift_compensation: bool = True
    fidelity_steps: int = 10
    # the study's instruments (issue 10): the zca oracle's eigenvalue floor, NP's antithetic ±ξ, the probe batch
    zca_eps: float = 1e-3
    antithetic: bool = False
    probe_size: int = 256

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict of every field (tuples become lists; ``device``/``io`` deep-copied)."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def fingerprint(self) -> dict[str, Any]:
        """The fields that must be equal to ``--resume`` a run: all but :data:`RESUMABLE_CHANGES`."""
        return {k: v for k, v in self.to_dict().items() if k not in RESUMABLE_CHANGES}


#: Fields that may differ between a run and its resumption: the run length, where it is written, where the
#: data files live, and post-training/diagnostic settings that do not touch the training trajectory.
RESUMABLE_CHANGES = frozenset(
    {"epochs", "out", "data_dir", "drift_times", "drift_compensation", "fidelity_steps", "cosim_record"}
)

#: One line of help per field (used by the CLI's --help).
FIELD_HELP: dict[str, str] = {
    "dataset": f"dataset: {', '.join(DATASETS)}",
    "data_dir": "folder holding the IDX/CIFAR files for mnist, fashion_mnist, cifar10",
    "seed": "random seed for data split, initial weights, shuffling and perturbations (integer >= 0)",
    "rho": "pairwise input correlation of the 'correlated' dataset",
    "n_features": "number of input features of the 'correlated' dataset",
    "n_samples": "number of samples of the 'correlated' dataset",
    "val_frac": "fraction of the training set held out (seeded) for validation, in [0, 1); 0 disables it",
    "model": "network type: mlp or conv",
    "hidden": "hidden layer widths of the MLP, e.g. 1000,1000,1000,1000",
    "activation": f"hidden activation: {', '.join(ACTIVATIONS)}",
    "conv_channels": "output channels of the conv layers, e.g. 16,32",
    "rule": "learning rule: bp (backprop), fa (feedback alignment), dfa (direct FA), np (node perturbation)",
    "decor": f"decorrelation before every layer: {', '.join(DECORS)} (centre: demean only; zca: oracle)",
    "decor_lr": "learning rate of the decorrelation matrices R (> 0)",
    "sample_frac": "fraction of each batch used for the R update, in (0, 1]",
    "scale_free": "divide the decorrelation step by the mean activity so it does not grow with it",
    "kappa": "weight of the variance term in the 'kappa' decorrelation rule, in [0, 1]",
    "decor_numerics": "decorrelation arithmetic: float (torch) or fixed (the FPGA unit's integer model, bit-exact)",
    "unit": "fixed numerics: an exported unit folder whose manifest.json gives the format (else the --unit-* flags)",
    "unit_width": "fixed numerics: data word width W in bits (8..18)",
    "unit_frac": "fixed numerics: fraction bits F of the data words (default W - 4)",
    "unit_r_width": "fixed numerics: R word width W_R (default r_frac + W - F)",
    "unit_r_frac": "fixed numerics: R fraction bits F_R (default shift + 8)",
    "unit_shift": "fixed numerics: per-sample update eta = 2^-shift (default: from decor_lr, see README)",
    "unit_rounding": f"fixed numerics: rounding mode, one of {', '.join(UNIT_ROUNDINGS)}",
    "unit_centre_shift": "fixed numerics: the unit's running-mean momentum 2^-m, 0 = off (default: float's per "
    "learning sample)",
    "decor_scale": "fixed numerics: power-of-two scale of every layer's input into the unit (default: per layer "
    "from the first batch)",
    "cosim_record": "fixed numerics: record the first K samples each unit sees for 'cosim check' (0 = off)",
    "optimizer": "weight optimiser (float backend): adam or sgd",
    "lr": "learning rate of the weights (> 0)",
    "momentum": "SGD momentum, in [0, 1)",
    "weight_decay": "L2 weight decay (>= 0)",
    "lr_schedule": f"learning-rate schedule over the epochs: {', '.join(LR_SCHEDULES)}",
    "sigma": "node-perturbation noise std added to every pre-activation (> 0)",
    "batch_size": "samples per batch (> 0)",
    "epochs": "number of epochs (> 0); may be raised on --resume",
    "out": "run folder for results.json, checkpoint.pt and plots",
    "backend": "where the weights live: float (torch) or analog (aihwkit tiles)",
    "preset": "aihwkit device preset for the analog backend (see `analogdecorr presets`)",
    "device": "aihwkit device parameters overriding the preset's (a table)",
    "io": "aihwkit forward/backward IO parameters, e.g. out_noise (a table)",
    "drift_times": "seconds after programming at which analog accuracy is evaluated, e.g. 1,3600,86400",
    "drift_compensation": "apply aihwkit's global drift compensation in the drift evaluation",
    "fidelity_steps": "analog NP: steps per epoch whose pulsed update is compared with the exact one (>= 0)",
    "zca_eps": "decor zca: eigenvalue floor of the oracle's whitening, relative to the mean eigenvalue (> 0)",
    "antithetic": "NP: perturb in +xi/-xi pairs (central difference, same forward reads; see rules.py)",
    "probe_size": "samples in NP's gradient-cosine probe batch; 0 turns the per-epoch spectra and cosine off",
}


# ----------------------------------------------------------------------------------------------- TOML
def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML run configuration into a dict (ConfigError if missing, unreadable or not valid TOML)."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"config file {p} does not exist; check the path given to --config")
    if p.is_dir():
        raise ConfigError(f"config file {p} is a folder; pass the path of a .toml file to --config")
    try:
        text = p.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"config file {p} is not UTF-8 text (byte {e.start}); save it as UTF-8") from None
    except OSError as e:
        raise ConfigError(f"config file {p} cannot be read: {e.strerror}; check its permissions") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        msg = str(e)
        m = re.search(r"\(at line (\d+), column (\d+)\)", msg)
        if m:
            where = f"line {m.group(1)}, column {m.group(2)}"
        else:
            where = "the end of the file" if "end of document" in msg else "an unknown position"
        reason = re.sub(r"\s*\(at (line \d+, column \d+|end of document)\)", "", msg).strip()
        reason = reason or "invalid TOML"
        if m is None and getattr(e, "lineno", None):  # Python >= 3.14 keeps the position in attributes
            where = f"line {e.lineno}, column {e.colno}"
        raise ConfigError(
            f"config file {p} is not valid TOML at {where}: {reason}. Fix that line (strings need quotes, "
            "lists are [1, 2], tables are [device])"
        ) from None


def to_toml(cfg: RunConfig) -> str:
    """``cfg`` as TOML text that :func:`load_toml` + :func:`resolve` turn back into an equal RunConfig."""
    lines: list[str] = []
    tables: list[tuple[str, dict]] = []
    for key, value in cfg.to_dict().items():
        if value is None:
            continue  # TOML has no null: an absent key means the default (None)
        if isinstance(value, dict):
            tables.append((key, value))
        else:
            lines.append(f"{key} = {_toml_value(value)}")
    for name, table in tables:
        _toml_table(name, table, lines)
    return "\n".join(lines) + "\n"


def _toml_table(name: str, table: dict, lines: list[str]) -> None:
    lines.append("")
    lines.append(f"[{name}]")
    subtables = []
    for k, v in table.items():
        if isinstance(v, dict):
            subtables.append((f"{name}.{_toml_key(k)}", v))
        elif v is not None:
            lines.append(f"{_toml_key(k)} = {_toml_value(v)}")
    for sub_name, sub in subtables:
        _toml_table(sub_name, sub, lines)


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else _toml_string(key)


def _toml_string(text: str) -> str:
    """A TOML basic string: escape quote, backslash and control characters; keep other Unicode as is."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        text = repr(v)
        return text if any(c in text for c in ".en") else text + ".0"
    if isinstance(v, str):
        return _toml_string(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise ConfigError(f"cannot write {type(v).__name__} value {v!r} as TOML")


# -------------------------------------------------------------------------------------------- resolve
# Defaults that differ on the analog backend, used for every key the user does not set. The tiles are trained
# by their own pulsed SGD (no Adam on a crossbar), so the learning rate is an SGD rate, and NP's σ must exceed
# the forward read noise. Chosen with sims/reproduce_analog.py (sims/README_analog.md has the sweeps):
# - lr 0.02, cosine schedule, pulsed weight decay 1e-2: NP learns twice as fast as at 0.01 and, with the
#   decorrelation below, no NP row on an ideal-IO device loses more than 3 points from its best epoch.
# - decor "offdiag" at decor_lr 3e-5: the paper's `scaled` rule pins ‖z‖ to the raw (uncentred) ‖x‖, which
#   inflates hidden-layer z and with it every NP update; on bounded pulsed devices (ConstantStep) that random-
#   walked |W| into the bounds and collapsed NP+decor at lr 0.02 (.35 → .16). offdiag has no such scale and at
#   3e-5 stays stable on fp, Idealized, ConstantStep and EcRAM while still lowering the inputs' mean
#   |off-diagonal correlation| (mnist1d layer 1: .20 → .11). `--decor scaled` remains available.
# - sigma 0.3: with the presets' noisy IO, sigma 0.1 sits too close to the read noise (NP+decor on digits/EcRAM
#   peaked at .48 and fell to .35) while 0.3 reached .82/.79 (best/last); on ideal IO 0.1 and 0.3 are alike.
ANALOG_DEFAULTS: dict[str, Any] = {
    "optimizer": "sgd",
    "lr": 0.02,
    "lr_schedule": "cosine",
    "weight_decay": 1e-2,
    "sigma": 0.3,
    "decor": "offdiag",
    "decor_lr": 3e-5,
    "hidden": (100,),
    "epochs": 50,
    "out": "runs/analog",
}


def resolve(file_values: Mapping[str, Any] | None, overrides: Mapping[str, Any] | None = None) -> RunConfig:
    """Validated RunConfig from defaults < ``file_values`` (TOML) < ``overrides`` (CLI; None = not given).

    Keys may use '-' or '_'. Values are coerced (e.g. ``hidden="1000,1000"`` → ``(1000, 1000)``,
    ``"1e-4"`` → 1e-4, ``3`` for a float). Unknown keys, wrong types and invalid values raise ConfigError
    naming the key and the fix.
    """
    merged: dict[str, Any] = {}
    for source, values in (("config file", file_values or {}), ("overrides", overrides or {})):
        if not isinstance(values, Mapping):
            raise ConfigError(f"{source} must be a table of key = value pairs, got {type(values).__name__}")
        for raw_key, value in values.items():
            key = str(raw_key).replace("-", "_")
            if key not in _FIELD_NAMES:
                raise ConfigError(choice_message(raw_key, _FIELD_NAMES, "config key", f" in the {source}"))
            if value is None:
                continue  # not given: keep the lower-precedence value
            merged[key] = value
    backend = str(merged.get("backend", RunConfig.backend)).lower()
    if backend == "analog":  # analog runs start from their own defaults (pulsed SGD, σ above read noise)
        merged = {**ANALOG_DEFAULTS, **merged}
    coerced = {key: _COERCE[key](key, value) for key, value in merged.items()}
    cfg = RunConfig(**coerced)
    validate(cfg)
    return cfg


def load_config(path: str | Path | None, overrides: Mapping[str, Any] | None = None) -> RunConfig:
    """Convenience: :func:`resolve` of the TOML file at ``path`` (none if None) with ``overrides``."""
    return resolve(load_toml(path) if path is not None else {}, overrides)


# --------------------------------------------------------------------------------------------- coercion
def _as_int(key: str, v: Any) -> int:
    if isinstance(v, bool):
        raise ConfigError(f"{key} must be an integer, got {v!r}; write e.g. {key} = 64")
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        if math.isfinite(v) and v == int(v):
            return int(v)
        raise ConfigError(f"{key} must be an integer, got {v!r}; write a whole number, e.g. {key} = 64")
    if isinstance(v, str):
        text = v.strip()
        try:
            return int(text)
        except ValueError:
            try:
                f = float(text)
            except ValueError:
                f = math.nan
            if math.isfinite(f) and f == int(f):
                return int(f)
    raise ConfigError(f"{key} must be an integer, got {v!r}; write a whole number, e.g. {key} = 64")


def _as_float(key: str, v: Any) -> float:
    if isinstance(v, bool):
        raise ConfigError(f"{key} must be a number, got {v!r}; write e.g. {key} = 0.001")
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v.strip())
        except ValueError:
            pass
    raise ConfigError(f"{key} must be a number, got {v!r}; write e.g. {key} = 0.001")


def _as_bool(key: str, v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, int) and v in (0, 1):
        return bool(v)
    if isinstance(v, str) and v.strip().lower() in _BOOL_WORDS:
        return _BOOL_WORDS[v.strip().lower()]
    raise ConfigError(f"{key} must be true or false, got {v!r}")


_BOOL_WORDS = {"true": True, "yes": True, "on": True, "1": True}
_BOOL_WORDS.update({"false": False, "no": False, "off": False, "0": False})


def _as_optional_int(key: str, v: Any) -> int | None:
    if isinstance(v, str) and v.strip().lower() in ("", "auto", "none"):
        return None
    return _as_int(key, v)


def _as_optional_float(key: str, v: Any) -> float | None:
    if isinstance(v, str) and v.strip().lower() in ("", "auto", "none"):
        return None
    return _as_float(key, v)


def _as_str(key: str, v: Any) -> str:
    if isinstance(v, Path):
        return str(v)
    if not isinstance(v, str):
        raise ConfigError(f"{key} must be a string, got {v!r}; in TOML write {key} = \"...\" (with quotes)")
    return v.strip()


def _as_choice(key: str, v: Any) -> str:
    return _as_str(key, v).lower()


def _as_optional_str(key: str, v: Any) -> str | None:
    s = _as_str(key, v)
    return s or None


def _split_list(key: str, v: Any) -> list:
    if isinstance(v, str):
        text = v.strip().strip("[]()").strip()
        return [p for p in re.split(r"[,\s]+", text) if p] if text else []
    if isinstance(v, (list, tuple)):
        return list(v)
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return [v]
    raise ConfigError(f"{key} must be a list such as [1000, 1000] (or \"1000,1000\" as a flag), got {v!r}")


def _int_tuple(key: str, v: Any) -> tuple[int, ...]:
    items = _split_list(key, v)
    try:
        return tuple(_as_int(key, x) for x in items)
    except ConfigError:
        raise ConfigError(
            f"{key} must be a list of whole numbers such as [1000, 1000] (or \"1000,1000\"), got {v!r}"
        ) from None


def _float_tuple(key: str, v: Any) -> tuple[float, ...]:
    items = _split_list(key, v)
    try:
        values = [_as_float(key, x) for x in items]
    except ConfigError:
        raise ConfigError(f"{key} must be a list of numbers such as [1, 3600, 86400], got {v!r}") from None
    return tuple(int(x) if x.is_integer() and abs(x) < 2**53 else x for x in values)  # 3600, not 3600.0


def _as_table(key: str, v: Any) -> dict:
    if isinstance(v, str):
        try:
            v = json.loads(v)
        except json.JSONDecodeError:
            pass
    if not isinstance(v, Mapping):
        raise ConfigError(
            f"{key} must be a table of parameters, got {v!r}; in TOML write a [{key}] section with "
            f"key = value lines, on the command line a JSON object such as '{{\"w_noise\": 0.01}}'"
        )
    for k in v:
        if not isinstance(k, str):
            raise ConfigError(f"{key} parameter names must be strings, got {k!r}")
    return copy.deepcopy(dict(v))


_COERCE: dict[str, Callable[[str, Any], Any]] = {
    "dataset": _as_choice,
    "data_dir": _as_optional_str,
    "seed": _as_int,
    "rho": _as_float,
    "n_features": _as_int,
    "n_samples": _as_int,
    "val_frac": _as_float,
    "model": _as_choice,
    "hidden": _int_tuple,
    "activation": _as_choice,
    "conv_channels": _int_tuple,
    "rule": _as_choice,
    "decor": _as_choice,
    "decor_lr": _as_float,
    "sample_frac": _as_float,
    "scale_free": _as_bool,
    "kappa": _as_float,
    "decor_numerics": _as_choice,
    "unit": _as_optional_str,
    "unit_width": _as_int,
    "unit_frac": _as_optional_int,
    "unit_r_width": _as_optional_int,
    "unit_r_frac": _as_optional_int,
    "unit_shift": _as_optional_int,
    "unit_rounding": _as_choice,
    "unit_centre_shift": _as_optional_int,
    "decor_scale": _as_optional_float,
    "cosim_record": _as_int,
    "optimizer": _as_choice,
    "lr": _as_float,
    "momentum": _as_float,
    "weight_decay": _as_float,
    "lr_schedule": _as_choice,
    "sigma": _as_float,
    "batch_size": _as_int,
    "epochs": _as_int,
    "out": _as_str,
    "backend": _as_choice,
    "preset": _as_str,
    "device": _as_table,
    "io": _as_table,
    "drift_times": _float_tuple,
    "drift_compensation": _as_bool,
    "fidelity_steps": _as_int,
    "zca_eps": _as_float,
    "antithetic": _as_bool,
    "probe_size": _as_int,
}
_FIELD_NAMES = tuple(f.name for f in dataclasses.fields(RunConfig))
assert set(_COERCE) == set(_FIELD_NAMES) == set(FIELD_HELP), "every field needs a coercer and a help line"


# ------------------------------------------------------------------------------------------- validation
def validate(cfg: RunConfig) -> None:
    """Raise ConfigError for the first invalid value in ``cfg`` (message: key, value, allowed range, fix)."""
    for key, choices in CHOICES.items():
        check_choice(getattr(cfg, key), choices, key)

    def positive(key: str, example: str) -> None:
        v = getattr(cfg, key)
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
            raise ConfigError(f"{key}={v!r} must be a finite number > 0; set e.g. {key} = {example}")

    for key, example in (("lr", "1e-4"), ("decor_lr", "1e-4"), ("sigma", "1e-3")):
        positive(key, example)
    for key, example in (("epochs", "10"), ("batch_size", "64"), ("n_features", "64"), ("n_samples", "5000")):
        positive(key, example)
    if not (math.isfinite(cfg.sample_frac) and 0 < cfg.sample_frac <= 1):
        raise ConfigError(
            f"sample_frac={cfg.sample_frac!r} must be in (0, 1]: it is the fraction of each batch used to "
            "update R; set e.g. sample_frac = 0.1"
        )
    if not (math.isfinite(cfg.val_frac) and 0 <= cfg.val_frac < 1):
        raise ConfigError(
            f"val_frac={cfg.val_frac!r} must be in [0, 1): the fraction of the training set held out for "
            "validation; set e.g. val_frac = 0.1 (0 disables the validation split)"
        )
    if not (math.isfinite(cfg.kappa) and 0 <= cfg.kappa <= 1):
        raise ConfigError(f"kappa={cfg.kappa!r} must be in [0, 1]; set e.g. kappa = 0.5")
    if not (math.isfinite(cfg.weight_decay) and cfg.weight_decay >= 0):
        raise ConfigError(f"weight_decay={cfg.weight_decay!r} must be a finite number >= 0; 0 disables it")
    if not (math.isfinite(cfg.momentum) and 0 <= cfg.momentum < 1):
        raise ConfigError(f"momentum={cfg.momentum!r} must be in [0, 1); set e.g. momentum = 0.9 (or 0)")
    if cfg.seed < 0:
        raise ConfigError(f"seed={cfg.seed} must be an integer >= 0")
    if cfg.fidelity_steps < 0:
        raise ConfigError(f"fidelity_steps={cfg.fidelity_steps} must be >= 0; 0 skips the fidelity check")
    for key in ("hidden", "conv_channels"):
        widths = getattr(cfg, key)
        if len(widths) == 0:
            raise ConfigError(
                f"{key} is empty: the network needs at least one hidden layer (depth >= 1); "
                f"give widths such as {key} = [1000, 1000]"
            )
        bad = [w for w in widths if w <= 0]
        if bad:
            raise ConfigError(f"{key}={list(widths)} has width {bad[0]} <= 0; every layer width must be >= 1")
    if not math.isfinite(cfg.rho):
        raise ConfigError(f"rho={cfg.rho!r} must be a finite correlation; set e.g. rho = 0.3")
    if cfg.dataset == "correlated":
        lo = -1.0 / (cfg.n_features - 1) if cfg.n_features > 1 else -1.0
        if not lo < cfg.rho < 1:
            raise ConfigError(
                f"rho={cfg.rho!r} is outside ({lo:.4g}, 1) for n_features={cfg.n_features}: only there is "
                "the correlation matrix positive definite; choose rho in that open interval, e.g. 0.3"
            )
    if not cfg.out:
        raise ConfigError("out is empty; give the run folder, e.g. out = \"runs/np_scaled\"")
    if not cfg.preset:
        raise ConfigError("preset is empty; give an aihwkit preset name such as \"IdealizedPreset\"")
    bad_t = [t for t in cfg.drift_times if not (math.isfinite(t) and t > 0)]
    if bad_t:
        raise ConfigError(
            f"drift_times has {bad_t[0]!r}; every time must be a finite number of seconds > 0 "
            "(use an empty list [] to skip the drift evaluation)"
        )
    for key in ("device", "io"):
        if not isinstance(getattr(cfg, key), dict):
            raise ConfigError(f"{key} must be a table of parameters (a [{key}] section in TOML)")
    _validate_fixed(cfg)
    _validate_study(cfg)


def _validate_study(cfg: RunConfig) -> None:
    """The study's instruments: zca_eps, antithetic (NP only) and probe_size."""
    if not (math.isfinite(cfg.zca_eps) and cfg.zca_eps > 0):
        raise ConfigError(f"zca_eps={cfg.zca_eps!r} must be a finite number > 0; set e.g. zca_eps = 1e-3")
    if cfg.antithetic and cfg.rule != "np":
        raise ConfigError(
            f"antithetic = true is a node-perturbation option but rule is {cfg.rule!r}; use rule = \"np\" "
            "or drop antithetic"
        )
    if cfg.probe_size < 0:
        raise ConfigError(f"probe_size={cfg.probe_size} must be >= 0 (samples in the probe batch; 0 = off)")


def _validate_fixed(cfg: RunConfig) -> None:
    """The fixed-numerics keys: a sane scale and record count (the format and the rule are checked where the
    units are built, cosim.unit.plan, which names the offending field)."""
    if cfg.cosim_record < 0:
        raise ConfigError(f"cosim_record={cfg.cosim_record} must be >= 0 (samples to record; 0 = off)")
    if cfg.decor_scale is not None:
        s = cfg.decor_scale
        if not (math.isfinite(s) and s > 0 and math.frexp(s)[0] == 0.5):
            good = 2.0 ** round(math.log2(s)) if math.isfinite(s) and s > 0 else 1.0
            raise ConfigError(
                f"decor_scale={s!r} must be a power of two > 0 (the unit maps activations by a shift); "
                f"use e.g. decor_scale = {good:g}, or leave it unset to choose it from the first batch"
            )
    # decor/scale_free against the unit's rules are checked where the units are built (cosim.unit.plan), so that a
    # config may name decor_numerics = "fixed" before its decor.


# -------------------------------------------------------------------------------------------- resume
#: What a field added later meant in checkpoints written before it existed (when that is not its default): runs
#: before the validation split trained on the whole training set.
BEFORE_FIELD_EXISTED: dict[str, Any] = {"val_frac": 0.0}


def differing_keys(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """Keys whose values differ between two fingerprints (a key missing on one side counts as different,
    except a key absent from ``saved`` whose current value is the default, i.e. a field added later)."""
    defaults = {**RunConfig().to_dict(), **BEFORE_FIELD_EXISTED}
    a, b = _plain(dict(saved)), _plain(dict(current))
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
    a, b = _plain(dict(saved)), _plain(dict(current))
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


def _plain(v: Any) -> Any:
    """Tuples → lists, dicts deep-copied: the JSON/TOML/torch.save-safe form of a config value."""
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, Path):
        return str(v)
    return v
