"""Synthesize an export with Yosys for iCE40, ECP5 and Xilinx 7; count LUTs, flip-flops, DSPs, block RAMs.

Each family runs ``synth_<family>`` on ``decor_unit.v`` followed by ``tee -q -o stats.json stat -json``; the
cell counts are classified per family (e.g. SB_MAC16 / MULT18X18D / DSP48E1 are multiplier blocks). The
numbers sit next to the analytic count: 3d² multiplies per sample on M hardware multipliers at
cycles_per_sample cycles per sample, i.e. a utilisation of 3d² / (M · cycles_per_sample). Scripts, logs and
stats go to ``<export>/synth/<family>/``; a result is reused while the Verilog, the script and the Yosys
version are unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ..choices import check_choices
from ..errors import DataError, EnvironmentMismatchError
from . import tools
from .export import MODULE, load_manifest

# One synthesis command per family: the target device family and why these options.
FAMILIES: dict[str, dict[str, str]] = {
    # -dsp: map multipliers to the UltraPlus SB_MAC16 (16×16) blocks.
    "ice40": {"synth": f"synth_ice40 -dsp -top {MODULE}", "device": "iCE40 UltraPlus"},
    # MULT18X18D blocks are used by default (18×18).
    "ecp5": {"synth": f"synth_ecp5 -top {MODULE}", "device": "Lattice ECP5"},
    # 7 series (DSP48E1, 25×18); flattened; no I/O buffers since the unit is a core inside a larger design.
    "xilinx": {
        "synth": f"synth_xilinx -family xc7 -flatten -noiopad -top {MODULE}",
        "device": "Xilinx 7 series",
    },
}
SCRIPT = """# Written by analogdecorr hdl report; run from the export directory: yosys -s {script}
read_verilog {module}.v
{synth}
tee -q -o {stats} stat -json
"""

# Cell classes (a cell counts in the first class whose pattern matches its type).
CELL_CLASSES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("luts", re.compile(r"^(SB_LUT4|LUT4|LUT[1-6])$")),
    ("ffs", re.compile(r"^(SB_DFF\w*|TRELLIS_FF|FD[CPRS]E(_1)?|FD\w*)$")),
    ("carry", re.compile(r"^(SB_CARRY|CCU2C|CARRY4)$")),
    ("dsp", re.compile(r"^(SB_MAC16|MULT18X18D|DSP48E1)$")),
    ("bram", re.compile(r"^(SB_RAM40_4K\w*|DP16KD|PDPW16KD|RAMB18E1|RAMB36E1)$")),
    ("lutram", re.compile(r"^(TRELLIS_DPR16X4|RAM\d+X\d+\w*|RAM\d+M\w*|SRL16E|SRLC32E)$")),
    ("muxes", re.compile(r"^(PFUMX|L6MUX21|MUXF[78])$")),
)


def check_families(families: Any) -> tuple[str, ...]:
    """Validate a family list (a tuple or comma-separated string); ConfigError naming the closest family."""
    return check_choices(families, FAMILIES, "FPGA family")


def yosys_missing() -> str | None:
    """None when yosys is on PATH, else a one-line reason with the fix."""
    return tools.tool_missing("yosys", "install Yosys (Debian/Ubuntu: apt-get install yosys)")


def classify(cells_by_type: dict[str, int]) -> dict[str, int]:
    """Counts per class (luts, ffs, carry, dsp, bram, lutram, muxes, other) from Yosys' num_cells_by_type."""
    counts = {name: 0 for name, _ in CELL_CLASSES}
    counts["other"] = 0
    for cell, n in cells_by_type.items():
        cell = cell.lstrip("\\$")
        for name, pat in CELL_CLASSES:
            if pat.match(cell):
                counts[name] += int(n)
                break
        else:
            counts["other"] += int(n)
    return counts


