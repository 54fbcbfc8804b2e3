"""Integer model vs the float offdiag rule: the SPEC §4 acceptance numbers and honest divergence reporting."""

from __future__ import annotations

import numpy as np
import pytest

from analogdecorr.errors import ConfigError
from analogdecorr.fixed.compare import (
    compare,
    correlated_input,
    float_rule,
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


@pytest.mark.parametrize("rule", ["offdiag", "whiten"])
@pytest.mark.parametrize("m", [0, 2])
def test_float_reference_is_the_rank1_rule(rule: str, m: int) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 3)) + 1.0
    eta = 0.01
    z, R, _ = float_rule(x, eta, rule, m)
    Rm = np.eye(3)
    mu = np.zeros(3)
    for t in range(5):
        zt = Rm @ (x[t] - mu if m else x[t])
        np.testing.assert_allclose(z[t], zt)
        if m:
            mu = 0.75 * mu + 0.25 * x[t]  # momentum 2^-2
        C = np.outer(zt, zt)
        Rm = Rm - eta * ((C - np.diag(zt * zt)) @ Rm if rule == "offdiag" else C @ Rm - Rm)
    np.testing.assert_allclose(R, Rm)


@pytest.mark.parametrize("rule", ["offdiag", "whiten"])
def test_centring_removes_what_decorrelation_cannot(rule: str) -> None:
    # every feature has mean 1σ: without centring R decorrelates the second moment, not the covariance
    plain = compare(UnitFormat(**ACCEPT, rule=rule), samples=20000, mean=1.0)
    centred = compare(UnitFormat(**ACCEPT, rule=rule, centre_shift=6), samples=20000, mean=1.0)
    assert plain["residual_corr_int"] > 0.1 and plain["residual_corr_float"] > 0.1  # measured 0.20
    assert centred["residual_corr_int"] < 0.01  # measured 0.006
    for rep in (plain, centred):  # the unit tracks its float twin either way
        assert not rep["diverged"] and rep["max_abs_R_error"] <= 1e-3 and rep["max_abs_z_error_lsb"] < 16
    assert centred["format"]["centre_shift"] == 6 and centred["mean"] == 1.0


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
