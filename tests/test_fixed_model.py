"""The integer model against NUMERICS.md: hand-computed samples, a plain-python reference, delay, overflow."""

from __future__ import annotations

import math
import time
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analogdecorr.errors import DataError
from analogdecorr.fixed.format import ROUNDING_MODES, UnitFormat, quantize
from analogdecorr.fixed.model import OVERFLOW_KEYS, identity, run


# ----------------------------------------------------------------------------------- plain-python reference
def _rnd(v: int, k: int, mode: str, r: int = 0) -> int:
    if k == 0:
        return v
    q = Fraction(v, 1 << k)
    if mode == "trunc":
        return math.floor(q)
    if mode == "half_up":
        return math.floor(q + Fraction(1, 2))
    if mode == "half_even":
        return round(q)
    return math.floor(Fraction(v + (r & ((1 << k) - 1)), 1 << k))


def _sat(v: int, bits: int, flags: dict, key: str) -> int:
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if not lo <= v <= hi:
        flags[key] += 1
    return max(lo, min(hi, v))


def reference_run(fmt: UnitFormat, X: list[list[int]], R0: list[list[int]], learn: bool = True):
    """NUMERICS.md read literally, element by element: python ints and Fractions only (no numpy/helpers)."""
    d, W, F = fmt.size, fmt.width, fmt.frac
    other = "half_even" if fmt.rounding == "stochastic" else fmt.rounding
    flags = dict.fromkeys(OVERFLOW_KEYS, 0)
    state = fmt.lfsr_seed
    R = [row[:] for row in R0]
    zs = []

    def view(Rm: list[list[int]], count: bool) -> list[list[int]]:
        scratch = dict.fromkeys(OVERFLOW_KEYS, 0)
        out = [
            [_sat(_rnd(Rm[i][j], fmt.r_frac - F, other), W, scratch, "rw") for j in range(d)]
            for i in range(d)
        ]
        if count:
            flags["rw"] += scratch["rw"]
        return out

    for x in X:
        Rw = view(R, True)
        z = [_sat(_rnd(sum(Rw[i][j] * x[j] for j in range(d)), F, other), W, flags, "z") for i in range(d)]
        zs.append(z)
        if not learn:
            continue
        p = [[_sat(_rnd(z[i] * Rw[i][j], F, other), W, flags, "p") for j in range(d)] for i in range(d)]
        v = [_sat(_rnd(sum(z[i] * Rw[i][j] for i in range(d)), F, other), W, flags, "v") for j in range(d)]
        e = [[_sat(v[j] - p[i][j], W, flags, "e") for j in range(d)] for i in range(d)]
        drop = fmt.update_drop
        new = [row[:] for row in R]
        for j in range(d):  # consumption order: column j outer, row i inner
            for i in range(d):
                u = z[i] * e[i][j]
                if drop > 0 and fmt.rounding == "stochastic":
                    delta = _rnd(u, drop, "stochastic", state)
                    fb = 0
                    for t in fmt.lfsr_taps:
                        fb ^= (state >> (t - 1)) & 1
                    state = ((state << 1) | fb) % (1 << fmt.lfsr_width)
                elif drop >= 0:
                    delta = _rnd(u, drop, fmt.rounding)
                else:
                    delta = u * (1 << -drop)
                new[i][j] = _sat(R[i][j] - delta, fmt.r_width, flags, "r")
        R = new
    return zs, R, flags, state


def assert_matches_reference(fmt: UnitFormat, X: np.ndarray, R0: np.ndarray, learn: bool = True) -> None:
    res = run(fmt, X, R0, learn=learn)
    zs, R, flags, state = reference_run(fmt, X.tolist(), R0.tolist(), learn)
    assert res.z.tolist() == zs
    assert res.R.tolist() == R
    assert res.overflow_counts == flags
    assert res.overflow == any(flags.values())
    assert res.lfsr_state == state


