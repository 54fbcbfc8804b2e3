"""Run an export's self-checking testbench in Icarus Verilog and Verilator and collect its verdict.

The testbench (``tb_decor.v``) prints one ``RESULT key=value ...`` line and a ``TIMING`` line; this module
compiles it with the parameters from ``manifest.json``, runs it from the export directory (the vector files
are opened by relative name) and parses those lines. Builds go to ``<export>/sim/<simulator>/`` and are reused
when the Verilog, the testbench, the parameters and the tool version are unchanged (the vector files are read
at run time, so a changed vector file does not need a rebuild; the cache is ``tools.cached_result``, shared with
synthesis and place and route). The simulation itself always runs.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ..choices import check_choices
from ..errors import DataError, EnvironmentMismatchError
from . import tools
from .export import MODULE, TB_NAME, TB_TOP, load_manifest

SIMULATORS = ("iverilog", "verilator")
_INSTALL = {
    "iverilog": "install Icarus Verilog (Debian/Ubuntu: apt-get install iverilog)",
    "verilator": "install Verilator ≥ 5.0 (Debian/Ubuntu: apt-get install verilator)",
}
_ALIASES = {"icarus": "iverilog", "vvp": "iverilog"}
_TOOLS = {"iverilog": ("iverilog", "vvp"), "verilator": ("verilator",)}
# Gaps and stalls in the testbench add at most a few times the nominal cycles; anything beyond is a hang.
_CYCLE_MARGIN = 8


def check_simulators(simulators: Any) -> tuple[str, ...]:
    """Validate a simulator list (a tuple or a comma-separated string); ConfigError with the closest name."""
    return check_choices(simulators, SIMULATORS, "simulator", aliases=_ALIASES)


def tool_missing(simulator: str) -> str | None:
    """None when `simulator`'s executables are on PATH, else a one-line reason with the fix."""
    for exe in _TOOLS[simulator]:
        reason = tools.tool_missing(exe, f"{_INSTALL[simulator]} or leave it out with --sim")
        if reason:
            return reason
    return None


def _tool_version(exe: str) -> str:
    return tools.tool_version(exe, "-V" if exe == "iverilog" else "--version")


def tb_parameters(manifest: dict[str, Any]) -> dict[str, int]:
    """The testbench parameters: the manifest's, plus cycle limits that turn a hang into a failure."""
    params = dict(manifest["testbench"]["parameters"])
    dd = params["D"] ** 2
    cps = float(manifest.get("cycles_per_sample") or dd)
    per_sample = cps + float(manifest.get("latency") or 0) + 4
    init = int(manifest.get("init_cycles") or dd)
    readbacks = params.get("NSEG", 1) + 3
    params["MAXWAIT"] = int(4 * init + 4 * per_sample + 10_000)
    params["MAXCYCLES"] = int(_CYCLE_MARGIN * params["N"] * per_sample + 40 * dd * readbacks + 8 * init + 10_000)
    return params


def _run(cmd: list[str], cwd: Path, timeout: float, what: str) -> subprocess.CompletedProcess:
    return tools.run_tool(cmd, cwd, timeout, what, on_timeout="raise the timeout or use fewer samples in the export")


def _build(
    export_dir: Path, simulator: str, params: dict[str, int], timeout: float
) -> tuple[list[str], bool, float]:
    """Compile the testbench; return the run command, whether a cached build was used, the build seconds."""
    rel = Path("sim") / simulator  # relative to the export: a copied export keeps its build
    build = export_dir / rel
    sources = [TB_NAME, MODULE + ".v"]
    if simulator == "iverilog":
        exe = build / "tb.vvp"
        cmd = ["iverilog", "-g2005", "-s", TB_TOP, "-o", str(rel / "tb.vvp")]
        cmd += [f"-P{TB_TOP}.{k}={v}" for k, v in params.items()]
        cmd += sources
        run_cmd = ["vvp", "-n", str(rel / "tb.vvp")]
    else:
        exe = build / "obj" / "tb"
        cmd = [
            "verilator",
            "--binary",
            "-Wno-fatal",
            "-Wno-lint",
            "-Wno-style",
            "--top-module",
            TB_TOP,
            "--Mdir",
            str(rel / "obj"),
            "-o",
            "tb",
            "-j",
            str(max(1, os.cpu_count() or 1)),
        ]
        cmd += [f"-G{k}={v}" for k, v in params.items()]
        cmd += sources
        run_cmd = [str(build / "obj" / "tb")]
    key = tools.input_key(
        (export_dir / (MODULE + ".v")).read_bytes(), (export_dir / TB_NAME).read_bytes(), json.dumps(cmd),
        _tool_version(_TOOLS[simulator][0]),
    )
    old = tools.cached_result(build, key)
    if old is not None and exe.is_file():
        return run_cmd, True, 0.0
    if old is not None:  # the result survived but the executable did not: build again in an empty folder
        tools.cached_result(build, key, use_cache=False)
    t0 = time.perf_counter()
    proc = _run(cmd, export_dir, timeout, f"building the testbench with {simulator}")
    (build / "build.log").write_text(proc.stdout + proc.stderr)
    seconds = time.perf_counter() - t0
    tools.store_result(build, key, {"build": cmd, "run": run_cmd, "seconds": round(seconds, 3)})
    return run_cmd, False, seconds


