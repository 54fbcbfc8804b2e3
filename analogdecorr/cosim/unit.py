"""The unit a fixed-numerics run co-simulates: one ``UnitFormat`` per decorrelated layer.

The format comes from the run's ``unit_*`` keys (defaults derived below) or, with ``unit = DIR``, from an
exported unit's ``manifest.json``; the layer's width is the format's size d. Derived defaults, chosen so that a
user who tuned a float run gets the matching unit:

- shift s: the float rule takes one step of ``decor_lr`` with the mean over its k = num_update_rows(batch,
  sample_frac) learning rows; the unit takes k steps of η = 2^−s, one per row. So η = decor_lr / k and
  s = round(−log2(decor_lr / k)) (``shift_for_lr``). The unit learns from its words, x · scale: its step in
  real units is η · scale², so a layer whose first batch chose scale 2^e gets s_l = s + 2e (``format_for``
  with the scale; exact, the scale is a power of two), and learns at decor_lr / k whatever its input range.
- centre shift m: the float running mean moves by momentum 0.1 per batch; the unit's mean moves by 2^−m per
  learning sample, k per batch, so (1 − 2^−m)^k = 0.9 gives m = round(−log2(1 − 0.9^(1/k))) (k = 7: m = 6).
- frac F = W − 4 (three integer bits; the per-layer scale puts the first batch at most at 1/2 of that range),
  r_frac F_R = s + 8 (an update z·e·η of 2^−8 still moves R by one LSB), r_width W_R = F_R + W − F (both follow
  the layer's s_l when derived).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..decor import num_update_rows
from ..errors import ConfigError, FormatError
from ..fixed.format import MAX_INTERMEDIATE_BITS, UNIT_RULES, UnitFormat
from ..fixed.format import shift_for_lr as format_shift_for_lr

#: Momentum of the float Decorrelator's running mean per batch (``Decorrelator.mean_momentum`` default).
FLOAT_MEAN_MOMENTUM = 0.1
MANIFEST = "manifest.json"


def rows_per_update(cfg: Any) -> int:
    """k: the rows of a full batch that the float rule (and so the unit) learns from."""
    return num_update_rows(cfg.batch_size, cfg.sample_frac)


def shift_for_lr(decor_lr: float, rows: int, max_shift: int = MAX_INTERMEDIATE_BITS) -> int:
    """The unit's shift s (η = 2^−s per sample) matching a float decor_lr applied as a mean over ``rows``
    (``fixed.format.shift_for_lr``: s = round(log2(k / lr)))."""
    return format_shift_for_lr(decor_lr, rows, max_shift=max_shift)


def centre_shift_for_momentum(rows: int, momentum: float = FLOAT_MEAN_MOMENTUM) -> int:
    """m with (1 − 2^−m)^rows ≈ 1 − momentum: the float running mean's pace, per learning sample."""
    per_sample = 1.0 - (1.0 - momentum) ** (1.0 / rows)
    return min(16, max(1, round(-math.log2(per_sample))))


@dataclass(frozen=True)
class UnitPlan:
    """Everything but the size of every layer's unit, and where it came from (recorded in results.json)."""

    fields: dict[str, Any]
    source: str  # "flags" or the manifest's path
    shift_derived: bool = False
    notes: dict[str, Any] = field(default_factory=dict)
    #: the fields derived from the shift (r_frac, r_width): they follow a layer's scaled shift
    follow_shift: tuple[str, ...] = ()

    def format_for(self, size: int, layer: str, scale: float = 1.0) -> UnitFormat:
        """The unit of a layer of width ``size`` whose words are x · ``scale``: ConfigError naming the layer if a
        manifest's d differs, or if the scaled shift is not a legal format."""
        values = dict(self.fields)
        if "size" in values and values["size"] != size:
            raise ConfigError(
                f"{layer} has width {size} but the unit in {self.source} has d = {values['size']}; export a "
                f"unit with size {size} for it, or give the format by flags (--unit-width ...) instead of --unit"
            )
        values["size"] = size
        if self.shift_derived and scale != 1.0:
            shift = values["shift"] + round(2 * math.log2(scale))
            if shift < 0:
                raise ConfigError(
                    f"{layer}: its input scale {scale:g} makes the unit's step 2^{-shift} > 1 per sample at this "
                    "decor_lr; lower decor_lr or give --unit-shift"
                )
            values["shift"] = shift
            if "r_frac" in self.follow_shift:
                values["r_frac"] = max(shift + 8, values["frac"])
            if "r_width" in self.follow_shift:
                values["r_width"] = values["r_frac"] + values["width"] - values["frac"]
        try:
            return UnitFormat.from_dict(values)
        except FormatError as e:
            raise ConfigError(f"the unit format for {layer} is invalid: {e}") from None

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "fields": dict(self.fields), "shift_derived": self.shift_derived,
                **self.notes}


