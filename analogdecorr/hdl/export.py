"""Export the decorrelation unit as Verilog, with integer-model test vectors and a self-checking testbench.

An export directory holds everything a Verilog simulator or synthesis tool needs, with no Python required:
``decor_unit.v`` (the generated unit), ``tb_decor.v`` (the testbench), the vector files read by ``$readmemh``
and ``manifest.json`` (format, lanes, ports, latency, cycles per sample, multipliers, storage, vector counts,
checkpoints, file hashes). ``verify`` and ``report`` read the manifest. The directory is written atomically:
built beside the target and renamed into place.

Vector files (one word per line, two's complement hex):

=================  ==============================================================================================
``x.hex``          the input stream element by element: element j of sample t on line t·d + j (W bits)
``learn.hex``      one learn bit per sample (``1``: the sample updates mu and R; ``0``: z only)
``z.hex``          the integer model's z, same order as ``x.hex``
``r0.hex``         R at the start (loaded through the R port after the reset check), d² words, index i·d + j
``r_final.hex``    R after the stream
``r_check.hex``    R at the interior checkpoints (d² words each); ``bounds.hex``: the checkpoint sample indices
``ovf_check.hex``  the sticky overflow flag each checkpoint segment raises on its own; ``overflow.hex``: the flag
                   after the whole stream
=================  ==============================================================================================

The stimulus. By default (``stimulus=None``) ``make_stimulus`` draws ``samples`` correlated inputs with a
per-feature mean (so centring has something to remove) and a few full-range words (so saturation and the
overflow flag are exercised), a learn pattern of long learning stretches with short frozen (learn = 0) stretches,
and R0 = identity plus a small off-diagonal perturbation (so the R write port matters). A caller replays its own
stream with ``stimulus=Stimulus(x, learn, r0=None, mu0=None)``:

- ``x``: integers, shape (n, d), each in the signed W-bit range (the unit's input words);
- ``learn``: booleans, shape (n,) (or one bool for all samples);
- ``r0``: the starting R in the W_R-bit format (1.0 = 2^F_R), shape (d, d); None = identity (the reset state);
- ``mu0``: the starting running mean; the unit has no port to load mu, so it must be None or all zero (a
  replay starts from the reset state mu = 0).

The testbench checks every z element, R at every checkpoint and at the end, the overflow flag, the sample and
learned counters, that reset restores R = I, and that a bad ``last`` raises ``frame_error``.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_directory
from ..errors import DataError, FormatError

MANIFEST = "manifest.json"
KIND = "analogdecorr-hdl-export"
SCHEMA = 2
MODULE = "decor_unit"
TB_NAME = "tb_decor.v"
TB_TOP = "tb_decor"
VECTOR_FILES = (
    "x.hex", "learn.hex", "z.hex", "r0.hex", "r_final.hex", "r_check.hex", "bounds.hex", "overflow.hex",
    "ovf_check.hex",
)
# The unit's Verilog ports the testbench connects (flattened names of the component's signature).
TB_PORTS = (
    "clk", "rst", "x__payload", "x__valid", "x__ready", "z__payload", "z__valid", "z__ready",
    "ctl__r__addr", "ctl__r__we", "ctl__r__wdata", "ctl__r__re", "ctl__r__rdata", "ctl__r__rvalid",
    "ctl__reset", "ctl__clear_overflow", "ctl__busy", "ctl__overflow", "ctl__frame_error",
    "ctl__samples", "ctl__learned",
)
# Multipliers by default: one per row up to 8 (the iCE40 UP5K's SB_MAC16 count).
DEFAULT_MAX_LANES = 8
# Leading samples the testbench runs without gaps or stalls (all learning), to measure latency and cycles.
CALM_SAMPLES = 16
# Checkpoints: at most this many segments, each at least MIN_SEGMENT samples.
MAX_SEGMENTS = 8
MIN_SEGMENT = 256
# Default learn pattern: learning stretches of mean LEARN_RUN samples, frozen stretches of mean FROZEN_RUN.
LEARN_RUN = 40
FROZEN_RUN = 6


def default_lanes(size: int) -> int:
    """The default multiplier count M for a unit of size d: min(d, 8)."""
    return max(1, min(int(size), DEFAULT_MAX_LANES))


def check_lanes(lanes: Any) -> int:
    """A positive integer lane count M; FormatError naming the fix otherwise."""
    if isinstance(lanes, bool) or not isinstance(lanes, (int, np.integer)) or lanes < 1:
        raise FormatError(f"lanes={lanes!r}: the number of multipliers M must be a positive integer, e.g. 8")
    return int(lanes)


def parallel_segments(fmt: Any) -> bool:
    """True when R is the unit's only state between samples, so a simulation can restart at any checkpoint.

    The running mean (centring) and the stochastic-rounding LFSR cannot be loaded through the R port, so
    those formats are checked at the checkpoints but simulated as one continuous run.
    """
    return fmt.rounding != "stochastic" and int(getattr(fmt, "centre_shift", 0)) == 0


def segment_bounds(samples: int, segments: int) -> list[int]:
    """Sample indices b_0 = 0 < b_1 < ... < b_S = samples of S near-equal checkpoint segments."""
    return [c * samples // segments for c in range(segments + 1)]


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


def hex_lines(values: Any, bits: int) -> str:
    """One two's-complement hex word per line for every value of `values` (flattened, C order)."""
    flat = np.asarray(values, dtype=np.int64).reshape(-1)
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if flat.size and (flat.min() < lo or flat.max() > hi):
        raise FormatError(f"a value in [{flat.min()}, {flat.max()}] does not fit a signed {bits}-bit word")
    digits, mask = _hex_digits(bits), (1 << bits) - 1
    return "".join(f"{v:0{digits}x}\n" for v in (flat & mask).tolist())


