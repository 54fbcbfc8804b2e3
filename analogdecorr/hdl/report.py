"""The resource report of an export: Yosys synthesis per FPGA family (``synth.py``) and, for iCE40, nextpnr place
and route on a UP5K (``pnr.py``), next to the unit's analytic numbers.

The numbers sit next to the analytic count: 3d² multiplies per sample on M hardware multipliers at
cycles_per_sample cycles per sample, i.e. a utilisation of 3d² / (M · cycles_per_sample), and throughput
Fmax / cycles_per_sample. Families run in parallel; each step reuses its cached result (``tools.cached_result``,
the cache ``verify`` uses too) while its inputs are unchanged. ``report`` returns a typed ``Report``;
``Report.to_dict()`` is what ``--json`` prints.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, EnvironmentMismatchError
from . import tools
from .export import load_manifest
from .pnr import (
    PNR_EXE,
    PNR_FAMILY,
    PNR_FREQ,
    PnrResult,
    does_not_fit,
    nextpnr_missing,
    parse_utilisation,
    place_and_route,
    pnr_harness,
)
from .synth import FAMILIES, SynthResult, check_families, classify, parse_stats, synthesize, yosys_missing

__all__ = [
    "FAMILIES", "PnrResult", "Report", "SynthResult", "check_families", "classify", "does_not_fit",
    "nextpnr_missing", "parse_stats", "parse_utilisation", "pnr_harness", "report", "yosys_missing",
]


@dataclass
class Report:
    """The unit's analytic numbers and the per-family results (``families[f].pnr``: iCE40 place and route)."""

    export_dir: str
    lanes: int | None
    format: dict[str, Any]
    multipliers: int | None
    multiplies_per_sample: int
    cycles_per_sample: int | None
    ideal_cycles_per_sample: float | None
    storage_bits: int | None
    latency: int | None
    utilisation: float | None
    yosys: str
    nextpnr: str | None
    families: dict[str, SynthResult] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in vars(self).items() if k != "families"}
        out["families"] = {f: r.to_dict() for f, r in self.families.items()}
        return out


def _family(
    export_dir: Path, family: str, timeout: float, use_cache: bool, versions: dict[str, str],
    ports: list[dict[str, Any]], pnr: bool, freq: float,
) -> SynthResult:
    """One family: synthesis, then (iCE40, unless ``pnr`` is False) place and route."""
    res = synthesize(export_dir, family, ports, timeout=timeout, use_cache=use_cache, version=versions["yosys"])
    if pnr and family == PNR_FAMILY:
        res.pnr = place_and_route(export_dir, freq=freq, timeout=timeout, use_cache=use_cache,
                                  version=versions["nextpnr"])
        res.pnr.harness = res.pnr_harness
    return res


def report(
    export_dir: str | Path,
    families: Any = tuple(FAMILIES),
    *,
    jobs: int | None = None,
    use_cache: bool = True,
    timeout: float = 3600.0,
    pnr: bool = True,
    freq: float = PNR_FREQ,
) -> Report:
    """Synthesize the export for each family (in parallel, `jobs` at a time) and return the resource numbers.

    ``Report.families[family]`` is a ``SynthResult`` (luts, ffs, carry, dsp, bram, spram, lutram, muxes, other,
    cells, cells_by_type, unmapped_memories, dsp_matches_multipliers, seconds, cached, pnr). ``pnr`` (ice40
    only, None elsewhere or with ``pnr=False``) is a ``PnrResult`` for a UP5K at target ``freq`` MHz: fits,
    routed, error (e.g. "does not fit: needs 9 SB_MAC16, the UP5K has 8"), fmax_mhz, meets_target,
    samples_per_second (Fmax / cycles_per_sample), lcs, dsp, bram (and ``*_available``), dsp_matches_yosys,
    harness, seconds, cached. A missing Yosys or nextpnr-ice40 raises EnvironmentMismatchError naming the
    install command.
    """
    fams = check_families(families)
    try:
        freq = float(freq)
    except (TypeError, ValueError):
        freq = float("nan")
    if not (math.isfinite(freq) and freq > 0):
        raise ConfigError(f"place-and-route target frequency {freq} MHz must be a positive number, e.g. 48")
    export_dir = Path(export_dir).resolve()
    manifest = load_manifest(export_dir)
    reason = yosys_missing()
    if reason:
        raise EnvironmentMismatchError(reason)
    pnr = pnr and PNR_FAMILY in fams
    if pnr:
        reason = nextpnr_missing()
        if reason:
            raise EnvironmentMismatchError(reason)
    versions = {
        "yosys": tools.tool_version("yosys", "-V"),
        "nextpnr": tools.tool_version(PNR_EXE, "--version") if pnr else "",
    }
    ports = manifest.get("ports") or []
    workers = max(1, min(len(fams), jobs or os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {
            f: pool.submit(_family, export_dir, f, timeout, use_cache, versions, ports, pnr, freq) for f in fams
        }
        results = {f: fut.result() for f, fut in futures.items()}
    m = manifest.get("multipliers")
    d = manifest["format"]["size"]
    cps = manifest.get("cycles_per_sample")
    for res in results.values():
        res.dsp_matches_multipliers = m is not None and res.dsp == m
        p = res.pnr
        if p is not None:
            p.samples_per_second = p.fmax_mhz * 1e6 / cps if p.fmax_mhz and cps else None
            p.dsp_matches_yosys = p.dsp == res.dsp if p.utilisation else None
    return Report(
        export_dir=str(export_dir),
        lanes=manifest.get("lanes"),
        format=manifest.get("format"),
        multipliers=m,
        multiplies_per_sample=3 * d * d,
        cycles_per_sample=cps,
        ideal_cycles_per_sample=manifest.get("ideal_cycles_per_sample"),
        storage_bits=manifest.get("storage_bits"),
        latency=manifest.get("latency"),
        utilisation=3 * d * d / (m * cps) if m and cps else None,
        yosys=versions["yosys"],
        nextpnr=versions["nextpnr"] or None,
        families=results,
    )
