"""Run configuration: one declaration per field, TOML in and out, precedence (flags > file > defaults), checks.

Every :class:`RunConfig` field is declared once, with :func:`setting`: its type (the annotation, which picks how
a TOML value or a command-line string is coerced), its default, one line of help, its choices (imported from
the module that implements them) and its check. The CLI flags, :data:`FIELD_HELP`, :data:`CHOICES`,
:func:`validate` and :meth:`RunConfig.fingerprint` all read those declarations.

A backend may start from its own defaults (``backends.base.DEFAULTS``: the analog backend's pulsed SGD);
checkpoint.py compares the fingerprints of a run and its resumption. Every problem raises
:class:`~analogdecorr.errors.ConfigError` with a message that names the key, the bad value and the fix, so the
CLI can print it as one line.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from .backends.base import BACKENDS
from .backends.base import DEFAULTS as BACKEND_DEFAULTS
from .backends.float import OPTIMIZERS
from .choices import check_choice, choice_message
from .data import DATASETS, INPUT_SCALES
from .decor import CENTRINGS
from .errors import ConfigError
from .fixed.format import ROUNDING_MODES
from .models import ACTIVATIONS, DECOR_NUMERICS, DECORS, MODELS, UNIT_NUMERICS
from .rules import RULES

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

#: The lr schedules train.lr_factor implements (listed here because train imports this module).
LR_SCHEDULES = ("constant", "cosine", "step", "exponential")

#: A field's check: ``check(key, value, cfg)`` raises ConfigError (key, value, fix) if ``value`` is invalid.
Check = Callable[[str, Any, "RunConfig"], None]


def setting(default: Any, help: str, *, choices: Sequence[str] | None = None, check: Check | None = None,
            resumable: bool = False) -> Any:
    """Declare a RunConfig field: default, one-line ``help`` (for --help), the valid ``choices`` (None: any
    value of the field's type), a ``check`` of its value, and whether it may change on ``--resume``
    (``resumable``: the run length, where it is written, and settings that do not touch the training
    trajectory)."""
    metadata = {"help": help, "choices": tuple(choices) if choices is not None else None, "check": check,
                "resumable": resumable}
    if isinstance(default, dict):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=metadata)
    return field(default=default, metadata=metadata)


# --------------------------------------------------------------------------------------------- checks
def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def positive(example: str) -> Check:
    """A finite number > 0."""
    def check(key: str, v: Any, cfg: RunConfig) -> None:
        if not (_finite(v) and v > 0):
            raise ConfigError(f"{key}={v!r} must be a finite number > 0; set e.g. {key} = {example}")
    return check


def at_least_zero(fix: str, what: str = "a finite number") -> Check:
    """``what`` (a finite number, an integer) >= 0; ``fix`` says what 0 means or what to set."""
    def check(key: str, v: Any, cfg: RunConfig) -> None:
        if not (_finite(v) and v >= 0):
            raise ConfigError(f"{key}={v!r} must be {what} >= 0; {fix}")
    return check


def _np_only(key: str, v: Any, cfg: RunConfig) -> None:
    if v and cfg.rule != "np":
        raise ConfigError(f"{key} = true is a node-perturbation option but rule is {cfg.rule!r}; use rule = \"np\" "
                          f"or drop {key}")


def _np_draws(key: str, v: Any, cfg: RunConfig) -> None:
    if not (_finite(v) and v >= 1 and int(v) == v):
        raise ConfigError(f"{key}={v!r} must be a whole number >= 1; 1 is plain NP, e.g. {key} = 4 averages 4 draws")
    if v != 1 and cfg.rule != "np":
        raise ConfigError(f"{key} = {v} is a node-perturbation option but rule is {cfg.rule!r}; use rule = \"np\" or "
                          f"drop {key}")


def _pulsed_local_only(key: str, v: Any, cfg: RunConfig) -> None:
    at_least_zero("0 writes one pulse-train row per sample", "an integer")(key, v, cfg)
    if v and (cfg.backend != "analog" or cfg.rule == "bp"):
        raise ConfigError(f"{key} = {v} shapes the analog tiles' pulsed update of a local rule but backend is "
                          f"{cfg.backend!r} and rule {cfg.rule!r}; use backend = \"analog\" with rule np, fa or dfa, "
                          f"or drop {key}")


def _float_decor_only(key: str, v: str, cfg: RunConfig) -> None:
    if v != "constant" and cfg.decor_numerics in UNIT_NUMERICS:
        raise ConfigError(f"{key} = {v!r} but the FPGA unit's step is a fixed shift (decor_numerics = "
                          f"{cfg.decor_numerics!r}); use {key} = \"constant\" or decor_numerics = \"float\"")


def within(interval: str, fix: str) -> Check:
    """A finite number in ``interval``, written as in maths: "(0, 1]", "[0, 1)"; ``fix`` ends the message."""
    m = re.fullmatch(r"([\[(])\s*([^,]+),\s*([^\])]+)([\])])", interval)
    assert m, interval
    lo, hi = float(m.group(2)), float(m.group(3))
    lo_open, hi_open = m.group(1) == "(", m.group(4) == ")"

    def check(key: str, v: Any, cfg: RunConfig) -> None:
        inside = _finite(v) and (lo < v if lo_open else lo <= v) and (v < hi if hi_open else v <= hi)
        if not inside:
            raise ConfigError(f"{key}={v!r} must be in {interval}{fix}")
    return check


def _layer_widths(key: str, widths: tuple[int, ...], cfg: RunConfig) -> None:
    if len(widths) == 0:
        raise ConfigError(
            f"{key} is empty: the network needs at least one hidden layer (depth >= 1); "
            f"give widths such as {key} = [1000, 1000]"
        )
    bad = [w for w in widths if w <= 0]
    if bad:
        raise ConfigError(f"{key}={list(widths)} has width {bad[0]} <= 0; every layer width must be >= 1")


def _correlation(key: str, rho: float, cfg: RunConfig) -> None:
    """rho is finite; for the 'correlated' dataset inside the interval where the correlation matrix is positive
    definite, which depends on n_features."""
    if not math.isfinite(rho):
        raise ConfigError(f"rho={rho!r} must be a finite correlation; set e.g. rho = 0.3")
    if cfg.dataset == "correlated":
        lo = -1.0 / (cfg.n_features - 1) if cfg.n_features > 1 else -1.0
        if not lo < rho < 1:
            raise ConfigError(
                f"rho={rho!r} is outside ({lo:.4g}, 1) for n_features={cfg.n_features}: only there is "
                "the correlation matrix positive definite; choose rho in that open interval, e.g. 0.3"
            )


def _not_empty(fix: str) -> Check:
    def check(key: str, v: str, cfg: RunConfig) -> None:
        if not v:
            raise ConfigError(f"{key} is empty; {fix}")
    return check


def _drift_times(key: str, times: tuple[float, ...], cfg: RunConfig) -> None:
    bad = [t for t in times if not (math.isfinite(t) and t > 0)]
    if bad:
        raise ConfigError(
            f"{key} has {bad[0]!r}; every time must be a finite number of seconds > 0 "
            "(use an empty list [] to skip the drift evaluation)"
        )


def _table(key: str, v: Any, cfg: RunConfig) -> None:
    if not isinstance(v, dict):
        raise ConfigError(f"{key} must be a table of parameters (a [{key}] section in TOML)")


def _power_of_two(key: str, s: float | None, cfg: RunConfig) -> None:
    if s is not None and not (math.isfinite(s) and s > 0 and math.frexp(s)[0] == 0.5):
        good = 2.0 ** round(math.log2(s)) if math.isfinite(s) and s > 0 else 1.0
        raise ConfigError(
            f"{key}={s!r} must be a power of two > 0 (the unit maps activations by a shift); "
            f"use e.g. {key} = {good:g}, or leave it unset to choose it from the first batch"
        )


# ------------------------------------------------------------------------------------------- the fields
@dataclass(frozen=True)
class RunConfig:
    """One training run. Defaults are the README's main job (NP + scaled decorrelation, 4×1000 MLP, digits).

    Immutable: derive variants with ``dataclasses.replace`` or :func:`resolve`. Lists are tuples;
    ``device`` and ``io`` are plain dicts of aihwkit parameters (copied by :func:`resolve`; do not mutate).
    """

    # data
    dataset: str = setting("digits", f"dataset: {', '.join(DATASETS)}", choices=DATASETS)
    data_dir: str | None = setting(None, "folder holding the IDX/CIFAR files for mnist, fashion_mnist, cifar10",
                                   resumable=True)
    seed: int = setting(0, "random seed for data split, initial weights, shuffling and perturbations "
                           "(integer >= 0)", check=at_least_zero("set e.g. seed = 0", "an integer"))
    rho: float = setting(0.3, "pairwise input correlation of the 'correlated' dataset", check=_correlation)
    n_features: int = setting(64, "number of input features of the 'correlated' dataset", check=positive("64"))
    n_samples: int = setting(5000, "number of samples of the 'correlated' dataset", check=positive("5000"))
    val_frac: float = setting(
        0.1, "fraction of the training set held out (seeded) for validation, in [0, 1); 0 disables it",
        check=within("[0, 1)", ": the fraction of the training set held out for validation; set e.g. "
                     "val_frac = 0.1 (0 disables the validation split)"))
    input_scale: str = setting("feature", "input scaling from training statistics: feature (per-feature "
                                          "standardisation), global (one mean and std), max (x / max)",
                               choices=INPUT_SCALES)
    # model
    model: str = setting("mlp", f"network type: {' or '.join(MODELS)}", choices=MODELS)
    hidden: tuple[int, ...] = setting((1000, 1000, 1000, 1000),
                                      "hidden layer widths of the MLP, e.g. 1000,1000,1000,1000",
                                      check=_layer_widths)
    activation: str = setting("leaky_relu", f"hidden activation: {', '.join(ACTIVATIONS)}", choices=ACTIVATIONS)
    conv_channels: tuple[int, ...] = setting((16, 32), "output channels of the conv layers, e.g. 16,32",
                                             check=_layer_widths)
    # learning rule and decorrelation
    rule: str = setting("np", "learning rule: bp (backprop), fa (feedback alignment), dfa (direct FA), "
                              "np (node perturbation)", choices=RULES)
    decor: str = setting("scaled", f"decorrelation before every layer: {', '.join(DECORS)} (zca: the oracle)",
                         choices=DECORS)
    decor_lr: float = setting(1e-4, "learning rate of the decorrelation matrices R (> 0)", check=positive("1e-4"))
    decor_lr_schedule: str = setting(
        "constant", f"schedule of decor_lr over the epochs: {', '.join(LR_SCHEDULES)} (as lr_schedule)",
        choices=LR_SCHEDULES, check=_float_decor_only)
    sample_frac: float = setting(
        0.1, "fraction of each batch used for the R update, in (0, 1]",
        check=within("(0, 1]", ": it is the fraction of each batch used to update R; set e.g. sample_frac = 0.1"))
    scale_free: bool = setting(False, "divide the decorrelation step by the mean activity so it does not grow "
                                      "with it")
    kappa: float = setting(0.5, "weight of the variance term in the 'kappa' decorrelation rule, in [0, 1]",
                           check=within("[0, 1]", "; set e.g. kappa = 0.5"))
    decor_centring: str = setting("batch", "centring in training: batch (batch mean) or running (running mean: the "
                                  "FPGA unit's form)", choices=CENTRINGS)
    # fixed-point decorrelation (co-simulation of the FPGA unit; None = derived, see analogdecorr.cosim.unit;
    # the format and the rule are checked where the units are built, cosim.unit.plan, which names the field)
    decor_numerics: str = setting("float", "decorrelation: float (torch), stream (the FPGA unit's schedule in "
                                           "float64) or fixed (its integer model)", choices=DECOR_NUMERICS)
    unit: str | None = setting(None, "fixed numerics: an exported unit folder whose manifest.json gives the "
                                     "format (else the --unit-* flags)")
    unit_width: int = setting(16, "fixed numerics: data word width W in bits (8..18)")
    unit_frac: int | None = setting(None, "fixed numerics: fraction bits F of the data words (default W - 4)")
    unit_r_width: int | None = setting(None, "fixed numerics: R word width W_R (default r_frac + W - F)")
    unit_r_frac: int | None = setting(None, "fixed numerics: R fraction bits F_R (default shift + 8)")
    unit_shift: int | None = setting(None, "fixed numerics: per-sample update eta = 2^-shift (default: from "
                                           "decor_lr, see README)")
    unit_rounding: str = setting("half_even", f"fixed numerics: rounding mode, one of {', '.join(ROUNDING_MODES)}",
                                 choices=ROUNDING_MODES)
    unit_centre_shift: int | None = setting(None, "fixed numerics: the unit's running-mean momentum 2^-m, 0 = off "
                                                  "(default: float's per learning sample)")
    decor_scale: float | None = setting(None, "fixed numerics: power-of-two scale of every layer's input into the "
                                              "unit (default: per layer from the first batch)", check=_power_of_two)
    decor_headroom: int = setting(1, "fixed numerics: bits between a layer's first-batch peak |x| and the word "
                                     "range (its scale)",
                                  check=at_least_zero("it is a number of bits; the default is 1", "an integer"))
    cosim_record: int = setting(10_000, "fixed numerics: record the first K samples each unit sees for 'cosim "
                                        "check' (0 = off)",
                                check=at_least_zero("it is the number of samples to record; 0 = off", "an integer"),
                                resumable=True)
    # optimisation
    optimizer: str = setting("adam", f"weight optimiser (float backend): {' or '.join(OPTIMIZERS)}",
                             choices=OPTIMIZERS)
    lr: float = setting(1e-4, "learning rate of the weights (> 0)", check=positive("1e-4"))
    momentum: float = setting(0.0, "SGD momentum, in [0, 1)",
                              check=within("[0, 1)", "; set e.g. momentum = 0.9 (or 0)"))
    weight_decay: float = setting(0.0, "L2 weight decay (>= 0)", check=at_least_zero("0 disables it"))
    lr_schedule: str = setting("constant", f"learning-rate schedule over the epochs: {', '.join(LR_SCHEDULES)}",
                               choices=LR_SCHEDULES)
    sigma: float = setting(1e-3, "node-perturbation noise std added to every pre-activation (> 0)",
                           check=positive("1e-3"))
    batch_size: int = setting(64, "samples per batch (> 0)", check=positive("64"))
    epochs: int = setting(10, "number of epochs (> 0); may be raised on --resume", check=positive("10"),
                          resumable=True)
    out: str = setting("runs/default", "run folder for results.json, checkpoint.pt and plots",
                       check=_not_empty("give the run folder, e.g. out = \"runs/np_scaled\""), resumable=True)
    # analog backend
    backend: str = setting("float", "where the weights live: float (torch) or analog (aihwkit tiles)",
                           choices=BACKENDS)
    preset: str = setting("IdealizedPreset", "aihwkit device preset for the analog backend (see `analogdecorr "
                                             "presets`)",
                          check=_not_empty("give an aihwkit preset name such as \"IdealizedPreset\""))
    device: dict = setting({}, "aihwkit device parameters overriding the preset's (a table)", check=_table)
    io: dict = setting({}, "aihwkit forward/backward IO parameters, e.g. out_noise (a table)", check=_table)
    drift_times: tuple[float, ...] = setting(
        (1, 3600, 86400, 2592000, 31536000),
        "seconds after programming at which analog accuracy is evaluated, e.g. 1,3600,86400",
        check=_drift_times, resumable=True)
    drift_compensation: bool = setting(True, "apply aihwkit's global drift compensation in the drift evaluation",
                                       resumable=True)
    fidelity_steps: int = setting(10, "analog NP: steps per epoch whose pulsed update is compared with the exact "
                                      "one (>= 0)",
                                  check=at_least_zero("0 skips the fidelity check", "an integer"), resumable=True)
    # the study's instruments (issue 10): the zca oracle's eigenvalue floor, NP's antithetic ±ξ, the probe batch
    zca_eps: float = setting(1e-3, "decor zca: eigenvalue floor of the oracle's whitening, relative to the mean "
                                   "eigenvalue (> 0)", check=positive("1e-3"))
    antithetic: bool = setting(False, "NP: perturb in +xi/-xi pairs (central difference, same forward reads)",
                               check=_np_only)
    perturbations: int = setting(1, "NP: K xi draws per sample averaged into one update row (K x the forward reads, "
                                    "~1/K the variance)", check=_np_draws)
    update_rank: int = setting(0, "analog local rules: write the batch's d^T z as its top r singular terms; 0: "
                                  "one pulse row per sample", check=_pulsed_local_only)
    probe_size: int = setting(256, "samples in NP's gradient-cosine probe batch; 0 turns the per-epoch spectra "
                                   "and cosine off", check=at_least_zero("0 turns the diagnostics off", "an integer"))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict of every field (tuples become lists; ``device``/``io`` deep-copied)."""
        return {f.name: to_plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def fingerprint(self) -> dict[str, Any]:
        """The fields that must be equal to ``--resume`` a run: all but the resumable ones
        (:data:`RESUMABLE_CHANGES`); checkpoint.py compares two fingerprints."""
        return {k: v for k, v in self.to_dict().items() if k not in RESUMABLE_CHANGES}


_FIELDS: dict[str, dataclasses.Field] = {f.name: f for f in dataclasses.fields(RunConfig)}
_FIELD_NAMES = tuple(_FIELDS)
#: One line of help per field (the CLI's --help).
FIELD_HELP: dict[str, str] = {name: f.metadata["help"] for name, f in _FIELDS.items()}
#: Fields with a fixed set of values, and those values.
CHOICES: dict[str, tuple[str, ...]] = {name: f.metadata["choices"] for name, f in _FIELDS.items()
                                       if f.metadata["choices"] is not None}
#: Fields that may differ between a run and its resumption (``resumable=True``).
RESUMABLE_CHANGES = frozenset(name for name, f in _FIELDS.items() if f.metadata["resumable"])


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
    """``cfg`` as TOML text that :func:`load_toml` + :func:`resolve` turn back into an equal RunConfig.

    TOML has no null: keys whose value is None (the default of every optional field) are left out."""
    try:
        return tomli_w.dumps(_without_none(cfg.to_dict()))
    except TypeError as e:  # e.g. a null inside a list of a device table
        raise ConfigError(f"cannot write this configuration as TOML ({e}); drop that value") from None


def _without_none(table: dict[str, Any]) -> dict[str, Any]:
    return {k: _without_none(v) if isinstance(v, dict) else v for k, v in table.items() if v is not None}


# -------------------------------------------------------------------------------------------- resolve
def resolve(file_values: Mapping[str, Any] | None, overrides: Mapping[str, Any] | None = None) -> RunConfig:
    """Validated RunConfig from defaults < backend defaults < ``file_values`` (TOML) < ``overrides`` (CLI;
    None = not given).

    Keys may use '-' or '_'. Values are coerced (e.g. ``hidden="1000,1000"`` → ``(1000, 1000)``,
    ``"1e-4"`` → 1e-4, ``3`` for a float). Unknown keys, wrong types and invalid values raise ConfigError
    naming the key and the fix. The backend's defaults (``backends.base.DEFAULTS``) fill every key neither
    source sets.
    """
    merged: dict[str, Any] = {}
    for source, values in (("config file", file_values or {}), ("overrides", overrides or {})):
        if not isinstance(values, Mapping):
            raise ConfigError(f"{source} must be a table of key = value pairs, got {type(values).__name__}")
        for raw_key, value in values.items():
            key = str(raw_key).replace("-", "_")
            if key not in _FIELDS:
                raise ConfigError(choice_message(raw_key, _FIELD_NAMES, "config key", f" in the {source}"))
            if value is None:
                continue  # not given: keep the lower-precedence value
            merged[key] = value
    backend = _as_choice("backend", merged["backend"]) if "backend" in merged else RunConfig.backend
    merged = {**BACKEND_DEFAULTS.get(backend, {}), **merged}
    cfg = RunConfig(**{key: _COERCE[key](key, value) for key, value in merged.items()})
    validate(cfg)
    return cfg


def load_config(path: str | Path | None, overrides: Mapping[str, Any] | None = None) -> RunConfig:
    """Convenience: :func:`resolve` of the TOML file at ``path`` (none if None) with ``overrides``."""
    return resolve(load_toml(path) if path is not None else {}, overrides)


def validate(cfg: RunConfig) -> None:
    """Raise ConfigError for the first invalid value in ``cfg``: a choice not among the field's choices, or a
    value its check rejects (message: key, value, allowed range, fix)."""
    for name, f in _FIELDS.items():
        value = getattr(cfg, name)
        if f.metadata["choices"] is not None:
            check_choice(value, f.metadata["choices"], name)
        if f.metadata["check"] is not None:
            f.metadata["check"](name, value, cfg)


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


_BOOL_WORDS = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False,
               "0": False}


def _as_bool(key: str, v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, int) and v in (0, 1):
        return bool(v)
    if isinstance(v, str) and v.strip().lower() in _BOOL_WORDS:
        return _BOOL_WORDS[v.strip().lower()]
    raise ConfigError(f"{key} must be true or false, got {v!r}")


def _unset(v: Any) -> bool:
    """A command-line spelling of "not set" for an optional field."""
    return isinstance(v, str) and v.strip().lower() in ("", "auto", "none")


def _as_optional_int(key: str, v: Any) -> int | None:
    return None if _unset(v) else _as_int(key, v)


def _as_optional_float(key: str, v: Any) -> float | None:
    return None if _unset(v) else _as_float(key, v)


def _as_str(key: str, v: Any) -> str:
    if isinstance(v, Path):
        return str(v)
    if not isinstance(v, str):
        raise ConfigError(f"{key} must be a string, got {v!r}; in TOML write {key} = \"...\" (with quotes)")
    return v.strip()


def _as_choice(key: str, v: Any) -> str:
    return _as_str(key, v).lower()


def _as_optional_str(key: str, v: Any) -> str | None:
    return _as_str(key, v) or None


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


#: How a value is coerced, by the field's annotation (choices are also lower-cased).
_COERCE_BY_TYPE: dict[str, Callable[[str, Any], Any]] = {
    "str": _as_str,
    "str | None": _as_optional_str,
    "int": _as_int,
    "int | None": _as_optional_int,
    "float": _as_float,
    "float | None": _as_optional_float,
    "bool": _as_bool,
    "tuple[int, ...]": _int_tuple,
    "tuple[float, ...]": _float_tuple,
    "dict": _as_table,
}


def _coercer(f: dataclasses.Field) -> Callable[[str, Any], Any]:
    if f.metadata.get("choices") is not None:
        return _as_choice
    if f.type not in _COERCE_BY_TYPE:
        raise TypeError(f"RunConfig.{f.name}: no coercion for type {f.type!r}; add it to _COERCE_BY_TYPE")
    return _COERCE_BY_TYPE[f.type]


_COERCE = {name: _coercer(f) for name, f in _FIELDS.items()}


def to_plain(v: Any) -> Any:
    """Tuples → lists, dicts deep-copied, Paths → str: the JSON/TOML/torch.save-safe form of a config value."""
    if isinstance(v, (list, tuple)):
        return [to_plain(x) for x in v]
    if isinstance(v, dict):
        return {str(k): to_plain(x) for k, x in v.items()}
    if isinstance(v, Path):
        return str(v)
    return v
