"""The integer model of the decorrelation unit: the executable specification of ``hdl/NUMERICS.md``.

One sample at a time where it matters (the update of a learning sample feeds the next sample), the d² operations
of a sample as arrays; consecutive forward-only samples (learn = 0) share one R and run as one matrix product.
The RTL must reproduce ``z`` word for word and the final state (R, mu, LFSR) exactly.

Two exact kernels compute the same integers: float64 (every intermediate below 2^52, so products, sums and
power-of-two scalings are exact and ``rint``/``floor`` are the rounding modes; BLAS matrix products, fewer
passes) and int64 (any legal format). ``run`` picks float64 whenever the format allows it; the tests run both.
"""

from __future__ import annotations

import contextlib
import math
import operator
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import DataError
from .format import MAX_INTERMEDIATE_BITS, Lfsr, UnitFormat, word_range

#: Keys of ``Result.overflow_counts``: saturated words per quantity (see ``run``).
OVERFLOW_KEYS = ("xc", "rw", "z", "p", "v", "e", "r")
#: The float64 kernel is used when every intermediate fits this many bits (sign included): exact in a double.
FLOAT_EXACT_BITS = 52
_LFSR_CHUNK_WORDS = 1 << 16  # LFSR values drawn at once in stochastic mode (bounds memory at large d)
_BLAS_THREAD_MIN = 1 << 15  # multiply-adds above which a block product is kept to one BLAS thread


@dataclass
class UnitState:
    """Everything the unit carries from one sample to the next: R (d, d), the running mean mu (d,), the LFSR.

    ``R`` is in the R format (1.0 = 2^F_R); ``mu`` holds F + m fraction bits (all zero when centring is off);
    ``lfsr`` is the LFSR state the next stochastic rounding reads.
    """

    R: np.ndarray
    mu: np.ndarray
    lfsr: int

    @classmethod
    def reset(cls, fmt: UnitFormat) -> UnitState:
        """The unit after reset: R = I, mu = 0, LFSR = seed."""
        return cls(identity(fmt), np.zeros(fmt.size, dtype=np.int64), fmt.lfsr_seed)


@dataclass
class Result:
    """Output of ``run``: z (n, d) int64, final R (d, d) int64, the sticky overflow flag and its breakdown.

    ``state`` is the unit's state after the run (R, mu, LFSR): pass it as ``run(..., state=)`` to continue.
    """

    z: np.ndarray
    R: np.ndarray
    overflow: bool
    overflow_counts: dict[str, int] = field(default_factory=dict)
    lfsr_state: int = 0  # LFSR state after the run (the seed if nothing was drawn)
    R_trace: np.ndarray | None = None  # (n // trace_every, d, d): R after samples k·trace_every, if asked
    state: UnitState | None = None


def identity(fmt: UnitFormat) -> np.ndarray:
    """R = I in the R format (2^F_R on the diagonal)."""
    return np.eye(fmt.size, dtype=np.int64) * fmt.r_one


def uses_float_kernel(fmt: UnitFormat) -> bool:
    """True when every intermediate of ``fmt`` is exact in float64 (the faster kernel applies)."""
    return fmt.intermediate_bits <= FLOAT_EXACT_BITS


# ----------------------------------------------------------------------------------------------- rounding
def _int_rounder(mode: str, k: int) -> Callable[..., np.ndarray]:
    """``rnd(·, k)`` on int64 arrays; the stochastic one takes the random values as a second argument."""
    if k == 0:
        return lambda v, r=None: v
    if mode == "trunc":
        return lambda v: v >> k
    half = 1 << (k - 1)
    if mode == "half_up":
        return lambda v: (v + half) >> k
    if mode == "half_even":
        hm1 = half - 1
        return lambda v: (v + hm1 + ((v >> k) & 1)) >> k
    return lambda v, r: (v + r) >> k