_KV = re.compile(r"(\w+)=(\S*)")


def parse_output(text: str) -> dict[str, Any]:
    """Parse the testbench's RESULT/TIMING/MISMATCH lines into a dict; DataError if RESULT is missing."""
    result_line = timing_line = None
    mismatch_lines = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("RESULT "):
            result_line = line
        elif line.startswith("TIMING "):
            timing_line = line
        elif line.startswith("MISMATCH "):
            mismatch_lines.append(line)
    if result_line is None:
        tail = " | ".join(text.strip().splitlines()[-4:])
        raise DataError(f"the testbench printed no RESULT line (output ends: {tail})")
    r = dict(_KV.findall(result_line))

    def num(d: dict[str, str], key: str) -> int:
        return int(d.get(key, "-1"))

    first = None
    if num(r, "mismatches") > 0:
        first = {
            "kind": r.get("first_kind", "").strip(),
            "sample": num(r, "first_mismatch"),
            "word": num(r, "first_word"),
            "expected": num(r, "first_expected"),
            "got": num(r, "first_got"),
        }
    frame = num(r, "frame")
    out: dict[str, Any] = {
        "bit_exact": r.get("bit_exact") == "1",
        "start": max(0, num(r, "start")),
        "samples": num(r, "samples"),
        "z_checked": num(r, "z_checked"),
        "r_checked": num(r, "r_checked"),
        "r_expected": num(r, "r_expected"),
        "readbacks": num(r, "readbacks"),
        "status_checked": num(r, "status_checked"),
        "frame_error_raised": None if frame < 0 else frame == 1,
        "mismatches": num(r, "mismatches"),
        "first_mismatch": first,
        "timeout": r.get("timeout") == "1",
        "overflow": {"expected": r.get("overflow_expected") == "1", "got": r.get("overflow_got") == "1"},
        "cycles": num(r, "cycles"),
        "reported_mismatches": [
            {k: v if k == "kind" else int(v) for k, v in _KV.findall(line)} for line in mismatch_lines
        ],
    }
    if timing_line is not None:
        t = {k: int(v) for k, v in _KV.findall(timing_line)}
        out["latency"] = t.get("latency", -1)
        span, count = t.get("calm_span", -1), t.get("calm_count", 0)
        out["cycles_per_sample"] = span / count if span >= 0 and count > 0 else None
        # the span's samples all learn in the generated stimulus; a caller's stream may freeze some
        out["calm_all_learning"] = t.get("calm_learn", count) == count
        out["stream_cycles"] = t.get("stream_cycles", -1)
    return out


def _parts(manifest: dict[str, Any], simulator: str, jobs: int) -> list[dict[str, int]]:
    """How to split the run: Icarus (slow) runs each checkpoint segment as its own process when jobs > 1 and
    R is the unit's only state (``segments.parallel``)."""
    seg = manifest["segments"]
    n = int(seg["count"])
    if simulator != "iverilog" or jobs <= 1 or n <= 1 or not seg.get("parallel"):
        return [{"c0": 0, "c1": n}]
    return [{"c0": c, "c1": c + 1} for c in range(n)]