def from_hex_word(text: str, bits: int) -> int:
    """Inverse of `to_hex_word`: the signed value of one hex word."""
    v = int(text, 16) & ((1 << bits) - 1)
    return v - (1 << bits) if v >> (bits - 1) else v


def read_hex(path: str | Path, bits: int) -> np.ndarray:
    """All words of a vector file as signed int64 (one word per line)."""
    return np.array([from_hex_word(s, bits) for s in Path(path).read_text().split()], dtype=np.int64)


# ------------------------------------------------------------------------------------------------ stimulus
@dataclass(frozen=True)
class Stimulus:
    """A stream for the unit: inputs ``x`` (n, d) ints, ``learn`` (n,) bools, starting R ``r0`` and mean ``mu0``.

    ``r0`` None = identity; ``mu0`` None = zero (the only value the unit can start from: mu has no load port).
    """

    x: Any
    learn: Any = True
    r0: Any = None
    mu0: Any = None


def check_stimulus(fmt: Any, stim: Stimulus) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validated (x (n, d) int64, learn (n,) bool, r0 (d, d) int64); DataError naming the problem otherwise."""
    d = fmt.size
    x = np.asarray(stim.x)
    if x.ndim != 2 or x.shape[1] != d or x.shape[0] < 1:
        raise DataError(f"stimulus x has shape {x.shape}; the unit needs (n, {d}) with n >= 1 (one sample per row)")
    if not np.issubdtype(x.dtype, np.integer):
        raise DataError(f"stimulus x has dtype {x.dtype}; pass the unit's integer words (fixed.format.quantize)")
    x = x.astype(np.int64)
    lo, hi = -(1 << (fmt.width - 1)), (1 << (fmt.width - 1)) - 1
    if x.min() < lo or x.max() > hi:
        raise DataError(f"stimulus x holds values outside signed {fmt.width}-bit [{lo}, {hi}]; saturate it first")
    learn = np.asarray(stim.learn)
    if learn.ndim == 0:
        learn = np.full(x.shape[0], bool(learn))
    if learn.shape != (x.shape[0],) or not (learn.dtype == bool or np.issubdtype(learn.dtype, np.integer)):
        raise DataError(f"stimulus learn has shape {learn.shape} and dtype {learn.dtype}; pass ({x.shape[0]},) bools")
    if np.issubdtype(learn.dtype, np.integer) and not np.isin(learn, (0, 1)).all():
        raise DataError("stimulus learn holds values other than 0 and 1; pass booleans")
    learn = learn.astype(bool)
    if stim.r0 is None:
        r0 = identity_r(fmt)
    else:
        r0 = np.asarray(stim.r0)
        if r0.shape != (d, d) or not np.issubdtype(r0.dtype, np.integer):
            raise DataError(f"stimulus r0 has shape {r0.shape} and dtype {r0.dtype}; pass ({d}, {d}) integers")
        r0 = r0.astype(np.int64)
        rlo, rhi = -(1 << (fmt.r_width - 1)), (1 << (fmt.r_width - 1)) - 1
        if r0.min() < rlo or r0.max() > rhi:
            raise DataError(f"stimulus r0 holds values outside signed {fmt.r_width}-bit (R's format, 1.0 = 2^F_R)")
    if stim.mu0 is not None and np.any(np.asarray(stim.mu0) != 0):
        raise DataError(
            "stimulus mu0 is not zero, but the unit has no port to load its running mean (it starts at mu = 0 "
            "after reset); replay the stream from its start, or pass mu0=None"
        )
    return x, learn, r0


def identity_r(fmt: Any) -> np.ndarray:
    """R0 = identity in the W_R-bit master format (1.0 = 2^F_R), the unit's reset state."""
    return np.eye(fmt.size, dtype=np.int64) << fmt.r_frac