def parse_stats(stats: dict[str, Any]) -> dict[str, Any]:
    """The design totals of a ``stat -json`` dump, classified."""
    design = stats.get("design")
    if design is None:  # a single module: its numbers are the design's
        modules = list(stats.get("modules", {}).values())
        if len(modules) != 1:
            raise DataError(
                "yosys stat -json gave no design totals; the synthesis did not flatten the design"
            )
        design = modules[0]
    by_type = {k.lstrip("\\"): int(v) for k, v in design.get("num_cells_by_type", {}).items()}
    out: dict[str, Any] = classify(by_type)
    out["cells"] = int(design.get("num_cells", sum(by_type.values())))
    out["unmapped_memories"] = int(design.get("num_memories", 0))
    out["cells_by_type"] = dict(sorted(by_type.items()))
    return out


def _synth_one(
    export_dir: Path, family: str, timeout: float, use_cache: bool, version: str
) -> dict[str, Any]:
    rel = Path("synth") / family
    work = export_dir / rel
    script = SCRIPT.format(
        script=rel / "synth.ys", module=MODULE, synth=FAMILIES[family]["synth"], stats=rel / "stats.json"
    )
    key = hashlib.sha256(
        (export_dir / f"{MODULE}.v").read_bytes() + script.encode() + version.encode()
    ).hexdigest()
    cached = work / "result.json"
    if use_cache and cached.is_file():
        try:
            old = json.loads(cached.read_text())
            if old.get("key") == key:
                res = old["result"]
                res["cached"] = True
                return res
        except (OSError, json.JSONDecodeError, KeyError):
            pass
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    (work / "synth.ys").write_text(script)
    t0 = time.perf_counter()
    cmd = ["yosys", "-q", "-l", str(rel / "yosys.log"), "-s", str(rel / "synth.ys")]
    tools.run_tool(
        cmd, export_dir, timeout, f"yosys synthesis for {family}",
        on_timeout="raise the timeout or report a smaller unit", see=str(work / "yosys.log"),
    )
    seconds = time.perf_counter() - t0
    try:
        stats = json.loads((work / "stats.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(
            f"yosys ({family}) wrote no readable stats.json ({e}); see {work / 'yosys.log'}"
        ) from None
    res = parse_stats(stats)
    res.update(
        {
            "device": FAMILIES[family]["device"],
            "command": FAMILIES[family]["synth"],
            "seconds": round(seconds, 2),
            "cached": False,
        }
    )
    tmp = cached.with_suffix(".tmp")
    tmp.write_text(json.dumps({"key": key, "result": res}, indent=2) + "\n")
    os.replace(tmp, cached)
    return res


def report(
    export_dir: str | Path,
    families: Any = tuple(FAMILIES),
    *,
    jobs: int | None = None,
    use_cache: bool = True,
    timeout: float = 3600.0,
) -> dict[str, Any]:
    """Synthesize the export for each family (in parallel, `jobs` at a time) and return the resource numbers.

    Result: ``{"export_dir", "arch", "format", "multipliers" (M, the unit's), "multiplies_per_sample" (3d²),
    "cycles_per_sample", "utilisation" (3d² / (M · cycles_per_sample)), "yosys", "families": {family: {"luts",
    "ffs", "carry", "dsp", "bram", "lutram", "muxes", "other", "cells", "cells_by_type",
    "dsp_matches_multipliers", "seconds", "cached", ...}}}``. A missing Yosys raises EnvironmentMismatchError
    naming the install command.
    """
    fams = check_families(families)
    export_dir = Path(export_dir).resolve()
    manifest = load_manifest(export_dir)
    reason = yosys_missing()
    if reason:
        raise EnvironmentMismatchError(reason)
    version = tools.tool_version("yosys", "-V")
    workers = max(1, min(len(fams), jobs or os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {f: pool.submit(_synth_one, export_dir, f, timeout, use_cache, version) for f in fams}
        results = {f: fut.result() for f, fut in futures.items()}
    m = manifest.get("multipliers")
    for res in results.values():
        res["dsp_matches_multipliers"] = m is not None and res["dsp"] == m
    d = manifest["format"]["size"]
    cps = manifest.get("cycles_per_sample")
    return {
        "export_dir": str(export_dir),
        "arch": manifest.get("arch"),
        "format": manifest.get("format"),
        "multipliers": m,
        "multiplies_per_sample": 3 * d * d,
        "cycles_per_sample": cps,
        "latency": manifest.get("latency"),
        "utilisation": 3 * d * d / (m * cps) if m and cps else None,
        "yosys": version,
        "families": results,
    }
