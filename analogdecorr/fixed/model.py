"""The integer model of the decorrelation unit: the executable specification of ``hdl/NUMERICS.md``.

Pure int64 numpy, one sample at a time (the update of sample t feeds sample t+1), the d² operations of a
sample as arrays. The RTL must reproduce ``z`` word for word and the final ``R`` exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..errors import DataError
from .format import MAX_INTERMEDIATE_BITS, Lfsr, UnitFormat, word_range

#: Keys of ``Result.overflow_counts``: saturated words per quantity (see ``run``).
OVERFLOW_KEYS = ("rw", "z", "p", "v", "e", "r")
_LFSR_CHUNK = 2048  # samples per LFSR draw in stochastic mode (bounds memory at large d)


@dataclass
class Result:
    """Output of ``run``: z (n, d) int64, final R (d, d) int64, the sticky overflow flag and its breakdown."""

    z: np.ndarray
    R: np.ndarray
    overflow: bool
    overflow_counts: dict[str, int] = field(default_factory=dict)
    lfsr_state: int = 0  # LFSR state after the run (the seed if nothing was drawn)
    R_trace: np.ndarray | None = None  # (n // trace_every, d, d): R after samples k·trace_every, if asked


def _rounder(mode: str, k: int) -> Callable[[np.ndarray], np.ndarray]:
    """``rnd(·, k)`` for a fixed deterministic mode and k ≥ 0, specialised so the sample loop stays cheap."""
    if k == 0:
        return lambda v: v
    if mode == "trunc":
        return lambda v: v >> k
    half = 1 << (k - 1)
    if mode == "half_up":
        return lambda v: (v + half) >> k
    if mode == "half_even":
        hm1 = half - 1
        return lambda v: (v + hm1 + ((v >> k) & 1)) >> k
    raise ValueError(f"no deterministic rounder for mode {mode!r}")


def _clamp(a: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """np.clip without its Python-level overhead (the sample loop calls this six times per sample)."""
    return np.minimum(np.maximum(a, lo), hi)


def identity(fmt: UnitFormat) -> np.ndarray:
    """R = I in the R format (2^F_R on the diagonal)."""
    return np.eye(fmt.size, dtype=np.int64) * fmt.r_one


def _check_inputs(fmt: UnitFormat, X_int: object, R0_int: object) -> tuple[np.ndarray, np.ndarray]:
    X = np.asarray(X_int)
    if X.ndim != 2 or X.shape[1] != fmt.size:
        raise DataError(f"X_int has shape {X.shape}; the unit needs (n, {fmt.size}) (one sample per row)")
    if X.size and not np.issubdtype(X.dtype, np.integer):
        raise DataError(f"X_int has dtype {X.dtype}; pass integers (use fixed.format.quantize on floats)")
    X = X.astype(np.int64)
    lo, hi = word_range(fmt.width)
    if X.size and (X.min() < lo or X.max() > hi):
        raise DataError(
            f"X_int holds values outside signed {fmt.width}-bit [{lo}, {hi}]; quantize/saturate the input "
            "first"
        )
    if R0_int is None:
        return X, identity(fmt)
    R = np.asarray(R0_int)
    if R.shape != (fmt.size, fmt.size):
        raise DataError(f"R0_int has shape {R.shape}; the unit needs ({fmt.size}, {fmt.size})")
    if not np.issubdtype(R.dtype, np.integer):
        raise DataError(f"R0_int has dtype {R.dtype}; pass integers in the R format (1.0 = 2^{fmt.r_frac})")
    R = R.astype(np.int64)
    if R.min() < fmt.r_min or R.max() > fmt.r_max:
        raise DataError(f"R0_int holds values outside signed {fmt.r_width}-bit [{fmt.r_min}, {fmt.r_max}]")
    return X, R


def run(
    fmt: UnitFormat, X_int: object, R0_int: object = None, *, learn: bool = True, trace_every: int = 0
) -> Result:
    """Run the unit over the samples ``X_int`` (n, d) ints starting from ``R0_int`` (default identity).

    Per sample (NUMERICS.md "One sample"): Rw = sat_W(rnd(R, F_R − F)); z = sat_W(rnd(Rw x, F));
    p = sat_W(rnd(z_i Rw_ij, F)); v = sat_W(rnd(Σ_i z_i Rw_ij, F)); e = sat_W(v_j − p_ij);
    R ← sat_WR(R − rnd(z_i e_ij, 2F + s − F_R)). ``learn=False`` is the unit's forward-only mode (R unchanged).
    ``trace_every`` > 0 records R after every ``trace_every`` samples in ``Result.R_trace`` (for drift plots).
    ``overflow_counts`` counts saturated words per quantity: ``rw`` once per R view a sample's update used (so
    each distinct view once), ``z``, ``p``, ``v``, ``e``, ``r`` per written word.
    """
    # W ≤ 18 and the format check bound every intermediate below 2^62: int64 arithmetic is exact.
    assert fmt.intermediate_bits <= MAX_INTERMEDIATE_BITS
    X, R = _check_inputs(fmt, X_int, R0_int)
    n, d = X.shape
    wlo, whi = word_range(fmt.width)
    rlo, rhi = fmt.r_min, fmt.r_max
    rnd_view = _rounder(fmt.view_rounding, fmt.view_drop)
    rnd_data = _rounder(fmt.view_rounding, fmt.frac)
    drop = fmt.update_drop
    stochastic = fmt.rounding == "stochastic" and drop > 0
    rnd_update = None if stochastic or drop <= 0 else _rounder(fmt.rounding, drop)
    lfsr = Lfsr.from_format(fmt)
    counts = dict.fromkeys(OVERFLOW_KEYS, 0)
    Z = np.empty((n, d), dtype=np.int64)

    def view(r: np.ndarray) -> np.ndarray:
        a = rnd_view(r)
        c = _clamp(a, wlo, whi)
        counts["rw"] += int(np.count_nonzero(c != a))
        return c

    if not learn:
        Rw = view(R)
        acc = rnd_data(X @ Rw.T)
        Z[:] = _clamp(acc, wlo, whi)
        counts["z"] += int(np.count_nonzero(Z != acc))
        return Result(Z, R, any(counts.values()), counts, lfsr.value)

    mask = (1 << drop) - 1 if stochastic else 0
    rand = np.empty((0, d, d), dtype=np.int64)
    trace = [] if trace_every > 0 else None
    for t in range(n):
        if stochastic and t % _LFSR_CHUNK == 0:
            m = min(_LFSR_CHUNK, n - t)
            # consumed by sample, column j (outer), row i (inner): reshape to [t, j, i], swap to [t, i, j]
            rand = (lfsr.draw(m * d * d) & mask).reshape(m, d, d).transpose(0, 2, 1)
        Rw = view(R)
        # 1. z = sat_W(rnd(Rw x, F))
        a = rnd_data(Rw @ X[t])
        z = _clamp(a, wlo, whi)
        counts["z"] += int(np.count_nonzero(z != a))
        Z[t] = z
        # 2. p_ij = z_i Rw_ij rounded; v_j from the full products
        P = z[:, None] * Rw
        a = rnd_data(P)
        p = _clamp(a, wlo, whi)
        counts["p"] += int(np.count_nonzero(p != a))
        a = rnd_data(P.sum(axis=0))
        v = _clamp(a, wlo, whi)
        counts["v"] += int(np.count_nonzero(v != a))
        # 3. e_ij = v_j − p_ij
        a = v[None, :] - p
        e = _clamp(a, wlo, whi)
        counts["e"] += int(np.count_nonzero(e != a))
        # 4. R ← sat_WR(R − rnd(z_i e_ij, 2F + s − F_R))
        U = z[:, None] * e
        if stochastic:
            delta = (U + rand[t % _LFSR_CHUNK]) >> drop
        elif rnd_update is not None:
            delta = rnd_update(U)
        else:
            delta = U << -drop
        a = R - delta
        R = _clamp(a, rlo, rhi)
        counts["r"] += int(np.count_nonzero(R != a))
        if trace is not None and (t + 1) % trace_every == 0:
            trace.append(R)
    R_trace = None if trace is None else np.array(trace, dtype=np.int64).reshape(-1, d, d)
    return Result(Z, R, any(counts.values()), counts, lfsr.value, R_trace)
