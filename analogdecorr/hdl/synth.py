"""Yosys synthesis of an export for iCE40, ECP5 and Xilinx 7: LUTs, flip-flops, DSPs, block RAMs per family.

Each family runs ``synth_<family>`` on ``decor_unit.v`` followed by ``tee -q -o stats.json stat -json``; the
cell counts are classified per family (SB_MAC16 / MULT18X18D / DSP48E1 are multiplier blocks; SB_RAM40_4K /
DP16KD / RAMB18E1 block RAMs). The ice40 script also writes the place-and-route netlist (the unit inside
``pnr.pnr_harness``). Scripts, logs and stats go to ``<export>/synth/<family>/``; a result is reused
(``tools.cached_result``) while the Verilog, the script and the Yosys version are unchanged.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..choices import check_choices
from ..errors import DataError
from . import tools
from .export import MODULE
from .pnr import PNR_FAMILY, PNR_SCRIPT, PNR_TOP, PnrResult, pnr_harness

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
{extra}"""

# Cell classes (a cell counts in the first class whose pattern matches its type).
CELL_CLASSES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("luts", re.compile(r"^(SB_LUT4|LUT4|LUT[1-6])$")),
    ("ffs", re.compile(r"^(SB_DFF\w*|TRELLIS_FF|FD[CPRS]E(_1)?|FD\w*)$")),
    ("carry", re.compile(r"^(SB_CARRY|CCU2C|CARRY4)$")),
    ("dsp", re.compile(r"^(SB_MAC16|MULT18X18D|DSP48E1)$")),
    ("bram", re.compile(r"^(SB_RAM40_4K\w*|DP16KD|PDPW16KD|RAMB18E1|RAMB36E1|RAMB18E2|RAMB36E2)$")),
    ("spram", re.compile(r"^SB_SPRAM256KA$")),
    ("lutram", re.compile(r"^(TRELLIS_DPR16X4|RAM\d+X\d+\w*|RAM\d+M\w*|SRL16E|SRLC32E)$")),
    ("muxes", re.compile(r"^(PFUMX|L6MUX21|MUXF[78])$")),
)


@dataclass
class SynthResult:
    """One family's Yosys result: cell classes (see ``classify``), the raw cell counts, where it came from; for
    ice40 also the I/O harness size and (after place and route) nextpnr's ``pnr``."""

    family: str
    device: str
    command: str
    luts: int = 0
    ffs: int = 0
    carry: int = 0
    dsp: int = 0
    bram: int = 0
    spram: int = 0
    lutram: int = 0
    muxes: int = 0
    other: int = 0
    cells: int = 0
    unmapped_memories: int = 0
    cells_by_type: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    cached: bool = False
    pnr_harness: dict[str, int] | None = None
    dsp_matches_multipliers: bool | None = None
    pnr: PnrResult | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["pnr"] = None if self.pnr is None else self.pnr.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SynthResult:
        data = dict(data)
        pnr = data.pop("pnr", None)
        return cls(**data, pnr=None if pnr is None else PnrResult.from_dict(pnr))


def check_families(families: Any) -> tuple[str, ...]:
    """Validate a family list (a tuple or comma-separated string); ConfigError naming the closest family."""
    return check_choices(families, FAMILIES, "FPGA family")


def yosys_missing() -> str | None:
    """None when yosys is on PATH, else a one-line reason with the fix."""
    return tools.tool_missing("yosys", "install Yosys (Debian/Ubuntu: apt-get install yosys)")


def classify(cells_by_type: dict[str, int]) -> dict[str, int]:
    """Counts per class (luts, ffs, carry, dsp, bram, spram, lutram, muxes, other) from Yosys' num_cells_by_type.

    ``bram``: block RAMs (SB_RAM40_4K, DP16KD/PDPW16KD, RAMB18/36); ``spram``: iCE40 SB_SPRAM256KA;
    ``lutram``: memories built from LUTs (TRELLIS_DPR16X4, RAM32M/RAM64M, SRL16E...).
    """
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


def synthesize(
    export_dir: Path, family: str, ports: list[dict[str, Any]], *, timeout: float = 3600.0,
    use_cache: bool = True, version: str | None = None,
) -> SynthResult:
    """Run Yosys for `family` on the export's Verilog (`ports`: the manifest's, for the ice40 harness)."""
    version = tools.tool_version("yosys", "-V") if version is None else version
    rel = Path("synth") / family
    work = export_dir / rel
    extra, harness, harness_size = "", "", None
    if family == PNR_FAMILY:  # also the netlist nextpnr routes, whether or not this run places and routes
        harness, harness_size = pnr_harness(ports)
        extra = PNR_SCRIPT.format(harness=rel / f"{PNR_TOP}.v", top=PNR_TOP, netlist=rel / f"{PNR_TOP}.json")
    script = SCRIPT.format(
        script=rel / "synth.ys", module=MODULE, synth=FAMILIES[family]["synth"], stats=rel / "stats.json",
        extra=extra,
    )
    key = tools.input_key((export_dir / f"{MODULE}.v").read_bytes(), script, harness, version)
    old = tools.cached_result(work, key, use_cache)
    if old is not None:
        return SynthResult.from_dict({**old, "cached": True})
    (work / "synth.ys").write_text(script)
    if harness:
        (work / f"{PNR_TOP}.v").write_text(harness)
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
    res = SynthResult(
        family=family, device=FAMILIES[family]["device"], command=FAMILIES[family]["synth"],
        **parse_stats(stats), seconds=round(seconds, 2), pnr_harness=harness_size,
    )
    tools.store_result(work, key, res.to_dict())
    return res