def plan(cfg: Any) -> UnitPlan:
    """The unit plan of a ``decor_numerics = "fixed"`` (or ``"stream"``) run (ConfigError for a bad manifest or
    rule)."""
    if cfg.decor not in UNIT_RULES:
        raise ConfigError(
            f"decor_numerics = {cfg.decor_numerics} runs the FPGA unit's rule, and the unit implements the rules "
            f"{', '.join(UNIT_RULES)}, not decor {cfg.decor!r}; use --decor offdiag (or whiten), "
            "or --decor-numerics float"
        )
    if cfg.scale_free:
        raise ConfigError(
            f"scale_free has no counterpart in the unit (decor_numerics = {cfg.decor_numerics}); drop scale_free "
            "or use --decor-numerics float"
        )
    if cfg.unit:
        return _from_manifest(cfg, Path(cfg.unit))
    k = rows_per_update(cfg)
    w = cfg.unit_width
    f = cfg.unit_frac if cfg.unit_frac is not None else w - 4
    derived = cfg.unit_shift is None
    s = shift_for_lr(cfg.decor_lr, k, cfg.unit_r_frac or MAX_INTERMEDIATE_BITS) if derived else cfg.unit_shift
    fr = cfg.unit_r_frac if cfg.unit_r_frac is not None else max(s + 8, f)
    wr = cfg.unit_r_width if cfg.unit_r_width is not None else fr + w - f
    m = cfg.unit_centre_shift if cfg.unit_centre_shift is not None else centre_shift_for_momentum(k)
    values: dict[str, Any] = {"width": w, "frac": f, "r_width": wr, "r_frac": fr, "shift": s,
                              "rounding": cfg.unit_rounding, "rule": cfg.decor, "centre_shift": m}
    notes = {"rows_per_update": k, "eta": 2.0**-s, "eta_float_per_row": cfg.decor_lr / k}
    follow = tuple(name for name, given in (("r_frac", cfg.unit_r_frac), ("r_width", cfg.unit_r_width))
                   if given is None)
    return UnitPlan(values, "flags", derived, notes, follow)


def read_manifest_format(folder: Path) -> dict[str, Any]:
    """The ``format`` table of an exported unit's manifest (ConfigError if missing or corrupt)."""
    path = folder / MANIFEST
    if not path.is_file():
        why = "does not exist" if not folder.exists() else f"has no {MANIFEST}"
        raise ConfigError(
            f"--unit {folder} {why}; give a folder written by 'analogdecorr hdl export -o DIR', or drop --unit "
            "and give the format by flags (--unit-width ...)"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path} is corrupt ({type(e).__name__}); export the unit again") from None
    fmt = data.get("format") if isinstance(data, dict) else None
    if not isinstance(fmt, dict):
        raise ConfigError(f"{path} has no 'format' table; it is not a unit export; export the unit again")
    return fmt


def _from_manifest(cfg: Any, folder: Path) -> UnitPlan:
    values = read_manifest_format(folder)
    try:
        UnitFormat.from_dict(values)  # validates every field (and rejects unknown ones)
    except FormatError as e:
        raise ConfigError(f"{folder / MANIFEST} holds an invalid unit format: {e}") from None
    rule = values.get("rule", "offdiag")
    if rule != cfg.decor:
        raise ConfigError(
            f"the unit in {folder} implements rule {rule!r} but this run's decor is {cfg.decor!r}; "
            f"use --decor {rule} or export a unit with rule {cfg.decor}"
        )
    values = {k: v for k, v in values.items() if k != "delayed"}  # an old manifest's false (validated above)
    return UnitPlan(values, str(folder), False, {"rows_per_update": rows_per_update(cfg)})