def _float_rounder(mode: str, k: int) -> Callable[..., np.ndarray]:
    """``rnd(·, k)`` on float64 arrays of integers below 2^52: the scaling by 2^−k is exact, so ``rint`` is
    half-even and ``floor`` truncation on the exact quotient. Works in place (the argument is overwritten)."""
    if k == 0:
        return lambda v, r=None: v
    c = 2.0**-k
    if mode == "trunc":
        return lambda v: np.floor(np.multiply(v, c, out=v), out=v)
    if mode == "half_up":
        return lambda v: np.floor(np.add(np.multiply(v, c, out=v), 0.5, out=v), out=v)
    if mode == "half_even":
        return lambda v: np.rint(np.multiply(v, c, out=v), out=v)
    return lambda v, r: np.floor(np.multiply(np.add(v, r, out=v), c, out=v), out=v)


# ----------------------------------------------------------------------------------------------- checks
def _check_inputs(
    fmt: UnitFormat, X_in: object, R0: object, state: UnitState | None
) -> tuple[np.ndarray, UnitState]:
    X = np.asarray(X_in)
    if X.ndim != 2 or X.shape[1] != fmt.size:
        raise DataError(f"X has shape {X.shape}; the unit needs (n, {fmt.size}) (one sample per row)")
    if X.size and not np.issubdtype(X.dtype, np.integer):
        raise DataError(f"X has dtype {X.dtype}; pass integers (use fixed.format.quantize on floats)")
    X = X.astype(np.int64)
    lo, hi = word_range(fmt.width)
    if X.size and (X.min() < lo or X.max() > hi):
        raise DataError(
            f"X holds values outside signed {fmt.width}-bit [{lo}, {hi}]; quantize/saturate the input first"
        )
    if state is not None and R0 is not None:
        raise DataError("run got both R0 and state: pass R0 to start from a loaded R, or state to continue")
    if state is None:
        start = UnitState.reset(fmt)
        if R0 is not None:
            start.R = _check_r(fmt, R0, "R0")
        return X, start
    if not isinstance(state, UnitState):
        raise DataError(f"state must be a fixed.model.UnitState (Result.state), got {type(state).__name__}")
    mu = np.asarray(state.mu)
    if mu.shape != (fmt.size,) or not np.issubdtype(mu.dtype, np.integer):
        raise DataError(f"state.mu must be {fmt.size} integers, got shape {mu.shape} dtype {mu.dtype}")
    mlo, mhi = word_range(fmt.mu_bits)
    if fmt.centre_shift == 0 and np.any(mu != 0):
        raise DataError("state.mu is not zero but the format has centre_shift=0 (no running mean)")
    if mu.min() < mlo or mu.max() > mhi:
        raise DataError(f"state.mu holds values outside signed {fmt.mu_bits}-bit [{mlo}, {mhi}]")
    try:
        lfsr = operator.index(state.lfsr)
    except TypeError:
        raise DataError(f"state.lfsr={state.lfsr!r} must be an integer LFSR state") from None
    if not 0 < lfsr < (1 << fmt.lfsr_width):
        raise DataError(
            f"state.lfsr={lfsr} is not a {fmt.lfsr_width}-bit LFSR state (1..2^{fmt.lfsr_width}-1)"
        )
    return X, UnitState(_check_r(fmt, state.R, "state.R"), mu.astype(np.int64), lfsr)


def _check_r(fmt: UnitFormat, R_in: object, name: str) -> np.ndarray:
    R = np.asarray(R_in)
    if R.shape != (fmt.size, fmt.size):
        raise DataError(f"{name} has shape {R.shape}; the unit needs ({fmt.size}, {fmt.size})")
    if not np.issubdtype(R.dtype, np.integer):
        raise DataError(f"{name} has dtype {R.dtype}; pass integers in the R format (1.0 = 2^{fmt.r_frac})")
    R = R.astype(np.int64)
    if R.min() < fmt.r_min or R.max() > fmt.r_max:
        raise DataError(f"{name} holds values outside signed {fmt.r_width}-bit [{fmt.r_min}, {fmt.r_max}]")
    return R


