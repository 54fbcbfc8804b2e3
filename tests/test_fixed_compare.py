"""Integer model vs the float offdiag rule: the SPEC §4 acceptance numbers and honest divergence reporting."""

from __future__ import annotations

import numpy as np
import pytest

from analogdecorr.errors import ConfigError
from analogdecorr.fixed.compare import (
    compare,
    correlated_input,
    float_offdiag,
    input_scale,
    residual_correlation,
)
from analogdecorr.fixed.format import UnitFormat

ACCEPT = dict(size=4, width=16, frac=12, r_width=24, r_frac=20, shift=12)


def test_acceptance_half_even_tracks_float() -> None:
    rep = compare(UnitFormat(**ACCEPT, rounding="half_even"), samples=40000, rho=0.3, seed=0)
    assert 0.28 < rep["input_corr"] < 0.32  # the stream really is correlated ...
    assert rep["residual_corr_float"] < 0.01  # ... and the float rule decorrelates it
    assert abs(rep["residual_corr_int"] - rep["residual_corr_float"]) <= 0.1 * rep["residual_corr_float"]
    assert rep["max_abs_R_error"] <= 1e-3
    assert rep["max_abs_z_error_lsb"] < 16
    assert not rep["overflow"] and not rep["diverged"] and rep["diverged_reasons"] == []


def test_trunc_at_fr_equal_f_is_reported_as_diverged() -> None:
    rep = compare(UnitFormat(4, 16, 12, 16, 12, 12, rounding="trunc"), samples=40000)
    assert rep["diverged"]
    assert rep["overflow"] and rep["overflow_counts"]["r"] > 0
    # the ½-LSB-per-sample bias pushes R to the top of its range and destroys the decorrelation
    assert rep["R_int_diag_mean"] > 4.0
    assert rep["max_abs_R_error"] > 1.0
    assert rep["residual_corr_int"] > 10 * rep["residual_corr_float"]
    assert any("overflow" in r for r in rep["diverged_reasons"])


def test_trunc_bias_drifts_even_with_wide_r() -> None:
    # F_R = 20 keeps it bounded over this stream, but the error grows steadily: ≈ ½ LSB of R per sample
    fmt = UnitFormat(**ACCEPT, rounding="trunc")
    rep = compare(fmt, samples=16000)
    nearest = compare(UnitFormat(**ACCEPT, rounding="half_even"), samples=16000)
    trace = np.array(rep["R_error_trace"])
    assert np.all(np.diff(trace) > 0)
    drift_lsb_per_sample = (trace[-1] - trace[0]) * 2**fmt.r_frac / (rep["trace_every"] * (len(trace) - 1))
    assert 0.2 < drift_lsb_per_sample < 1.0
    assert rep["max_abs_R_error"] > 10 * nearest["max_abs_R_error"]


def test_float_reference_is_the_rank1_offdiag_rule() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 3))
    eta = 0.01
    z, R, _ = float_offdiag(x, eta)
    Rm = np.eye(3)
    for t in range(5):
        zt = Rm @ x[t]
        np.testing.assert_allclose(z[t], zt)
        C = np.outer(zt, zt) - np.diag(zt * zt)
        Rm = Rm - eta * C @ Rm
    np.testing.assert_allclose(R, Rm)


def test_input_scaling_and_stream() -> None:
    assert input_scale(UnitFormat(**ACCEPT)) == 1.0  # ±8 fits W − F = 4 integer bits
    small = UnitFormat(2, 8, 6, 8, 6, 4)  # range ±2: std 0.25 keeps 8σ inside
    assert input_scale(small) == 0.25
    X = correlated_input(small, 20000, 0.5, 1)
    assert X.dtype == np.int64 and X.min() >= -128 and X.max() <= 127
    assert abs(X.std() / 64 - 0.25) < 0.01
    assert abs(np.corrcoef(X, rowvar=False)[0, 1] - 0.5) < 0.03
    assert np.isnan(residual_correlation(np.array([[1.0, np.nan], [2.0, 3.0]])))


def test_compare_argument_errors() -> None:
    with pytest.raises(ConfigError, match="rho"):
        compare(UnitFormat(**ACCEPT), samples=100, rho=1.0)
    with pytest.raises(ConfigError, match="rho"):
        compare(UnitFormat(**ACCEPT), samples=100, rho=-0.5)
    with pytest.raises(ConfigError, match="samples"):
        compare(UnitFormat(**ACCEPT), samples=4)