def learn_pattern(samples: int, seed: int, *, calm: int = CALM_SAMPLES) -> np.ndarray:
    """Mostly learning, with short frozen stretches: ``calm`` learning samples, then alternating stretches of
    geometric length (mean LEARN_RUN learning, FROZEN_RUN frozen), like a training run's evaluation pauses."""
    rng = np.random.default_rng([seed, 0x1EA])
    learn = np.ones(samples, dtype=bool)
    t, on = calm, True
    while t < samples:
        run = int(rng.geometric(1.0 / (LEARN_RUN if on else FROZEN_RUN)))
        learn[t:t + run] = on
        t, on = t + run, not on
    return learn


def make_stimulus(
    fmt: Any, samples: int, seed: int, *, rho: float = 0.3, extreme: float = 0.002, offset: float = 0.5,
    perturb: float = 1 / 16,
) -> Stimulus:
    """The default test stream (see the module docstring).

    ``fixed.compare``'s correlated Gaussian (pairwise correlation `rho`) plus a per-feature mean uniform in
    ±`offset`·σ; a fraction `extreme` of the samples uniform over the whole signed W-bit range; the learn
    pattern of `learn_pattern`; R0 = I plus off-diagonal entries uniform in ±`perturb` (real units).
    """
    from ..fixed.compare import correlated_input, input_scale

    rng = np.random.default_rng([seed, 0x5A7])
    lo, hi = -(1 << (fmt.width - 1)), (1 << (fmt.width - 1)) - 1
    x = np.array(correlated_input(fmt, samples, rho, seed), dtype=np.int64)
    mean = np.round(rng.uniform(-offset, offset, fmt.size) * input_scale(fmt) * (1 << fmt.frac))
    x = np.clip(x + mean.astype(np.int64), lo, hi)
    n_ext = int(round(extreme * samples))
    if n_ext:
        rows = rng.choice(samples, size=n_ext, replace=False)
        x[rows] = rng.integers(lo, hi + 1, size=(n_ext, fmt.size))
    r0 = identity_r(fmt)
    step = int(perturb * (1 << fmt.r_frac))
    if step:
        off = rng.integers(-step, step + 1, size=(fmt.size, fmt.size))
        r0 = r0 + off * (1 - np.eye(fmt.size, dtype=np.int64))
    return Stimulus(x=x, learn=learn_pattern(samples, seed), r0=r0)


def model_checkpoints(
    fmt: Any, x: np.ndarray, learn: np.ndarray, r0: np.ndarray, bounds: list[int]
) -> tuple[np.ndarray, list[np.ndarray], list[bool], dict[str, int]]:
    """Run the integer model segment by segment (state carried over): z, R at every bound, each segment's
    overflow flag and the summed overflow counts. Carrying the state makes this the continuous run (the model's
    tests prove batch-by-batch = one run)."""
    from ..fixed.model import run

    zs, rs, ovf, counts = [], [r0], [], {}
    state = None
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        if state is None:
            part = run(fmt, x[a:b], r0, learn=learn[a:b])
        else:
            part = run(fmt, x[a:b], learn=learn[a:b], state=state)
        state = part.state
        z = np.asarray(part.z, dtype=np.int64)
        if z.shape != (b - a, fmt.size):
            raise DataError(f"the integer model returned z {z.shape}; expected ({b - a}, {fmt.size})")
        zs.append(z)
        rs.append(np.asarray(part.R, dtype=np.int64))
        ovf.append(bool(part.overflow))
        for key, v in dict(part.overflow_counts or {}).items():
            counts[str(key)] = counts.get(str(key), 0) + int(v)
    return np.concatenate(zs), rs, ovf, counts