def _learn_mask(learn: object, n: int) -> np.ndarray:
    """``learn`` as a bool array (n,): a bool (every sample) or one 0/1 per sample."""
    if isinstance(learn, (bool, np.bool_)):
        return np.full(n, bool(learn))
    arr = np.asarray(learn)
    if arr.shape != (n,):
        raise DataError(f"learn has shape {arr.shape}; give a bool or one bool per sample, shape ({n},)")
    if arr.dtype != np.bool_:
        if not np.issubdtype(arr.dtype, np.integer) or (arr.size and not np.isin(arr, (0, 1)).all()):
            raise DataError("learn must hold booleans (or 0/1) per sample")
        arr = arr.astype(bool)
    return arr


def _segments(mask: np.ndarray) -> list[tuple[int, int, bool]]:
    """Runs of equal values in ``mask``: (start, stop, value)."""
    n = len(mask)
    if n == 0:
        return []
    first = bool(mask[0])
    if mask.all() if first else not mask.any():
        return [(0, n, first)]
    edges = np.flatnonzero(mask[1:] != mask[:-1]) + 1
    starts = np.concatenate(([0], edges))
    stops = np.concatenate((edges, [n]))
    return [(int(a), int(b), bool(mask[a])) for a, b in zip(starts, stops, strict=True)]


# ----------------------------------------------------------------------------------------------- run
def run(
    fmt: UnitFormat,
    X: object,
    R0: object = None,
    *,
    learn: bool | np.ndarray = True,
    state: UnitState | None = None,
    trace_every: int = 0,
) -> Result:
    """Run the unit over the samples ``X`` (n, d) ints from ``R0`` (default identity) or from ``state``.

    Per sample (NUMERICS.md "One sample"): centring xc = sat_W(x − rnd(mu, m)) (m = centre_shift ≥ 1, else
    xc = x); Rw = sat_W(rnd(R, F_R − F)); z = sat_W(rnd(Rw xc, F)); v = sat_W(rnd(Σ_i z_i Rw_ij, F)); then, for a
    learning sample, mu ← mu + rnd((x << m) − mu, m) and R ← sat_WR(R − rnd(U, 2F + s − F_R)) with
    U = z_i sat_W(v_j − sat_W(rnd(z_i Rw_ij, F))) (``offdiag``) or U = z_i v_j − (Rw_ij << F) (``whiten``).
    ``learn``: True/False for every sample or a bool per sample; a sample with learn = 0 only computes z (no mu,
    R or LFSR change). ``state`` continues a previous run (``Result.state``): feeding a stream in chunks gives
    exactly what one run gives. ``trace_every`` > 0 records R after every ``trace_every`` samples.
    ``overflow_counts`` counts saturated words per quantity and sample: ``xc``, ``rw`` (view words each sample
    reads), ``z`` for every sample; ``v``, ``p``, ``e`` (offdiag only) and ``r`` for learning samples. Counts
    of consecutive chunks add up to one run's counts.
    """
    # W ≤ 18 and the format check bound every intermediate below 2^62: int64 arithmetic is exact.
    assert fmt.intermediate_bits <= MAX_INTERMEDIATE_BITS
    return _run(fmt, X, R0, learn, state, trace_every, uses_float_kernel(fmt))


_blas_libs: list[Any] | None = None


@contextlib.contextmanager
def _single_threaded_blas() -> Iterator[None]:
    """Keep numpy's BLAS to one thread for a forward block's matrix product: the products are small, and a
    second BLAS thread on a busy machine made them 10-100× slower (measured: 57×100 by 100×100 took 15 ms
    instead of 30 µs while other jobs ran). Uses threadpoolctl (a scikit-learn dependency) through its
    per-library controllers, which costs about a microsecond; without it nothing is limited."""
    global _blas_libs
    if _blas_libs is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:  # pragma: no cover - scikit-learn depends on threadpoolctl
            _blas_libs = []
        else:
            _blas_libs = [c for c in ThreadpoolController().lib_controllers if c.user_api == "blas"]
    before = [lib.get_num_threads() for lib in _blas_libs]
    for lib, threads in zip(_blas_libs, before, strict=True):
        if threads != 1:
            lib.set_num_threads(1)
    try:
        yield
    finally:
        for lib, threads in zip(_blas_libs, before, strict=True):
            if threads != 1:
                lib.set_num_threads(threads)


