"""Integer model against the float rule on one input stream (verification layer 4 of SPEC §4).

The float reference is SPEC §2's per-sample rank-1 rule of the format (``offdiag``: R ← R − η (z zᵀ − diag(z²)) R;
``whiten``: R ← R − η (z zᵀ R − R)), with η = 2^−s and, when the format centres, a float running mean
mu ← mu + 2^−m (x − mu) subtracted first, run sample by sample on exactly the quantised input the integer model
sees, so every difference is the fixed-point arithmetic.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ConfigError
from .format import UnitFormat, dequantize, quantize
from .model import run

#: ``diverged`` thresholds (see ``compare``).
R_ERROR_LIMIT = 0.05  # max |R − R_float| in real units
CORR_RATIO_LIMIT = 2.0  # integer residual off-diagonal correlation vs float's ...
CORR_EXCESS_LIMIT = 0.02  # ... and its absolute excess
HEADROOM_SIGMAS = 8.0


def input_scale(fmt: UnitFormat) -> float:
    """Standard deviation of each input feature: 1 if ±8σ fits the W-bit range, else shrunk until it does."""
    limit = 2.0 ** (fmt.width - fmt.frac - 1)  # |x| < limit in real units
    return min(1.0, limit / HEADROOM_SIGMAS)


def correlated_input(fmt: UnitFormat, samples: int, rho: float, seed: int, mean: float = 0.0) -> np.ndarray:
    """Gaussian (samples, d), pairwise correlation ``rho``, std ``input_scale(fmt)``, every feature's mean
    ``mean`` × that std, quantised half-even."""
    d = fmt.size
    if not -1.0 / (d - 1) < rho < 1.0:
        raise ConfigError(f"rho={rho} gives no valid {d}x{d} correlation matrix; use -1/(d-1) < rho < 1")
    cov = (1.0 - rho) * np.eye(d) + rho * np.ones((d, d))
    g = np.random.default_rng(seed).standard_normal((samples, d))
    x = (g @ np.linalg.cholesky(cov).T + mean) * input_scale(fmt)
    X, _ = quantize(x, fmt.width, fmt.frac, "half_even")
    return X


def float_rule(
    x: np.ndarray, eta: float, rule: str = "offdiag", centre_shift: int = 0, trace_every: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Float64 per-sample ``rule`` from R = I (and mu = 0 when ``centre_shift`` m ≥ 1: xc = x − mu, then
    mu ← mu + 2^−m (x − mu)); returns (z (n, d), final R, R trace like ``run``'s)."""
    n, d = x.shape
    R = np.eye(d)
    mu = np.zeros(d)
    momentum = 2.0**-centre_shift if centre_shift else 0.0
    z_all = np.empty((n, d))
    trace = []
    with np.errstate(over="ignore", invalid="ignore"):
        for t in range(n):
            xc = x[t] - mu
            mu = mu + momentum * (x[t] - mu)
            z = R @ xc
            z_all[t] = z
            v = R.T @ z  # (zᵀR)_j; (z zᵀ R)_ij = z_i v_j, (diag(z²) R)_ij = z_i² R_ij
            if rule == "offdiag":
                R = R - eta * (np.outer(z, v) - (z * z)[:, None] * R)
            else:
                R = R - eta * (np.outer(z, v) - R)
            if trace_every and (t + 1) % trace_every == 0:
                trace.append(R)
    return z_all, R, np.array(trace).reshape(-1, d, d)


def residual_correlation(z: np.ndarray) -> float:
    """Mean |off-diagonal correlation coefficient| of z's columns (NaN if a column is constant/non-finite)."""
    if not np.isfinite(z).all():
        return float("nan")
    with np.errstate(invalid="ignore", divide="ignore"):
        c = np.corrcoef(z, rowvar=False)
    d = c.shape[0]
    return float(np.abs(c[~np.eye(d, dtype=bool)]).mean())


def compare(
    fmt: UnitFormat, samples: int = 40000, rho: float = 0.3, seed: int = 0, mean: float = 0.0
) -> dict[str, Any]:
    """Run integer model and float reference (the format's rule and centring) on one correlated stream and
    report how far apart they are.

    Input: ``correlated_input`` (std 1 when ±8σ fits, i.e. W − F ≥ 4; ``mean`` in units of that std, which only
    a centring format removes). Residual correlations are over the last
    quarter of the stream. ``diverged`` is True (reasons in ``diverged_reasons``) when the float R went
    non-finite, the integer unit saturated anything (overflow), max |R − R_float| > ``R_ERROR_LIMIT`` or the
    integer residual correlation exceeds both ``CORR_RATIO_LIMIT`` × float's and float's +
    ``CORR_EXCESS_LIMIT``.
    """
    if samples < 8:
        raise ConfigError(f"samples={samples}: compare needs at least 8 samples (it uses the last quarter)")
    X = correlated_input(fmt, samples, rho, seed, mean)
    x = dequantize(X, fmt.frac)
    checkpoints = 8
    every = samples // checkpoints
    res = run(fmt, X, trace_every=every)
    zf, Rf, trace_f = float_rule(x, fmt.eta, fmt.rule, fmt.centre_shift, trace_every=every)
    R_int = dequantize(res.R, fmt.r_frac)
    z_int = dequantize(res.z, fmt.frac)
    tail = slice(samples - samples // 4, samples)
    float_finite = bool(np.isfinite(Rf).all() and np.isfinite(zf).all())
    r_err = float(np.abs(R_int - Rf).max()) if float_finite else float("inf")
    r_err_trace = [
        float(np.abs(a - b).max()) for a, b in zip(dequantize(res.R_trace, fmt.r_frac), trace_f, strict=True)
    ]
    z_err_lsb = float(np.abs(res.z - np.ldexp(zf, fmt.frac)).max()) if float_finite else float("inf")
    corr_int = residual_correlation(z_int[tail])
    corr_float = residual_correlation(zf[tail])
    reasons = []
    if not float_finite:
        reasons.append("float R non-finite")
    if res.overflow:
        reasons.append("integer saturation (overflow)")
    if not r_err <= R_ERROR_LIMIT:
        reasons.append(f"max|R - R_float| = {r_err:.3g} > {R_ERROR_LIMIT}")
    if not (corr_int <= CORR_RATIO_LIMIT * corr_float or corr_int <= corr_float + CORR_EXCESS_LIMIT):
        reasons.append(f"integer residual correlation {corr_int:.4f} vs float {corr_float:.4f}")
    return {
        "format": fmt.to_dict(),
        "samples": samples,
        "rho": rho,
        "seed": seed,
        "mean": mean,
        "input_std": input_scale(fmt),
        "input_corr": residual_correlation(x[tail]),
        "max_abs_R_error": r_err,
        "max_abs_R_error_lsb": r_err * 2.0**fmt.r_frac,
        "R_error_trace": r_err_trace,
        "trace_every": every,
        "max_abs_z_error_lsb": z_err_lsb,
        "residual_corr_int": corr_int,
        "residual_corr_float": corr_float,
        "R_int_diag_mean": float(np.diag(R_int).mean()),
        "R_float_diag_mean": float(np.diag(Rf).mean()) if float_finite else float("nan"),
        "overflow": bool(res.overflow),
        "overflow_counts": dict(res.overflow_counts),
        "diverged": bool(reasons),
        "diverged_reasons": reasons,
    }