# ----------------------------------------------------------------------------------- hand-computed sample
# W=8, F=4, W_R=10, F_R=6, s=2: view drops 2 bits, the update drops 2F+s−F_R = 4 bits.
HAND = dict(size=2, width=8, frac=4, r_width=10, r_frac=6, shift=2)
R0_HAND = [[66, -10], [6, 63]]  # 1.03125, -0.15625 / 0.09375, 0.984375
X_HAND = [24, -4]  # 1.5, -0.25
# Worked by hand (see the comments in test_hand_computed_sample); z, R after one sample for each mode.
HAND_EXPECTED = {
    # Rw = [[16,-2],[2,16]]: acc = [392, -16] -> z = [24 (24.5 tie->even), -1]
    # P = [[384,-48],[-2,-16]] -> p = [[24,-3],[0,-1]], v = [rnd(382/16)=24, -4], e = [[0,-1],[24,-3]]
    # z_i e_ij = [[0,-24],[-24,3]] -> /16 half_even: [[0,-2],[-2,0]]; R - delta
    "half_even": ([24, -1], [[66, -8], [8, 63]]),
    # Rw = [[17,-2],[2,16]]: acc = [416, -16] -> z = [26, -1]; P = [[442,-52],[-2,-16]]
    # p = [[28,-3],[0,-1]], v = [rnd(440/16 = 27.5) = 28, rnd(-4.25) = -4], e = [[0,-1],[28,-3]]
    # z e = [[0,-26],[-28,3]] -> [[0,-2],[-2,0]]
    "half_up": ([26, -1], [[66, -8], [8, 63]]),
    # Rw = [[16,-3],[1,15]]: acc = [396, -36] -> z = [24, -3]; P = [[384,-72],[-3,-45]]
    # p = [[24,-5],[-1,-3]]
    # v = [floor(381/16) = 23, floor(-117/16) = -8], e = [[-1,-3],[24,-5]], z e = [[-24,-72],[-72,15]]
    # -> floor(/16) = [[-2,-5],[-5,0]]
    "trunc": ([24, -3], [[68, -5], [11, 63]]),
    # as half_even up to z e = [[0,-24],[-24,3]]; LFSR values in order (0,0),(1,0),(0,1),(1,1):
    # 0xACE1, 0x159C3, 0x2B386, 0x5670D -> low 4 bits 1, 3, 6, 13
    # floor((0+1)/16)=0, floor((-24+3)/16)=-2, floor((-24+6)/16)=-2, floor((3+13)/16)=1
    "stochastic": ([24, -1], [[66, -8], [8, 62]]),
}


@pytest.mark.parametrize("mode", ROUNDING_MODES)
def test_hand_computed_sample(mode: str) -> None:
    fmt = UnitFormat(**HAND, rounding=mode)
    res = run(fmt, np.array([X_HAND]), np.array(R0_HAND))
    z, R = HAND_EXPECTED[mode]
    assert res.z.tolist() == [z]
    assert res.R.tolist() == R
    assert not res.overflow
    assert res.lfsr_state == (0xACE1B if mode == "stochastic" else 0xACE1)
    zs, Rr, _, _ = reference_run(fmt, [X_HAND], R0_HAND)
    assert (zs, Rr) == ([z], R)


# ----------------------------------------------------------------------------------- reference comparison
@st.composite
def formats(draw: st.DrawFn) -> UnitFormat:
    d = draw(st.integers(2, 4))
    W = draw(st.integers(8, 12))
    F = draw(st.integers(max(0, W - 6), W - 2))
    FR = F + draw(st.integers(0, 6))
    WR = FR + (W - F) + draw(st.integers(0, 2))
    s = draw(st.integers(0, FR))
    mode = draw(st.sampled_from(ROUNDING_MODES))
    return UnitFormat(
        d,
        W,
        F,
        WR,
        FR,
        s,
        rounding=mode,
        lfsr_seed=draw(st.integers(1, (1 << 32) - 1)),
    )