def _run(
    fmt: UnitFormat,
    X_in: object,
    R0: object,
    learn: object,
    state: UnitState | None,
    trace_every: int,
    use_float: bool,
) -> Result:
    """``run`` with the kernel chosen by the caller (tests prove the float64 and int64 kernels agree)."""
    X, st = _check_inputs(fmt, X_in, R0, state)
    n, d = X.shape
    mask = _learn_mask(learn, n)
    trace_every = operator.index(trace_every)
    if trace_every < 0:
        raise DataError(f"trace_every={trace_every} must be >= 0 (0: no trace)")
    dt = np.float64 if use_float else np.int64
    kernel = _FloatKernel(fmt) if use_float else _IntKernel(fmt)
    kernel.rand.remaining = int(np.count_nonzero(mask))
    counts = dict.fromkeys(OVERFLOW_KEYS, 0)
    lfsr = Lfsr(fmt.lfsr_width, fmt.lfsr_taps, st.lfsr)
    R = st.R.astype(dt)
    mu = st.mu.astype(dt)
    Z = np.empty((n, d), dtype=np.int64)
    trace: list[np.ndarray] = []
    wlo, whi = word_range(fmt.width)
    m = fmt.centre_shift
    rnd_view = kernel.rounder(fmt.view_rounding, fmt.view_drop)
    rnd_data = kernel.rounder(fmt.view_rounding, fmt.frac)
    rnd_mu = kernel.rounder(fmt.view_rounding, m)

    def sat(a: np.ndarray, lo: int, hi: int, key: str, times: int = 1) -> np.ndarray:
        """Clamp to [lo, hi] counting the clamped words (``times``: per sample that reads them)."""
        if a.size and (a.min() < lo or a.max() > hi):
            c = np.minimum(np.maximum(a, lo), hi)
            counts[key] += times * int(np.count_nonzero(c != a))
            return c
        return a

    for start, stop, learning in _segments(mask):
        if not learning:
            # one block: the same mu and R for every sample, z = sat(rnd(Xc Rwᵀ, F)) as one matrix product
            k = stop - start
            Xb = X[start:stop].astype(dt)
            if m:
                Xb = sat(Xb - rnd_mu(mu.copy()), wlo, whi, "xc")
            Rw = sat(rnd_view(R.copy()), wlo, whi, "rw", k)
            if k * d * d >= _BLAS_THREAD_MIN:
                with _single_threaded_blas():
                    acc = rnd_data(kernel.matmul(Xb, Rw.T))
            else:
                acc = rnd_data(kernel.matmul(Xb, Rw.T))
            Z[start:stop] = sat(acc, wlo, whi, "z")
            _record(trace, trace_every, start, stop, R)
            continue
        if use_float:
            R, mu = _learn_float(fmt, X, Z, start, stop, R, mu, counts, kernel.rand, lfsr, trace, trace_every)
            continue
        for t in range(start, stop):
            x = X[t].astype(dt)
            if m:
                xc = sat(x - rnd_mu(mu.copy()), wlo, whi, "xc")
                mu = mu + rnd_mu(x * (1 << m) - mu)
            else:
                xc = x
            Rw = sat(rnd_view(R.copy()), wlo, whi, "rw")
            z = sat(rnd_data(kernel.matvec(Rw, xc)), wlo, whi, "z")
            Z[t] = z
            if fmt.rule == "offdiag":
                P = z[:, None] * Rw
                v = sat(rnd_data(P.sum(axis=0)), wlo, whi, "v")
                p = sat(rnd_data(P), wlo, whi, "p")
                e = sat(np.subtract(v[None, :], p, out=p), wlo, whi, "e")
                U = np.multiply(z[:, None], e, out=e)
            else:
                v = sat(rnd_data(kernel.matvec(Rw.T, z)), wlo, whi, "v")
                U = np.subtract(np.multiply.outer(z, v), Rw * (1 << fmt.frac))
            R = sat(R - kernel.update(U, lfsr), fmt.r_min, fmt.r_max, "r")
            _record(trace, trace_every, t, t + 1, R)
    R_out = R.astype(np.int64)
    final = UnitState(R_out, mu.astype(np.int64), lfsr.value)
    R_trace = np.array(trace, dtype=np.int64).reshape(-1, d, d) if trace_every > 0 else None
    return Result(Z, R_out, any(counts.values()), counts, lfsr.value, R_trace, final)


