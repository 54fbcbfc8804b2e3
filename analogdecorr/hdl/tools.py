"""The external EDA tools (Icarus Verilog, Verilator, Yosys, nextpnr): on PATH? which version? run with a timeout;
and the one cache their runs share.

One place for what verify, synthesis and place and route all need, so a missing tool, a hung run, a failing run
and a reused result read the same. A cached run is a work folder (e.g. ``<export>/synth/ice40``) holding
``result.json`` = ``{"key": <hash of every input>, "result": {...}}``; the key covers the input files, the exact
command and the tool's version, so any change reruns the tool in an emptied folder.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from ..atomic import write_text
from ..errors import DataError

RESULT_FILE = "result.json"


def tool_missing(exe: str, install_hint: str) -> str | None:
    """None when ``exe`` is on PATH, else a one-line reason ending in ``install_hint`` (the fix)."""
    if shutil.which(exe) is None:
        return f"{exe} not found on PATH; {install_hint}"
    return None


def tool_version(exe: str, flag: str = "--version") -> str:
    """The first line ``exe flag`` prints (part of cache keys), or "unknown"."""
    try:
        out = subprocess.run([exe, flag], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    lines = (out.stdout or out.stderr).strip().splitlines()
    return lines[0] if lines else "unknown"


def run_tool(cmd: list[str], cwd: Path, timeout: float, what: str, *, on_timeout: str, see: str = "",
             check: bool = True) -> subprocess.CompletedProcess:
    """Run ``cmd`` in ``cwd``; DataError naming ``what`` (and the fix ``on_timeout``) if it hangs or fails.

    ``check=False`` returns a failed run instead of raising, for callers that read the tool's own failure
    text (nextpnr says which resource ran out).
    """
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise DataError(f"{what} did not finish within {timeout:.0f} s; {on_timeout}") from None
    if check and proc.returncode != 0:
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-6:])
        raise DataError(f"{what} failed (exit {proc.returncode}): {tail}{'; see ' + see if see else ''}")
    return proc


# ------------------------------------------------------------------------------------------------ cache
def input_key(*parts: bytes | str) -> str:
    """SHA-256 over the inputs of a tool run (file contents, the command, the tool's version), in order."""
    h = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def cached_result(work: Path, key: str, use_cache: bool = True) -> dict[str, Any] | None:
    """The result stored in ``work`` for these inputs (``key``), or None with ``work`` emptied for a new run."""
    path = work / RESULT_FILE
    if use_cache and path.is_file():
        try:
            old = json.loads(path.read_text())
            if isinstance(old, dict) and old.get("key") == key and isinstance(old.get("result"), dict):
                return old["result"]
        except (OSError, json.JSONDecodeError, UnicodeDecodeError):
            pass
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    return None


def store_result(work: Path, key: str, result: dict[str, Any]) -> None:
    """Store a run's result with its input key, atomically (a killed run never leaves a half-written cache)."""
    write_text(work / RESULT_FILE, json.dumps({"key": key, "result": result}, indent=2) + "\n")