# ------------------------------------------------------------------------------------------------ manifest
_PORT_RE = re.compile(
    r"^\s*(input|output)\s+(?:wire\s+|reg\s+)?(?:signed\s+)?(?:\[(\d+):(\d+)\]\s*)?(\w+)\s*;", re.MULTILINE
)


def verilog_ports(verilog: str, module: str = MODULE) -> list[dict[str, Any]]:
    """Ports of `module` (the top; submodules are skipped) as {name, direction, width}, in declaration order."""
    start = re.search(rf"^\s*module\s+{re.escape(module)}\s*\(", verilog, re.MULTILINE)
    if start is None:
        raise DataError(f"the generated Verilog has no module '{module}' (report this as a bug)")
    end = verilog.find("endmodule", start.end())
    body = verilog[start.end():end if end >= 0 else len(verilog)]
    ports = []
    for m in _PORT_RE.finditer(body):
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
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
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
    if manifest.get("schema") != SCHEMA:
        raise DataError(
            f"the export {export_dir} was written by an older analogdecorr (manifest schema "
            f"{manifest.get('schema')}, this version reads {SCHEMA}); export it again"
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


def _field_offset(unit: Any, stream_name: str, field: str, default: int) -> int:
    """Bit offset of `field` in a stream's StructLayout payload (the testbench packs and unpacks by it)."""
    try:
        layout = unit.signature.members[stream_name].signature.members["payload"].shape
        return int(layout[field].offset)
    except (AttributeError, KeyError, TypeError):
        return default


def _optional_int(unit: Any, name: str) -> int | None:
    value = getattr(unit, name, None)
    return None if value is None else int(value)


def export(
    fmt: Any,
    lanes: int | None = None,
    out_dir: str | Path = "build/decor",
    *,
    samples: int = 10_000,
    seed: int = 0,
    stimulus: Stimulus | None = None,
    rho: float = 0.3,
    extreme: float = 0.002,
) -> dict[str, Any]:
    """Write Verilog, vectors, testbench and manifest for `fmt` with `lanes` multipliers; return the manifest.

    `lanes` None = ``default_lanes(d)``. The stream is `stimulus` (a ``Stimulus``, see the module docstring) or,
    when None, ``make_stimulus(fmt, samples, seed, rho=rho, extreme=extreme)``; the expected z, R at the
    checkpoints and the end, and the overflow flags come from the integer model (the specification).
    Replacing an earlier export is allowed; any other existing, non-empty path is refused.
    """
    from amaranth.back import verilog

    from .unit import DecorrelationUnit

    lanes = default_lanes(fmt.size) if lanes is None else check_lanes(lanes)
    if stimulus is None:
        if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples < 1:
            raise FormatError(f"samples must be a positive integer, got {samples!r}")
        if not 0.0 <= extreme <= 1.0:
            raise FormatError(f"extreme must be a fraction in [0, 1], got {extreme}")
        stimulus = make_stimulus(fmt, int(samples), seed, rho=rho, extreme=extreme)
        source = {"kind": "generated", "seed": int(seed), "rho": float(rho), "extreme": float(extreme)}
    elif not isinstance(stimulus, Stimulus):
        raise DataError(f"stimulus must be an analogdecorr.hdl.export.Stimulus, got {type(stimulus).__name__}")
    else:
        source = {"kind": "caller"}
    x, learn, r0 = check_stimulus(fmt, stimulus)
    n = x.shape[0]
    out_dir = Path(out_dir)
    _check_target(out_dir)

    d, w, wr = fmt.size, fmt.width, fmt.r_width
    unit = DecorrelationUnit(fmt, lanes=lanes)
    timing = {
        "latency": int(unit.latency),
        "cycles_per_sample": int(unit.cycles_per_sample),
        "cycles_per_frozen_sample": _optional_int(unit, "cycles_per_frozen_sample"),
        "init_cycles": _optional_int(unit, "init_cycles"),
        "r_read_latency": _optional_int(unit, "r_read_latency"),
    }
    mults = int(unit.multipliers)
    storage = _optional_int(unit, "storage_bits")
    offsets = {
        "x_last": _field_offset(unit, "x", "last", w),
        "x_learn": _field_offset(unit, "x", "learn", w + 1),
        "z_last": _field_offset(unit, "z", "last", w),
    }
    t0 = time.perf_counter()
    text = verilog.convert(unit, name=MODULE, emit_src=False)
    t_convert = time.perf_counter() - t0
    ports = verilog_ports(text)
    by_name = {p["name"]: p for p in ports}
    missing = [p for p in TB_PORTS if p not in by_name]
    if missing:
        raise DataError(
            f"the generated unit lacks the ports the testbench drives ({', '.join(missing)}); the unit and "
            f"{TB_NAME} are out of step (report this as a bug)"
        )

    n_seg = max(1, min(MAX_SEGMENTS, n // MIN_SEGMENT))
    bounds = segment_bounds(n, n_seg)
    t0 = time.perf_counter()
    z, r_chk, ovf_seg, counts = model_checkpoints(fmt, x, learn, r0, bounds)
    t_model = time.perf_counter() - t0
    overflow = any(ovf_seg)
    params = {
        "D": d, "W": w, "WR": wr, "FR": fmt.r_frac, "AW": by_name["ctl__r__addr"]["width"],
        "XPW": by_name["x__payload"]["width"], "ZPW": by_name["z__payload"]["width"],
        "XLAST": offsets["x_last"], "XLEARN": offsets["x_learn"], "ZLAST": offsets["z_last"],
        "CW": by_name["ctl__samples"]["width"], "N": n, "NSEG": n_seg, "CALM": CALM_SAMPLES,
        "RWAIT": (timing["r_read_latency"] or 8) + 32,
    }

    def fill(tmp: Path) -> None:
        (tmp / f"{MODULE}.v").write_text(text)
        shutil.copyfile(testbench_source(), tmp / TB_NAME)
        (tmp / "x.hex").write_text(hex_lines(x, w))
        (tmp / "learn.hex").write_text("".join("1\n" if b else "0\n" for b in learn.tolist()))
        (tmp / "z.hex").write_text(hex_lines(z, w))
        (tmp / "r0.hex").write_text(hex_lines(r0, wr))
        (tmp / "r_final.hex").write_text(hex_lines(r_chk[-1], wr))
        interior = np.concatenate([r.reshape(-1) for r in r_chk[1:-1]]) if n_seg > 1 else np.zeros(0, np.int64)
        (tmp / "r_check.hex").write_text(hex_lines(interior, wr))
        (tmp / "bounds.hex").write_text("".join(f"{b:08x}\n" for b in bounds))
        (tmp / "overflow.hex").write_text(f"{int(overflow)}\n")
        (tmp / "ovf_check.hex").write_text("".join(f"{int(o)}\n" for o in ovf_seg))
        manifest.update(files={p.name: _sha256(p) for p in sorted(tmp.iterdir()) if p.is_file()})
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")

    manifest: dict[str, Any] = {
        "kind": KIND,
        "schema": SCHEMA,
        "module": MODULE,
        "lanes": lanes,
        "format": fmt.to_dict(),
        "ports": ports,
        "payload_bits": offsets,
        **timing,
        "multipliers": mults,
        "multiplies_per_sample": 3 * d * d,
        "ideal_cycles_per_sample": 3 * d * d / mults if mults else None,
        "utilisation": 3 * d * d / (mults * timing["cycles_per_sample"]) if mults else None,
        "storage_bits": storage,
        "vectors": {
            "samples": n,
            "learning_samples": int(learn.sum()),
            "source": source,
            "r0": "identity" if np.array_equal(r0, identity_r(fmt)) else "loaded",
            "overflow": overflow,
            "overflow_counts": counts,
            "files": {name.removesuffix(".hex"): name for name in VECTOR_FILES},
        },
        "segments": {
            "count": n_seg, "bounds": bounds, "overflow": ovf_seg, "parallel": parallel_segments(fmt),
        },
        "testbench": {"file": TB_NAME, "top": TB_TOP, "parameters": params},
        "versions": _versions(),
        "seconds": {"convert": round(t_convert, 3), "model": round(t_model, 3)},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    with atomic_directory(out_dir) as tmp:
        fill(tmp)
    return manifest