@settings(max_examples=120, deadline=None)
@given(fmt=formats(), data=st.data())
def test_model_matches_python_reference(fmt: UnitFormat, data: st.DataObject) -> None:
    n = data.draw(st.integers(1, 12))
    seed = data.draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    # mostly moderate values with the occasional extreme word, so saturation paths run too
    X = np.clip(
        rng.normal(0, fmt.one * data.draw(st.sampled_from([0.3, 1.0, 4.0])), (n, fmt.size)).round(),
        fmt.w_min,
        fmt.w_max,
    ).astype(np.int64)
    R0 = identity(fmt) + rng.integers(-fmt.r_one // 4, fmt.r_one // 4 + 1, (fmt.size, fmt.size))
    R0 = np.clip(R0, fmt.r_min, fmt.r_max)
    assert_matches_reference(fmt, X, R0, learn=data.draw(st.booleans()))


@pytest.mark.parametrize("mode", ROUNDING_MODES)
def test_model_matches_reference_longer_stream(mode: str) -> None:
    fmt = UnitFormat(3, 10, 6, 16, 11, 4, rounding=mode)
    rng = np.random.default_rng(1)
    X, _ = quantize(rng.normal(0, 1.5, (150, 3)), 10, 6)
    assert_matches_reference(fmt, X, identity(fmt))


# ----------------------------------------------------------------------------------- behaviour
@pytest.mark.parametrize("mode", ROUNDING_MODES)
def test_identity_passthrough(mode: str) -> None:
    fmt = UnitFormat(4, 12, 8, 20, 16, 16, rounding=mode)
    rng = np.random.default_rng(0)
    X = rng.integers(fmt.w_min, fmt.w_max + 1, (300, 4))
    off = run(fmt, X, learn=False)  # forward only: any word passes through R = I unchanged
    np.testing.assert_array_equal(off.z, X)
    np.testing.assert_array_equal(off.R, identity(fmt))
    assert not off.overflow
    # learning with the smallest η and |x| < 2^(F-1): every update z_i e_ij / 2^(2F) is below half an LSB
    small = rng.integers(-(1 << 7) + 1, 1 << 7, (300, 4))
    on = run(fmt, small)
    np.testing.assert_array_equal(on.z, small)
    if mode != "trunc" and mode != "stochastic":
        np.testing.assert_array_equal(on.R, identity(fmt))
    else:  # floor/stochastic rounding move R by at most one LSB per sample
        assert np.abs(on.R - identity(fmt)).max() <= 300


def test_overflow_flags_fire() -> None:
    fmt = UnitFormat(2, 8, 4, 12, 6, 2)
    big = np.array([[127, 127], [-128, -128]])
    # z: R = 2·I doubles every input beyond the 8-bit range
    res = run(fmt, big, identity(fmt) * 2, learn=False)
    assert res.overflow and res.overflow_counts["z"] == 4
    assert res.z.tolist() == [[127, 127], [-128, -128]]
    # rw: R's integer range (6 bits) exceeds the view's (4 bits): 8.0 does not fit W=8, F=4
    res = run(fmt, np.array([[1, 0]]), np.array([[8 * 64, 0], [0, 64]]), learn=False)
    assert res.overflow_counts["rw"] == 1 and res.z[0, 0] == round(127 / 16) and res.overflow
    # r: η = 1 and R = I make the off-diagonal update z_0 z_1 / 2^(2F - F_R) = -16256 / 4 = -4064, far past
    # the 10-bit R range; nothing else saturates (z = x, v = z, e_ij = z_j)
    eta1 = UnitFormat(2, 8, 4, 10, 6, 0)
    res = run(eta1, np.array([[-128, 127]]))
    assert res.overflow and res.overflow_counts == {"rw": 0, "z": 0, "p": 0, "v": 0, "e": 0, "r": 2}
    assert res.R.tolist() == [[64, eta1.r_max], [eta1.r_max, 64]]
    # nothing saturates on a quiet stream, and the flag stays clear
    quiet = run(fmt, np.array([[3, -2], [1, 4]]))
    assert not quiet.overflow and set(quiet.overflow_counts) == set(OVERFLOW_KEYS)
    assert sum(quiet.overflow_counts.values()) == 0


def test_input_validation() -> None:
    fmt = UnitFormat(2, 8, 4, 12, 6, 2)
    with pytest.raises(DataError, match=r"\(n, 2\)"):
        run(fmt, np.zeros((3, 3), dtype=np.int64))
    with pytest.raises(DataError, match="outside signed 8-bit"):
        run(fmt, np.array([[128, 0]]))
    with pytest.raises(DataError, match="quantize"):
        run(fmt, np.zeros((1, 2)))
    with pytest.raises(DataError, match="R0_int holds"):
        run(fmt, np.zeros((1, 2), dtype=np.int64), np.array([[1 << 11, 0], [0, 0]]))
    with pytest.raises(DataError, match=r"\(2, 2\)"):
        run(fmt, np.zeros((1, 2), dtype=np.int64), np.eye(3, dtype=np.int64))
    empty = run(fmt, np.zeros((0, 2), dtype=np.int64))
    assert empty.z.shape == (0, 2) and empty.R.tolist() == identity(fmt).tolist()


def test_trace_and_speed() -> None:
    fmt = UnitFormat(8, 16, 12, 24, 20, 12, rounding="stochastic")
    X, _ = quantize(np.random.default_rng(0).normal(0, 1, (10_000, 8)), 16, 12)
    t0 = time.perf_counter()
    res = run(fmt, X, trace_every=2500)
    elapsed = time.perf_counter() - t0
    assert elapsed < 10.0, f"10 000 samples at d=8 took {elapsed:.1f} s"
    assert res.R_trace.shape == (4, 8, 8)
    np.testing.assert_array_equal(res.R_trace[-1], res.R)
    np.testing.assert_array_equal(res.R_trace[1], run(fmt, X[:5000]).R)
