"""Export the decorrelation unit as Verilog, with integer-model test vectors and a self-checking testbench.

An export directory holds everything a Verilog simulator or synthesis tool needs, with no Python required:
``decor_unit.v`` (the generated unit), ``tb_decor.v`` (the testbench), the vector files read by ``$readmemh``
(``x.hex`` inputs, ``z.hex`` expected outputs, ``r0.hex`` / ``r_final.hex`` R before and after, ``overflow.hex``
the expected sticky flag, ``r_check.hex`` / ``ovf_check.hex`` R at interior checkpoints and each checkpoint
segment's flag) and ``manifest.json`` (format, architecture, ports, latency, cycles per sample, multipliers,
vector counts, checkpoints, file hashes). ``verify`` and ``report`` read the manifest. The directory is written
atomically: built beside the target and renamed into place."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError, FormatError

MANIFEST = "manifest.json"
KIND = "analogdecorr-hdl-export"
SCHEMA = 1
MODULE = "decor_unit"
TB_NAME = "tb_decor.v"
TB_TOP = "tb_decor"
VECTOR_FILES = ("x.hex", "z.hex", "r0.hex", "r_final.hex", "overflow.hex", "r_check.hex", "ovf_check.hex")
ARCHS = ("row", "mac")
# Leading samples the testbench runs without gaps or stalls, to measure latency and cycles per sample.
CALM_SAMPLES = 16
# Checkpoint segments (for parallel simulation): at most this many, each at least MIN_SEGMENT samples.
MAX_SEGMENTS = 8
MIN_SEGMENT = 256


def segmentable(fmt: Any) -> bool:
    """True when R is the unit's only state between samples, so a run can restart from any checkpoint's R.

    Stochastic rounding carries the LFSR state and the delayed update carries the previous R; neither can be
    loaded through the R port, so those formats are simulated as one segment.
    """
    return fmt.rounding != "stochastic" and not fmt.delayed


def segment_bounds(samples: int, segments: int) -> list[int]:
    """Sample indices b_0 = 0 < b_1 < ... < b_S = samples of S near-equal checkpoint segments."""
    return [round(c * samples / segments) for c in range(segments + 1)]


def testbench_source() -> Path:
    """The testbench shipped with analogdecorr (package copy first, then the repository's hdl/ folder)."""
    here = Path(__file__).resolve().parent
    for cand in (here / TB_NAME, here.parent.parent / "hdl" / TB_NAME):
        if cand.is_file():
            return cand
    raise DataError(
        f"the testbench {TB_NAME} is missing from the installation (looked in {here} and "
        f"{here.parent.parent / 'hdl'}); reinstall analogdecorr from its repository"
    )


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _hex_digits(bits: int) -> int:
    return (bits + 3) // 4


def to_hex_word(value: int, bits: int) -> str:
    """Two's-complement hex of a signed integer in `bits` bits, zero-padded (one $readmemh word)."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if not lo <= int(value) <= hi:
        raise FormatError(f"value {value} does not fit a signed {bits}-bit word")
    return format(int(value) & ((1 << bits) - 1), f"0{_hex_digits(bits)}x")


def to_hex_vector(values: Any, bits: int) -> str:
    """Pack a vector like the unit's ArrayLayout (element i in bits [i·bits, (i+1)·bits)) as one hex word."""
    word = 0
    for i, v in enumerate(values):
        to_hex_word(int(v), bits)  # range check
        word |= (int(v) & ((1 << bits) - 1)) << (i * bits)
    return format(word, f"0{_hex_digits(bits * len(values))}x")


def from_hex_vector(text: str, bits: int, count: int) -> list[int]:
    """Inverse of `to_hex_vector`: the signed elements of one packed hex word."""
    word = int(text, 16)
    out = []
    for i in range(count):
        v = (word >> (i * bits)) & ((1 << bits) - 1)
        out.append(v - (1 << bits) if v >> (bits - 1) else v)
    return out


def stimulus(fmt: Any, samples: int, seed: int, *, rho: float = 0.3, extreme: float = 0.002) -> np.ndarray:
    """Integer inputs (samples × d): ``fixed.compare``'s correlated stream plus a few full-range words.

    The Gaussian part (``correlated_input``: pairwise correlation `rho`) gives the update something to
    decorrelate; a fraction `extreme` of the samples (at random positions) is uniform over the whole signed
    W-bit range so that saturation and the sticky overflow flag are exercised too.
    """
    from ..fixed.compare import correlated_input

    x = np.array(correlated_input(fmt, samples, rho, seed), dtype=np.int64)
    n_ext = int(round(extreme * samples))
    if n_ext:
        rng = np.random.default_rng([seed, 0x5A7])
        lo, hi = -(1 << (fmt.width - 1)), (1 << (fmt.width - 1)) - 1
        rows = rng.choice(samples, size=n_ext, replace=False)
        x[rows] = rng.integers(lo, hi + 1, size=(n_ext, fmt.size))
    return x


def identity_r(fmt: Any) -> np.ndarray:
    """R0 = identity in the W_R-bit master format (1.0 = 2^F_R), the unit's reset state."""
    return np.eye(fmt.size, dtype=np.int64) << fmt.r_frac


_PORT_RE = re.compile(
    r"^\s*(input|output)\s+(?:wire\s+|reg\s+)?(?:signed\s+)?(?:\[(\d+):(\d+)\]\s*)?(\w+)\s*;", re.MULTILINE
)


def verilog_ports(verilog: str) -> list[dict[str, Any]]:
    """Ports of the generated module as {name, direction, width}, in declaration order."""
    ports = []
    for m in _PORT_RE.finditer(verilog):
        direction, msb, lsb, name = m.groups()
        width = abs(int(msb) - int(lsb)) + 1 if msb is not None else 1
        ports.append({"name": name, "direction": direction, "width": width})
    return ports


def read_manifest(export_dir: str | Path) -> dict[str, Any] | None:
    """The manifest of an earlier export, or None when `export_dir` does not hold one."""
    path = Path(export_dir) / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if not isinstance(manifest, dict) or manifest.get("kind") != KIND:
        return None
    return manifest


def load_manifest(export_dir: str | Path) -> dict[str, Any]:
    """The manifest of an export directory; DataError naming the fix when it is not one."""
    export_dir = Path(export_dir)
    manifest = read_manifest(export_dir)
    if manifest is None:
        why = "does not exist" if not export_dir.exists() else f"has no valid {MANIFEST}"
        raise DataError(
            f"{export_dir} is not an HDL export ({why}); create one with "
            f"'analogdecorr hdl export -o {export_dir}'"
        )
    missing = [n for n in (MODULE + ".v", TB_NAME, *VECTOR_FILES) if not (export_dir / n).is_file()]
    if missing:
        raise DataError(
            f"the export {export_dir} is incomplete (missing {', '.join(missing)}); export it again"
        )
    return manifest


def _check_target(out_dir: Path) -> None:
    """Refuse to replace anything that is not an earlier export (or an empty directory)."""
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise FormatError(f"output path {out_dir} exists and is not a directory; choose another -o/--out")
    if read_manifest(out_dir) is None and any(out_dir.iterdir()):
        raise FormatError(
            f"output directory {out_dir} exists and is not an earlier HDL export (no {MANIFEST} "
            "from 'analogdecorr hdl export'); choose a new -o/--out or remove that directory"
        )


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("analogdecorr", "amaranth", "numpy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "unknown"
    return out


def export(
    fmt: Any,
    arch: str = "row",
    out_dir: str | Path = "build/decor",
    *,
    samples: int = 10_000,
    seed: int = 0,
    rho: float = 0.3,
    extreme: float = 0.002,
) -> dict[str, Any]:
    """Write Verilog, vectors, testbench and manifest for `fmt`, `arch` into `out_dir`; return the manifest.

    `samples` input vectors come from `stimulus(fmt, samples, seed, rho=rho, extreme=extreme)`; the expected
    z, final R and overflow flag come from the integer model (the specification). R is loaded as the identity
    through the R port before streaming. Replacing an earlier export is allowed; any other existing, non-empty
    path is refused.
    """
    from amaranth.back import verilog

    from ..fixed.model import run
    from .unit import DecorrelationUnit

    if arch not in ARCHS:
        import difflib

        close = difflib.get_close_matches(str(arch), ARCHS, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise FormatError(f"unknown architecture '{arch}'{hint}; choose one of {', '.join(ARCHS)}")
    if not isinstance(samples, (int, np.integer)) or isinstance(samples, bool) or samples < 1:
        raise FormatError(f"samples must be a positive integer, got {samples!r}")
    if not 0.0 <= extreme <= 1.0:
        raise FormatError(f"extreme must be a fraction in [0, 1], got {extreme}")
    samples = int(samples)
    out_dir = Path(out_dir)
    _check_target(out_dir)

    d, w, wr = fmt.size, fmt.width, fmt.r_width
    unit = DecorrelationUnit(fmt, arch=arch)
    latency, cps, mults = int(unit.latency), unit.cycles_per_sample, int(unit.multipliers)
    t0 = time.perf_counter()
    text = verilog.convert(unit, name=MODULE, emit_src=False)
    t_convert = time.perf_counter() - t0

    x = stimulus(fmt, samples, seed, rho=rho, extreme=extreme)
    r0 = identity_r(fmt)
    t0 = time.perf_counter()
    result = run(fmt, x, R0_int=r0)
    t_model = time.perf_counter() - t0
    z = np.asarray(result.z, dtype=np.int64)
    r_final = np.asarray(result.R, dtype=np.int64)
    if z.shape != (samples, d) or r_final.shape != (d, d):
        raise DataError(
            f"the integer model returned z {z.shape} and R {r_final.shape}; expected "
            f"({samples}, {d}) and ({d}, {d})"
        )
    overflow = bool(result.overflow)
    counts = {str(k): int(v) for k, v in dict(result.overflow_counts or {}).items()}

    # checkpoints: the model restarted from each checkpoint's R must reproduce the continuous run exactly
    n_seg = max(1, min(MAX_SEGMENTS, samples // MIN_SEGMENT)) if segmentable(fmt) else 1
    bounds = segment_bounds(samples, n_seg)
    r_chk, ovf_seg = [r0], []
    if n_seg == 1:
        r_chk.append(r_final)
        ovf_seg.append(overflow)
    else:
        for a, b in zip(bounds[:-1], bounds[1:], strict=True):
            part = run(fmt, x[a:b], R0_int=r_chk[-1])
            if not np.array_equal(np.asarray(part.z), z[a:b]):
                raise DataError(
                    f"the integer model restarted at sample {a} differs from the continuous run; "
                    "this format cannot be simulated in segments (report this as a bug)"
                )
            r_chk.append(np.asarray(part.R, dtype=np.int64))
            ovf_seg.append(bool(part.overflow))
        if not np.array_equal(r_chk[-1], r_final) or any(ovf_seg) != overflow:
            raise DataError(
                "the segmented integer model disagrees with the continuous run (report this as a bug)"
            )

    ports = verilog_ports(text)
    port_names = {p["name"]: p for p in ports}
    aw = port_names["r_addr"]["width"] if "r_addr" in port_names else max(1, (d * d - 1).bit_length())

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        (tmp / f"{MODULE}.v").write_text(text)
        shutil.copyfile(testbench_source(), tmp / TB_NAME)
        (tmp / "x.hex").write_text("".join(to_hex_vector(row, w) + "\n" for row in x))
        (tmp / "z.hex").write_text("".join(to_hex_vector(row, w) + "\n" for row in z))
        (tmp / "r0.hex").write_text("".join(to_hex_word(v, wr) + "\n" for v in r0.reshape(-1)))
        (tmp / "r_final.hex").write_text("".join(to_hex_word(v, wr) + "\n" for v in r_final.reshape(-1)))
        (tmp / "overflow.hex").write_text(f"{int(overflow)}\n")
        interior = (
            np.concatenate([r.reshape(-1) for r in r_chk[1:-1]]) if n_seg > 1 else np.zeros(0, np.int64)
        )
        (tmp / "r_check.hex").write_text("".join(to_hex_word(v, wr) + "\n" for v in interior))
        (tmp / "ovf_check.hex").write_text("".join(f"{int(o)}\n" for o in ovf_seg))
        fmt_dict = fmt.to_dict()
        manifest: dict[str, Any] = {
            "kind": KIND,
            "schema": SCHEMA,
            "module": MODULE,
            "arch": arch,
            "format": fmt_dict,
            "ports": ports,
            "latency": latency,
            "cycles_per_sample": cps,
            "multipliers": mults,
            "multiplies_per_sample": 3 * d * d,
            "utilisation": 3 * d * d / (mults * cps) if mults and cps else None,
            "vectors": {
                "samples": samples,
                "seed": int(seed),
                "rho": float(rho),
                "extreme": float(extreme),
                "r0": "identity",
                "overflow": overflow,
                "overflow_counts": counts,
                "files": {
                    "x": "x.hex",
                    "z": "z.hex",
                    "r0": "r0.hex",
                    "r_final": "r_final.hex",
                    "overflow": "overflow.hex",
                    "r_check": "r_check.hex",
                    "ovf_check": "ovf_check.hex",
                },
            },
            "segments": {"count": n_seg, "bounds": bounds, "overflow": ovf_seg},
            "testbench": {
                "file": TB_NAME,
                "top": TB_TOP,
                "parameters": {
                    "D": d,
                    "W": w,
                    "WR": wr,
                    "AW": aw,
                    "N": samples,
                    "CALM": CALM_SAMPLES,
                    "NSEG": n_seg,
                },
            },
            "versions": _versions(),
            "seconds": {"convert": round(t_convert, 3), "model": round(t_model, 3)},
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        manifest["files"] = {p.name: _sha256(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        os.chmod(tmp, 0o755)
        old = None
        if out_dir.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
            old.rmdir()
            out_dir.rename(old)
        try:
            tmp.rename(out_dir)
        except OSError:
            if old is not None:
                old.rename(out_dir)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest
