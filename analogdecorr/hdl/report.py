"""Synthesize an export with Yosys for iCE40, ECP5 and Xilinx 7; count LUTs, flip-flops, DSPs, block RAMs.

Each family runs ``synth_<family>`` on ``decor_unit.v`` followed by ``tee -q -o stats.json stat -json``; the
cell counts are classified per family (e.g. SB_MAC16 / MULT18X18D / DSP48E1 are multiplier blocks). The
numbers sit next to the analytic count: 3d² multiplies per sample on M hardware multipliers at
cycles_per_sample cycles per sample, i.e. a utilisation of 3d² / (M · cycles_per_sample). Scripts, logs and
stats go to ``<export>/synth/<family>/``; a result is reused while the Verilog, the script and the Yosys
version are unchanged.

iCE40 is also placed and routed: the ice40 script writes a JSON netlist of the unit inside a three-pin I/O
harness (the unit's own ports outnumber the pins of any iCE40 package) and nextpnr-ice40 routes it on an
UltraPlus UP5K (the part whose SB_MAC16 blocks ``synth_ice40 -dsp`` maps to). Its JSON report gives the
achieved Fmax and the used logic cells, DSPs and block RAMs; Fmax / cycles_per_sample is the unit's throughput
in samples per second. A design that does not fit the UP5K is reported as such, from nextpnr's utilisation
lines. Logs and the report go to ``<export>/pnr/ice40/``; a result is reused while the netlist, the command and
the nextpnr version are unchanged.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ..choices import check_choices
from ..errors import ConfigError, DataError, EnvironmentMismatchError
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
{extra}"""

