"""Sweeps: a TOML sweep file (spec), its trials run on Ray resuming from disk (engine), tables and a plot
(summary). ``analogdecorr sweep SWEEP.toml`` is the command line; the studies in sims/ use the same API."""

from __future__ import annotations

from .spec import SweepSpec, Trial, config_key, load_sweep, parse_sweep

__all__ = ["SweepSpec", "Trial", "config_key", "load_sweep", "parse_sweep", "run_sweep"]


def __getattr__(name: str):  # the engine imports Ray and tomli_w: only when a sweep runs
    if name == "run_sweep":
        from .engine import run_sweep

        return run_sweep
    raise AttributeError(name)