def _float_round(mode: str) -> Callable[[np.ndarray], np.ndarray]:
    """In-place rounding of already scaled float64 values (y = v·2^−k exact) to integers by ``mode``."""
    if mode == "trunc":
        return lambda y: np.floor(y, out=y)
    if mode == "half_up":
        return lambda y: np.floor(np.add(y, 0.5, out=y), out=y)
    return lambda y: np.rint(y, out=y)


#: The same roundings on one python float (exact: the values are integers times a power of two below 2^52).
_SCALAR_ROUND: dict[str, Callable[[float], float]] = {
    "trunc": lambda y: float(math.floor(y)),
    "half_up": lambda y: float(math.floor(y + 0.5)),
    "half_even": lambda y: float(round(y)),  # python's round is half-to-even
}


def _learn_float(
    fmt: UnitFormat,
    X: np.ndarray,
    Z: np.ndarray,
    start: int,
    stop: int,
    R: np.ndarray,
    mu: np.ndarray,
    counts: dict[str, int],
    rand: _RandomStream,
    lfsr: Lfsr,
    trace: list[np.ndarray],
    trace_every: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Learning samples start..stop−1 on the float64 kernel, written for speed (the hot loop of fixed-point
    training); computes exactly the generic loop's integers, which the tests check.

    Every scaling by 2^−k is folded into one multiply before the rounding (exact: powers of two, values below
    2^52). Saturation checks that cannot fire are skipped from bounds: rounding is monotone, so the view's
    extremes are the rounded extremes of R; R's extremes are tracked as bounds (exact after a check, widened by
    the largest possible step, max|U|·2^−drop + 1, after each update, and recomputed only when they leave the
    range); |p| and |e| are bounded by max|z|·max|Rw| and max|v| + max|p|.
    """
    m, F = fmt.centre_shift, fmt.frac
    wlo, whi = word_range(fmt.width)
    rlo, rhi = fmt.r_min, fmt.r_max
    rnd = _float_round(fmt.view_rounding)
    rnd_scalar = _SCALAR_ROUND[fmt.view_rounding]
    c_view, c_data, c_mu = 2.0**-fmt.view_drop, 2.0**-F, 2.0**-m
    drop = fmt.update_drop
    c_upd = 2.0**-drop
    stochastic = fmt.rounding == "stochastic" and drop > 0
    rnd_upd = None if drop <= 0 or stochastic else _float_round(fmt.rounding)
    whiten = fmt.rule == "whiten"
    rw_scale = 2.0**F * c_upd  # (Rw << F) at the update's scale
    Xf = X[start:stop].astype(np.float64)
    # bounds on R's extremes: exact after a check, widened by the largest possible step after each update
    r_lo, r_hi = float(R.min()), float(R.max())
    exact = True
    e_limit = float(max(-wlo, whi))

    vmin, vmax = np.minimum.reduce, np.maximum.reduce

    def sat_vec(a: np.ndarray, key: str) -> float:
        """Clamp the vector ``a`` to the W-bit range in place (counting); returns max |a| afterwards."""
        lo, hi = float(vmin(a)), float(vmax(a))
        if lo < wlo or hi > whi:
            counts[key] += int(np.count_nonzero((a < wlo) | (a > whi)))
            np.clip(a, wlo, whi, out=a)
            lo, hi = max(lo, wlo), min(hi, whi)
        return max(-lo, hi)

    def sat_mat(a: np.ndarray, key: str) -> None:
        lo, hi = vmin(a, axis=None), vmax(a, axis=None)
        if lo < wlo or hi > whi:
            counts[key] += int(np.count_nonzero((a < wlo) | (a > whi)))
            np.clip(a, wlo, whi, out=a)

    mu = mu.copy()  # updated in place below
    Zf = np.empty((stop - start, fmt.size))
    view_drop = fmt.view_drop
    # xc = x − rnd(mu·2^−m) cannot saturate while max|x| + max|rnd(mu·2^−m)| fits: mu only moves towards the
    # samples, so max|mu·2^−m| stays below the larger of its start value and max|x| over the block
    x_abs = float(vmax(np.abs(Xf), axis=None)) if len(Xf) else 0.0
    xc_safe = 2.0 * max(x_abs, float(vmax(np.abs(mu), axis=None)) * c_mu) + 1.0 <= min(-wlo, whi)
    for t in range(stop - start):
        x = Xf[t]
        if m:
            y = np.multiply(mu, c_mu)  # mu in x's units; ((x << m) − mu)·2^−m = x − y exactly
            xc = np.subtract(x, rnd(y.copy()))
            if not xc_safe:
                sat_vec(xc, "xc")
            np.add(mu, rnd(np.subtract(x, y, out=y)), out=mu)
        else:
            xc = x
        # view Rw = sat_W(rnd(R, F_R − F)); its extremes are rnd of R's extremes
        Rw = rnd(np.multiply(R, c_view)) if view_drop else R.copy()
        v_lo, v_hi = rnd_scalar(r_lo * c_view), rnd_scalar(r_hi * c_view)
        if (v_lo < wlo or v_hi > whi) and not exact:
            r_lo, r_hi = float(vmin(R, axis=None)), float(vmax(R, axis=None))
            exact = True
            v_lo, v_hi = rnd_scalar(r_lo * c_view), rnd_scalar(r_hi * c_view)
        if v_lo < wlo or v_hi > whi:
            counts["rw"] += int(np.count_nonzero((Rw < wlo) | (Rw > whi)))
            np.clip(Rw, wlo, whi, out=Rw)
            v_lo, v_hi = max(v_lo, wlo), min(v_hi, whi)
        rw_abs = max(-v_lo, v_hi)
        z = Zf[t]
        rnd(np.multiply(np.matmul(Rw, xc, out=z), c_data, out=z))
        z_abs = sat_vec(z, "z")
        zc = z * c_data
        v = rnd(np.matmul(zc, Rw))
        v_abs = sat_vec(v, "v")
        if whiten:
            upd = np.multiply.outer(z * c_upd, v)
            upd -= Rw * rw_scale
            step = (z_abs * v_abs + rw_abs * 2.0**F) * c_upd + 1.0
        else:
            p = rnd(np.multiply(zc[:, None], Rw))
            p_bound = z_abs * rw_abs * c_data + 1.0
            if p_bound > whi or -p_bound < wlo:
                sat_mat(p, "p")
                p_bound = float(vmax(np.abs(p), axis=None))
            e = np.subtract(v, p, out=p)
            e_bound = v_abs + p_bound
            if e_bound > whi or -e_bound < wlo:
                sat_mat(e, "e")
                e_bound = e_limit
            upd = np.multiply((z * c_upd)[:, None], e, out=e)
            step = z_abs * e_bound * c_upd + 1.0
        if stochastic:
            np.floor(np.add(upd, rand.next(lfsr), out=upd), out=upd)
        elif rnd_upd is not None:
            rnd_upd(upd)
        R = np.subtract(R, upd, out=upd)
        # every rounded step is at most |U|·2^−drop + 1 in size: widen the bounds, check R only if they leave
        r_lo, r_hi, exact = r_lo - step, r_hi + step, False
        if r_lo < rlo or r_hi > rhi:
            r_lo, r_hi = float(vmin(R, axis=None)), float(vmax(R, axis=None))
            exact = True
            if r_lo < rlo or r_hi > rhi:
                counts["r"] += int(np.count_nonzero((R < rlo) | (R > rhi)))
                np.clip(R, rlo, rhi, out=R)
                r_lo, r_hi = max(r_lo, rlo), min(r_hi, rhi)
        if trace_every > 0:
            _record(trace, trace_every, start + t, start + t + 1, R)
    Z[start:stop] = Zf
    return R, mu


def _record(trace: list[np.ndarray], every: int, start: int, stop: int, R: np.ndarray) -> None:
    """Append R once for every multiple of ``every`` among the sample counts start+1 .. stop."""
    if every > 0:
        for _ in range(stop // every - start // every):
            trace.append(R.astype(np.int64))


class _IntKernel:
    """int64 arithmetic: exact for every legal format."""

    def __init__(self, fmt: UnitFormat):
        self.fmt = fmt
        self.drop = fmt.update_drop
        self.stochastic = fmt.rounding == "stochastic" and self.drop > 0
        self.rnd_update = _int_rounder(fmt.rounding, max(self.drop, 0))
        self.rand = _RandomStream(fmt, np.int64)

    @staticmethod
    def rounder(mode: str, k: int) -> Callable[..., np.ndarray]:
        return _int_rounder(mode, k)

    def matmul(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """A forward block's product: float64 BLAS when every sum fits 52 bits (exact), else int64."""
        if self.fmt.acc_bits <= FLOAT_EXACT_BITS:
            return (a.astype(np.float64) @ b.astype(np.float64)).astype(np.int64)
        return a @ b

    @staticmethod
    def matvec(a: np.ndarray, x: np.ndarray) -> np.ndarray:
        return a @ x

    def update(self, U: np.ndarray, lfsr: Lfsr) -> np.ndarray:
        if self.stochastic:
            return self.rnd_update(U, self.rand.next(lfsr))
        if self.drop >= 0:
            return self.rnd_update(U)
        return U << -self.drop


