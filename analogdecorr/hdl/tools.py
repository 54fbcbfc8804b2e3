"""The external EDA tools (Icarus Verilog, Verilator, Yosys, nextpnr): on PATH? which version? run with a timeout.

One place for what verify and report both need, so a missing tool, a hung run and a failing run read the same.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from ..errors import DataError


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