# Place and route (iCE40 only, with nextpnr-ice40): the UltraPlus part and package, the top module around the
# unit, the default target clock (48 MHz, the UP5K's internal oscillator) and a fixed placer seed (repeatable).
PNR_FAMILY = "ice40"
PNR_EXE = "nextpnr-ice40"
PNR_PART = ("--up5k", "--package", "sg48")
PNR_DEVICE = "iCE40 UP5K (sg48)"
PNR_CHIP = "UP5K"
PNR_TOP = "decor_pnr"
PNR_FREQ = 48.0
PNR_SEED = 1
# The ice40 script's second half: the synthesized unit inside the harness, flattened, as nextpnr's input.
PNR_SCRIPT = """# place-and-route netlist: the unit inside the I/O harness {harness}
read_verilog {harness}
hierarchy -top {top}
flatten
write_json {netlist}
"""
# nextpnr bel types: the result key and the name a hardware user knows.
PNR_RESOURCES: dict[str, tuple[str, str]] = {
    "ICESTORM_LC": ("lcs", "logic cells"),
    "ICESTORM_DSP": ("dsp", "SB_MAC16"),
    "ICESTORM_RAM": ("bram", "SB_RAM40_4K"),
    "ICESTORM_SPRAM": ("spram", "SB_SPRAM256KA"),
    "SB_IO": ("io", "I/O cells"),
    "SB_GB": ("global_buffers", "SB_GB global buffers"),
}
# "Info: \t ICESTORM_DSP:     9/    8   112%" in nextpnr's "Device utilisation" block.
_UTIL_LINE = re.compile(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+\d+%", re.M)
_ERROR_LINE = re.compile(r"^ERROR: (.*)$", re.M)

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


def check_families(families: Any) -> tuple[str, ...]:
    """Validate a family list (a tuple or comma-separated string); ConfigError naming the closest family."""
    return check_choices(families, FAMILIES, "FPGA family")


def yosys_missing() -> str | None:
    """None when yosys is on PATH, else a one-line reason with the fix."""
    return tools.tool_missing("yosys", "install Yosys (Debian/Ubuntu: apt-get install yosys)")


def nextpnr_missing() -> str | None:
    """None when nextpnr-ice40 is on PATH, else a one-line reason with the fix."""
    return tools.tool_missing(
        PNR_EXE,
        "install nextpnr (Debian/Ubuntu: apt-get install nextpnr-ice40) or skip place and route with --no-pnr",
    )


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


def _cached(path: Path, key: str, use_cache: bool) -> dict[str, Any] | None:
    """The result stored at ``path`` if it was made from the same inputs (``key``), marked cached; else None."""
    if not (use_cache and path.is_file()):
        return None
    try:
        old = json.loads(path.read_text())
        if old.get("key") == key:
            res = old["result"]
            res["cached"] = True
            return res
    except (OSError, json.JSONDecodeError, KeyError, TypeError):
        pass
    return None


def _cached_or_fresh(work: Path, key: str, use_cache: bool) -> dict[str, Any] | None:
    """The cached result in ``work`` for these inputs; otherwise None, with ``work`` emptied for a new run."""
    res = _cached(work / "result.json", key, use_cache)
    if res is None:
        if work.exists():
            shutil.rmtree(work)
        work.mkdir(parents=True)
    return res


def _store(path: Path, key: str, res: dict[str, Any]) -> None:
    """Write a result with its input key atomically (a killed run never leaves a half-written cache)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"key": key, "result": res}, indent=2) + "\n")
    os.replace(tmp, path)


def pnr_harness(ports: list[dict[str, Any]], clock: str = "clk") -> tuple[str, dict[str, int]]:
    """Verilog of the place-and-route top ``decor_pnr(clk, si, so)`` around the unit, and its size.

    The unit's ports (x and z elements, the R port, status and two 32-bit counters: 174 bits besides the
    clock at W = 16, W_R = 28, d = 8) outnumber the 39 pins of the sg48 package, so nextpnr cannot place the
    unit alone. The harness drives every unit input bit from one shift chain (an SB_DFF per bit, fed from pin
    ``si``) and folds every output bit into pin ``so`` through an XOR tree with a register after each 4-input
    LUT. Every unit input and output is thus one register (plus at most one LUT) away, as inside a design that
    embeds the unit, and every output stays observable, so no logic is dropped. Written in iCE40 primitives so
    it needs no second synthesis; size: ``{"inputs", "outputs", "ffs", "luts"}``.
    """
    names = {p["name"] for p in ports}
    if clock not in names:
        raise DataError(f"the unit has no '{clock}' port (ports: {', '.join(sorted(names))}); re-export it")
    ins = [p for p in ports if p["direction"] == "input" and p["name"] != clock]
    outs = [p for p in ports if p["direction"] == "output"]
    n_in, n_out = sum(int(p["width"]) for p in ins), sum(int(p["width"]) for p in outs)
    if n_in == 0 or n_out == 0:
        raise DataError("the unit has no data inputs or no outputs; re-export it")
    lines = [
        "// Written by analogdecorr hdl report: the place-and-route top. Every input bit of the unit comes from",
        "// a shift chain fed by pin si; every output bit is folded into pin so by a registered XOR tree.",
        f"module {PNR_TOP} (input clk, input si, output so);",
        f"  wire [{n_in - 1}:0] chain;",
        f"  wire [{n_out - 1}:0] t0;",
        "  SB_DFF c0 (.C(clk), .D(si), .Q(chain[0]));",
        "  genvar i;",
        f"  generate for (i = 1; i < {n_in}; i = i + 1) begin : shift",
        "    SB_DFF ff (.C(clk), .D(chain[i - 1]), .Q(chain[i]));",
        "  end endgenerate",
    ]
    conns, lo_in, lo_out = [f"    .{clock}(clk)"], 0, 0
    for p in ports:
        w = int(p["width"])
        if p["name"] == clock:
            continue
        if p["direction"] == "input":
            conns.append(f"    .{p['name']}(chain[{lo_in + w - 1}:{lo_in}])")
            lo_in += w
        else:
            conns.append(f"    .{p['name']}(t0[{lo_out + w - 1}:{lo_out}])")
            lo_out += w
    lines += [f"  {MODULE} unit (", ",\n".join(conns), "  );"]
    level, width, nodes = 0, n_out, 0
    while width > 1:
        groups = (width + 3) // 4
        pad = 4 * groups - width
        padded = f"{{{pad}'b0, t{level}}}" if pad else f"t{level}"
        lines += [
            f"  wire [{4 * groups - 1}:0] p{level} = {padded};",
            f"  wire [{groups - 1}:0] t{level + 1};",
            f"  generate for (i = 0; i < {groups}; i = i + 1) begin : xor{level}",
            "    wire x;",
            "    SB_LUT4 #(.LUT_INIT(16'h6996)) lut (",  # the XOR of I0..I3
            f"      .I0(p{level}[4 * i]), .I1(p{level}[4 * i + 1]), .I2(p{level}[4 * i + 2]), "
            f".I3(p{level}[4 * i + 3]), .O(x));",
            f"    SB_DFF ff (.C(clk), .D(x), .Q(t{level + 1}[i]));",
            "  end endgenerate",
        ]
        nodes += groups
        level, width = level + 1, groups
    lines += [f"  assign so = t{level}[0];", "endmodule", ""]
    return "\n".join(lines), {"inputs": n_in, "outputs": n_out, "ffs": n_in + nodes, "luts": nodes}


def _synth_one(
    export_dir: Path, family: str, timeout: float, use_cache: bool, version: str, ports: list[dict[str, Any]]
) -> dict[str, Any]:
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
    key = hashlib.sha256(
        (export_dir / f"{MODULE}.v").read_bytes() + script.encode() + harness.encode() + version.encode()
    ).hexdigest()
    res = _cached_or_fresh(work, key, use_cache)
    if res is not None:
        return res
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
    res = parse_stats(stats)
    res.update(
        {
            "device": FAMILIES[family]["device"],
            "command": FAMILIES[family]["synth"],
            "seconds": round(seconds, 2),
            "cached": False,
        }
    )
    if harness_size is not None:
        res["pnr_harness"] = harness_size
    _store(work / "result.json", key, res)
    return res


def parse_utilisation(log: str) -> dict[str, dict[str, int]]:
    """``{bel type: {"used", "available"}}`` from the last "Device utilisation" block of a nextpnr log."""
    util: dict[str, dict[str, int]] = {}
    for bel, used, avail in _UTIL_LINE.findall(log):
        util[bel] = {"used": int(used), "available": int(avail)}
    return util


def does_not_fit(util: dict[str, dict[str, int]]) -> str | None:
    """"does not fit: needs 9 SB_MAC16, the UP5K has 8" for every over-full resource, or None if all fit."""
    over = [
        f"needs {u['used']} {PNR_RESOURCES.get(bel, (bel, bel))[1]}, the {PNR_CHIP} has {u['available']}"
        for bel, u in util.items()
        if u["used"] > u["available"]
    ]
    return "does not fit: " + "; ".join(over) if over else None


def _pnr_result(util: dict[str, dict[str, int]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for bel, (name, _) in PNR_RESOURCES.items():
        u = util.get(bel, {"used": 0, "available": 0})
        out[name], out[f"{name}_available"] = u["used"], u["available"]
    return out


def _pnr_one(export_dir: Path, timeout: float, use_cache: bool, version: str, freq: float) -> dict[str, Any]:
    """Place and route the ice40 netlist with nextpnr-ice40; Fmax, utilisation, or why it does not fit."""
    rel = Path("pnr") / PNR_FAMILY
    work = export_dir / rel
    netlist = Path("synth") / PNR_FAMILY / f"{PNR_TOP}.json"
    cmd = [
        PNR_EXE, *PNR_PART, "--json", str(netlist), "--top", PNR_TOP, "--freq", f"{freq:g}",
        "--timing-allow-fail", "--seed", str(PNR_SEED), "--report", str(rel / "report.json"),
        "-l", str(rel / "nextpnr.log"), "-q",
    ]
    try:
        key = hashlib.sha256(
            (export_dir / netlist).read_bytes() + " ".join(cmd).encode() + version.encode()
        ).hexdigest()
    except OSError as e:
        raise DataError(
            f"yosys wrote no place-and-route netlist ({e}); see {export_dir / 'synth' / PNR_FAMILY}"
        ) from None
    res = _cached_or_fresh(work, key, use_cache)
    if res is not None:
        return res
    t0 = time.perf_counter()
    proc = tools.run_tool(
        cmd, export_dir, timeout, "nextpnr-ice40 place and route", check=False,
        on_timeout="raise the timeout, report a smaller unit or skip place and route with --no-pnr",
    )
    seconds = time.perf_counter() - t0
    try:
        log = (work / "nextpnr.log").read_text(errors="replace")
    except OSError:
        log = proc.stderr or proc.stdout or ""
    util = parse_utilisation(log)
    res = {
        "device": PNR_DEVICE,
        "command": " ".join(cmd),
        "target_mhz": freq,
        "fits": does_not_fit(util) is None if util else None,
        "routed": False,
        "error": None,
        "clock": None,
        "fmax_mhz": None,
        "meets_target": None,
        **_pnr_result(util),
        "utilisation": util,
        "seconds": round(seconds, 2),
        "cached": False,
    }
    if proc.returncode != 0:
        errors = _ERROR_LINE.findall(log) or (proc.stderr or proc.stdout).strip().splitlines()[-1:]
        res["error"] = does_not_fit(util) or (
            f"nextpnr-ice40 failed (exit {proc.returncode}): {' | '.join(errors) or 'no message'}; "
            f"see {work / 'nextpnr.log'}"
        )
    else:
        try:
            rep = json.loads((work / "report.json").read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise DataError(f"nextpnr-ice40 wrote no readable report.json ({e}); see {work / 'nextpnr.log'}") from None
        util = {
            bel: {"used": int(u["used"]), "available": int(u["available"])}
            for bel, u in rep.get("utilization", {}).items()
        }
        fmax = rep.get("fmax", {})
        if not fmax:
            raise DataError(f"nextpnr-ice40 reported no clock frequency; see {work / 'nextpnr.log'}")
        clock = min(fmax, key=lambda c: fmax[c]["achieved"])  # the slowest clock domain (there is one)
        res.update(_pnr_result(util))
        res.update(
            {
                "fits": True,
                "routed": True,
                "clock": clock,
                "fmax_mhz": round(float(fmax[clock]["achieved"]), 3),
                "meets_target": float(fmax[clock]["achieved"]) >= freq,
                "utilisation": util,
            }
        )
    _store(work / "result.json", key, res)
    return res


def _family(
    export_dir: Path, family: str, timeout: float, use_cache: bool, versions: dict[str, str],
    ports: list[dict[str, Any]], pnr: bool, freq: float,
) -> dict[str, Any]:
    """One family: synthesis, then (iCE40, unless ``pnr`` is False) place and route; the pnr dict or None."""
    res = _synth_one(export_dir, family, timeout, use_cache, versions["yosys"], ports)
    res["pnr"] = None
    if pnr and family == PNR_FAMILY:
        res["pnr"] = _pnr_one(export_dir, timeout, use_cache, versions["nextpnr"], freq)
        res["pnr"]["harness"] = res.get("pnr_harness")
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
) -> dict[str, Any]:
    """Synthesize the export for each family (in parallel, `jobs` at a time) and return the resource numbers.

    Result: ``{"export_dir", "lanes", "format", "multipliers" (M, the unit's), "multiplies_per_sample" (3d²),
    "cycles_per_sample", "ideal_cycles_per_sample" (3d²/M), "utilisation" (3d² / (M · cycles_per_sample)),
    "storage_bits", "yosys", "nextpnr", "families": {family: {"luts", "ffs", "carry", "dsp", "bram", "spram",
    "lutram", "muxes", "other", "cells", "cells_by_type", "unmapped_memories",
    "dsp_matches_multipliers", "seconds", "cached", "pnr", ...}}}``. ``pnr`` (ice40 only, None elsewhere or
    with ``pnr=False``) holds nextpnr-ice40's numbers for a UP5K at target ``freq`` MHz: ``"fits", "routed",
    "error"`` (e.g. "does not fit: needs 9 SB_MAC16, the UP5K has 8"), ``"fmax_mhz", "meets_target",
    "samples_per_second"`` (Fmax / cycles_per_sample), ``"lcs", "dsp", "bram"`` (and ``*_available``),
    ``"dsp_matches_yosys", "harness", "seconds", "cached"``. A missing Yosys or nextpnr-ice40 raises
    EnvironmentMismatchError naming the install command.
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
        res["dsp_matches_multipliers"] = m is not None and res["dsp"] == m
        p = res["pnr"]
        if p is not None:
            p["samples_per_second"] = p["fmax_mhz"] * 1e6 / cps if p["fmax_mhz"] and cps else None
            p["dsp_matches_yosys"] = p["dsp"] == res["dsp"] if p["utilisation"] else None
    return {
        "export_dir": str(export_dir),
        "lanes": manifest.get("lanes"),
        "format": manifest.get("format"),
        "multipliers": m,
        "multiplies_per_sample": 3 * d * d,
        "cycles_per_sample": cps,
        "ideal_cycles_per_sample": manifest.get("ideal_cycles_per_sample"),
        "storage_bits": manifest.get("storage_bits"),
        "latency": manifest.get("latency"),
        "utilisation": 3 * d * d / (m * cps) if m and cps else None,
        "yosys": versions["yosys"],
        "nextpnr": versions["nextpnr"] or None,
        "families": results,
    }
