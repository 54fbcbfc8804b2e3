"""Place and route (iCE40) with nextpnr-ice40 on an UltraPlus UP5K: Fmax, utilisation, or why it does not fit.

The ice40 synthesis (``synth.py``) writes a JSON netlist of the unit inside a three-pin I/O harness
(``pnr_harness``: the unit's own ports outnumber the pins of any iCE40 package) and nextpnr-ice40 routes it on
the UP5K (the part whose SB_MAC16 blocks ``synth_ice40 -dsp`` maps to). Its JSON report gives the achieved
Fmax and the used logic cells, DSPs and block RAMs; Fmax / cycles_per_sample is the unit's throughput in
samples per second. A design that does not fit is reported as such, from nextpnr's utilisation lines. Logs and
the report go to ``<export>/pnr/ice40/``; a result is reused (``tools.cached_result``) while the netlist, the
command and the nextpnr version are unchanged.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DataError
from . import tools
from .export import MODULE

PNR_FAMILY = "ice40"
PNR_EXE = "nextpnr-ice40"
PNR_PART = ("--up5k", "--package", "sg48")
PNR_DEVICE = "iCE40 UP5K (sg48)"
PNR_CHIP = "UP5K"
PNR_TOP = "decor_pnr"
PNR_FREQ = 48.0  # the UP5K's internal oscillator
PNR_SEED = 1  # a fixed placer seed: repeatable
# The ice40 synthesis script's second half: the synthesized unit inside the harness, flattened, as nextpnr's input.
PNR_SCRIPT = """# place-and-route netlist: the unit inside the I/O harness {harness}
read_verilog {harness}
hierarchy -top {top}
flatten
write_json {netlist}
"""
# nextpnr bel types: the result field and the name a hardware user knows.
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


@dataclass
class PnrResult:
    """nextpnr-ice40's verdict on the UP5K: routed (Fmax) or why not, and what it used of each resource."""

    device: str
    command: str
    target_mhz: float
    fits: bool | None
    routed: bool
    error: str | None
    clock: str | None
    fmax_mhz: float | None
    meets_target: bool | None
    lcs: int = 0
    lcs_available: int = 0
    dsp: int = 0
    dsp_available: int = 0
    bram: int = 0
    bram_available: int = 0
    spram: int = 0
    spram_available: int = 0
    io: int = 0
    io_available: int = 0
    global_buffers: int = 0
    global_buffers_available: int = 0
    utilisation: dict[str, dict[str, int]] = field(default_factory=dict)
    seconds: float = 0.0
    cached: bool = False
    harness: dict[str, int] | None = None
    samples_per_second: float | None = None
    dsp_matches_yosys: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PnrResult:
        return cls(**data)


def nextpnr_missing() -> str | None:
    """None when nextpnr-ice40 is on PATH, else a one-line reason with the fix."""
    return tools.tool_missing(
        PNR_EXE,
        "install nextpnr (Debian/Ubuntu: apt-get install nextpnr-ice40) or skip place and route with --no-pnr",
    )


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


def _resources(util: dict[str, dict[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for bel, (name, _) in PNR_RESOURCES.items():
        u = util.get(bel, {"used": 0, "available": 0})
        out[name], out[f"{name}_available"] = u["used"], u["available"]
    return out


def place_and_route(
    export_dir: Path, *, freq: float = PNR_FREQ, timeout: float = 3600.0, use_cache: bool = True,
    version: str | None = None,
) -> PnrResult:
    """Route ``<export>/synth/ice40/decor_pnr.json`` (written by the ice40 synthesis) on the UP5K at ``freq`` MHz."""
    version = tools.tool_version(PNR_EXE, "--version") if version is None else version
    rel = Path("pnr") / PNR_FAMILY
    work = export_dir / rel
    netlist = Path("synth") / PNR_FAMILY / f"{PNR_TOP}.json"
    cmd = [
        PNR_EXE, *PNR_PART, "--json", str(netlist), "--top", PNR_TOP, "--freq", f"{freq:g}",
        "--timing-allow-fail", "--seed", str(PNR_SEED), "--report", str(rel / "report.json"),
        "-l", str(rel / "nextpnr.log"), "-q",
    ]
    try:
        key = tools.input_key((export_dir / netlist).read_bytes(), " ".join(cmd), version)
    except OSError as e:
        raise DataError(
            f"yosys wrote no place-and-route netlist ({e}); see {export_dir / 'synth' / PNR_FAMILY}"
        ) from None
    old = tools.cached_result(work, key, use_cache)
    if old is not None:
        return PnrResult.from_dict({**old, "cached": True})
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
    res = PnrResult(
        device=PNR_DEVICE, command=" ".join(cmd), target_mhz=freq,
        fits=does_not_fit(util) is None if util else None, routed=False, error=None, clock=None, fmax_mhz=None,
        meets_target=None, **_resources(util), utilisation=util, seconds=round(seconds, 2),
    )
    if proc.returncode != 0:
        errors = _ERROR_LINE.findall(log) or (proc.stderr or proc.stdout).strip().splitlines()[-1:]
        res.error = does_not_fit(util) or (
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
        for name, value in _resources(util).items():
            setattr(res, name, value)
        achieved = float(fmax[clock]["achieved"])
        res.fits, res.routed, res.clock, res.utilisation = True, True, clock, util
        res.fmax_mhz, res.meets_target = round(achieved, 3), achieved >= freq
    tools.store_result(work, key, res.to_dict())
    return res