class _FloatKernel(_IntKernel):
    """float64 arithmetic on integer values below 2^52: the same integers as ``_IntKernel``, faster."""

    def __init__(self, fmt: UnitFormat):
        super().__init__(fmt)
        self.rnd_update = _float_rounder(fmt.rounding, max(self.drop, 0))
        self.rand = _RandomStream(fmt, np.float64)
        self.left = 2.0 ** max(0, -self.drop)

    @staticmethod
    def rounder(mode: str, k: int) -> Callable[..., np.ndarray]:
        return _float_rounder(mode, k)

    @staticmethod
    def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return a @ b

    def update(self, U: np.ndarray, lfsr: Lfsr) -> np.ndarray:
        if self.stochastic:
            return self.rnd_update(U, self.rand.next(lfsr))
        if self.drop >= 0:
            return self.rnd_update(U)
        return U * self.left


class _RandomStream:
    """Stochastic rounding's random values per learning sample: d² LFSR values consumed column j outer, row i
    inner, masked to the update's dropped bits and laid out [i, j]. Drawn in chunks of at most ``remaining``
    samples, so the LFSR never steps past the values actually used."""

    def __init__(self, fmt: UnitFormat, dtype: type):
        self.d = fmt.size
        self.bits = max(fmt.update_drop, 0)
        self.dtype = dtype
        self.chunk = max(1, _LFSR_CHUNK_WORDS // (self.d * self.d))
        self.remaining = 0  # learning samples still to come in this run (set by _run)
        self.buf: np.ndarray = np.empty((0, self.d, self.d), dtype=dtype)
        self.pos = 0

    def next(self, lfsr: Lfsr) -> np.ndarray:
        """Values for one sample."""
        d = self.d
        if self.pos == len(self.buf):
            k = min(self.chunk, self.remaining)
            raw = lfsr.draw(k * d * d, bits=self.bits).reshape(k, d, d)  # [sample, j, i]
            # the float kernel adds r·2^−drop to the already scaled update
            self.buf = raw if self.dtype is np.int64 else np.multiply(raw, 2.0**-self.bits)
            self.pos = 0
            self.remaining -= k
        out = self.buf[self.pos].T  # [i, j]
        self.pos += 1
        return out