def merge_parts(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One verdict from the verdicts of consecutive parts of the stream (the first part's timing)."""
    if len(parts) == 1:
        return {**parts[0], "parts": 1}
    first = next((p["first_mismatch"] for p in parts if p["first_mismatch"] is not None), None)
    out = dict(parts[0])
    summed = ("samples", "z_checked", "r_checked", "r_expected", "readbacks", "status_checked", "mismatches",
              "cycles")
    out.update({key: sum(p[key] for p in parts) for key in summed})
    frames = [p["frame_error_raised"] for p in parts]
    out.update(
        {
            "bit_exact": all(p["bit_exact"] for p in parts),
            "start": parts[0].get("start", 0),
            "first_mismatch": first,
            "frame_error_raised": None if None in frames else all(frames),
            "timeout": any(p["timeout"] for p in parts),
            "overflow": {
                "expected": any(p["overflow"]["expected"] for p in parts),
                "got": any(p["overflow"]["got"] for p in parts),
            },
            "reported_mismatches": [m for p in parts for m in p["reported_mismatches"]],
            "parts": len(parts),
        }
    )
    return out


def verify(
    export_dir: str | Path,
    simulators: Any = SIMULATORS,
    *,
    jobs: int | None = None,
    timeout: float = 1800.0,
) -> dict[str, Any]:
    """Compile and run the export's testbench in each simulator; return the verdicts.

    Up to `jobs` (default: the CPU count) simulator processes run at once. Verilator always runs the whole
    stream in one process, pausing at every checkpoint to read R back. Icarus Verilog, much slower, runs each
    checkpoint segment of the export as its own process when jobs > 1 and the export allows it
    (``segments.parallel``: R is the unit's only state): each part resets the unit, loads the model's R at its
    first checkpoint through the R port and must end with the model's R at the next, so together the parts
    check every z element, R at every checkpoint and the overflow flag of every segment (jobs=1: one run).

    Result: ``{"export_dir", "lanes", "format", "samples", "bit_exact" (all simulators), "wall_seconds",
    "simulators": {name: {"bit_exact", "samples", "first_mismatch" (None or {kind, sample, word, expected,
    got}; kinds in tb_decor.v's header), "mismatches", "z_checked" (samples), "r_checked" / "r_expected" (R
    words), "readbacks", "status_checked", "frame_error_raised", "overflow": {expected, got}, "cycles",
    "latency", "cycles_per_sample" (measured over stall-free leading samples; "calm_all_learning" says whether
    they all learned), "expected_latency", "expected_cycles_per_sample", "parts", "build_seconds",
    "run_seconds", "cached_build", "tool", ...}}}``. A missing simulator raises EnvironmentMismatchError naming
    the install command.
    """
    sims = check_simulators(simulators)
    export_dir = Path(export_dir).resolve()
    manifest = load_manifest(export_dir)
    for s in sims:
        reason = tool_missing(s)
        if reason:
            raise EnvironmentMismatchError(reason)
    jobs = max(1, int(jobs or os.cpu_count() or 1))
    params = tb_parameters(manifest)
    # builds first (Icarus compiles in a fraction of a second), so the slow Icarus parts can start right away
    builds: dict[str, tuple[list[str], bool, float]] = {}
    if "iverilog" in sims:
        builds["iverilog"] = _build(export_dir, "iverilog", params, timeout)
    tasks: list[tuple[str, int, dict[str, int]]] = []
    for s in sims:
        for k, part in enumerate(_parts(manifest, s, jobs)):
            tasks.append((s, k, part))
    # Verilator first: its build overlaps the first Icarus parts
    tasks.sort(key=lambda t: (t[0] != "verilator", t[1]))

    def run_task(task: tuple[str, int, dict[str, int]]) -> tuple[str, int, dict[str, Any], float]:
        s, k, part = task
        if s not in builds:
            builds[s] = _build(export_dir, s, params, timeout)
        cmd = [*builds[s][0], *(f"+{key}={val}" for key, val in part.items())]
        t0 = time.perf_counter()
        proc = _run(cmd, export_dir, timeout, f"the {s} simulation (checkpoint segments {part['c0']}..{part['c1']})")
        seconds = time.perf_counter() - t0
        (export_dir / "sim" / s / f"run{k}.log").write_text(" ".join(cmd) + "\n" + proc.stdout + proc.stderr)
        return s, k, parse_output(proc.stdout), seconds

    t_all = time.perf_counter()
    with ThreadPoolExecutor(max_workers=min(jobs, len(tasks))) as pool:
        done = list(pool.map(run_task, tasks))
    wall = time.perf_counter() - t_all
    results: dict[str, Any] = {}
    for s in sims:
        mine = sorted((k, res, sec) for name, k, res, sec in done if name == s)
        res = merge_parts([r for _, r, _ in mine])
        _, cached, t_build = builds[s]
        res.update(
            {
                "expected_latency": manifest.get("latency"),
                "expected_cycles_per_sample": manifest.get("cycles_per_sample"),
                "build_seconds": round(t_build, 3),
                "run_seconds": round(sum(sec for _, _, sec in mine), 3),
                "cached_build": cached,
                "tool": _tool_version(_TOOLS[s][0]),
            }
        )
        results[s] = res
    return {
        "export_dir": str(export_dir),
        "lanes": manifest.get("lanes"),
        "format": manifest.get("format"),
        "samples": params["N"],
        "bit_exact": all(r["bit_exact"] for r in results.values()),
        "wall_seconds": round(wall, 3),
        "simulators": results,
    }
