"""The integer model against NUMERICS.md: hand-computed samples, a plain-python reference, both kernels,
centring, whiten, per-sample learn, chunked state, overflow."""

from __future__ import annotations

import math
import time
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analogdecorr.errors import DataError
from analogdecorr.fixed.format import ROUNDING_MODES, UNIT_RULES, UnitFormat, quantize
from analogdecorr.fixed.model import (
    OVERFLOW_KEYS,
    Result,
    UnitState,
    _run,
    identity,
    run,
    uses_float_kernel,
)


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


def reference_run(fmt: UnitFormat, X: list[list[int]], R0: list[list[int]], learn=True, mu0=None, lfsr0=None):
    """NUMERICS.md read literally, element by element: python ints and Fractions only (no numpy/helpers).

    Returns (z per sample, R, mu, overflow counts, LFSR state)."""
    d, W, F, m = fmt.size, fmt.width, fmt.frac, fmt.centre_shift
    other = "half_even" if fmt.rounding == "stochastic" else fmt.rounding
    flags = dict.fromkeys(OVERFLOW_KEYS, 0)
    state = fmt.lfsr_seed if lfsr0 is None else lfsr0
    R = [row[:] for row in R0]
    mu = [0] * d if mu0 is None else list(mu0)
    learns = [learn] * len(X) if isinstance(learn, bool) else list(learn)
    zs = []
    for x, learning in zip(X, learns, strict=True):
        if m:
            xc = [_sat(x[j] - _rnd(mu[j], m, other), W, flags, "xc") for j in range(d)]
        else:
            xc = list(x)
        Rw = [
            [_sat(_rnd(R[i][j], fmt.r_frac - F, other), W, flags, "rw") for j in range(d)] for i in range(d)
        ]
        z = [_sat(_rnd(sum(Rw[i][j] * xc[j] for j in range(d)), F, other), W, flags, "z") for i in range(d)]
        zs.append(z)
        if not learning:
            continue
        if m:
            mu = [mu[j] + _rnd((x[j] << m) - mu[j], m, other) for j in range(d)]
        v = [_sat(_rnd(sum(z[i] * Rw[i][j] for i in range(d)), F, other), W, flags, "v") for j in range(d)]
        if fmt.rule == "offdiag":
            p = [[_sat(_rnd(z[i] * Rw[i][j], F, other), W, flags, "p") for j in range(d)] for i in range(d)]
            e = [[_sat(v[j] - p[i][j], W, flags, "e") for j in range(d)] for i in range(d)]
            U = [[z[i] * e[i][j] for j in range(d)] for i in range(d)]
        else:
            U = [[z[i] * v[j] - (Rw[i][j] << F) for j in range(d)] for i in range(d)]
        drop = fmt.update_drop
        new = [row[:] for row in R]
        for j in range(d):  # consumption order: column j outer, row i inner
            for i in range(d):
                u = U[i][j]
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
    return zs, R, mu, flags, state


def both_kernels(fmt: UnitFormat, X: np.ndarray, R0=None, learn=True, state=None) -> Result:
    """Run the int64 kernel and (when the format allows it) the float64 kernel; assert they agree."""
    res = _run(fmt, X, R0, learn, state, 0, False)
    if uses_float_kernel(fmt):
        other = _run(fmt, X, R0, learn, state, 0, True)
        assert_same(res, other)
    return res


def assert_same(a: Result, b: Result) -> None:
    np.testing.assert_array_equal(a.z, b.z)
    np.testing.assert_array_equal(a.R, b.R)
    np.testing.assert_array_equal(a.state.mu, b.state.mu)
    assert a.lfsr_state == b.lfsr_state == a.state.lfsr == b.state.lfsr
    assert a.overflow_counts == b.overflow_counts and a.overflow == b.overflow


def assert_matches_reference(fmt: UnitFormat, X: np.ndarray, R0: np.ndarray, learn=True) -> None:
    res = both_kernels(fmt, X, R0, learn)
    zs, R, mu, flags, state = reference_run(fmt, X.tolist(), R0.tolist(), learn)
    assert res.z.tolist() == zs
    assert res.R.tolist() == R
    assert res.state.mu.tolist() == mu
    assert all(-(1 << (fmt.mu_bits - 1)) <= a < 1 << (fmt.mu_bits - 1) for a in mu)  # mu needs no saturation
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
    zs, Rr, _, _, _ = reference_run(fmt, [X_HAND], R0_HAND)
    assert (zs, Rr) == ([z], R)


def test_hand_computed_whiten_sample() -> None:
    # Rw = [[16,-2],[2,16]], z = [24,-1], v = [rnd(382/16) = 24, rnd(-64/16) = -4]
    # U = z_i v_j − (Rw_ij << 4) = [[576-256, -96+32], [-24-32, 4-256]] = [[320,-64],[-56,-252]]
    # /16 half_even: [[20,-4],[-4 (-3.5 tie -> even),-16]]; R − that
    fmt = UnitFormat(**HAND, rule="whiten")
    res = run(fmt, np.array([X_HAND]), np.array(R0_HAND))
    assert res.z.tolist() == [[24, -1]] and res.R.tolist() == [[46, -6], [10, 79]]
    assert reference_run(fmt, [X_HAND], R0_HAND)[:2] == ([[24, -1]], [[46, -6], [10, 79]])


def test_hand_computed_centring() -> None:
    # m = 2 (momentum 1/4), mu has F + m = 6 fraction bits, starts at 0, so sample 0 has xc = x; R = I: z = xc.
    # mu ← mu + rnd((x << 2) − mu, 2): [0 + 96/4, 0 − 16/4] = [24, −4]   (0.375 = 1.5/4, −0.0625 = −0.25/4)
    # sample 1, x = [10, 20]: xc = x − rnd(mu, 2) = [10 − 6, 20 − (−1)] = [4, 21]
    # mu ← [24 + rnd((40 − 24), 2), −4 + rnd((80 + 4), 2)] = [28, 17]
    fmt = UnitFormat(**{**HAND, "shift": 6, "centre_shift": 2})
    res = run(fmt, np.array([X_HAND, [10, 20]]), learn=np.array([True, True]))
    assert res.z[0].tolist() == X_HAND and res.state.mu.tolist() == [28, 17]
    fwd = run(fmt, np.array([[10, 20]]), state=run(fmt, np.array([X_HAND])).state, learn=False)
    assert fwd.z.tolist() == [[4, 21]]  # R = I to within the view's rounding at η = 2^-6 for one sample
    assert res.z[1].tolist() == [4, 21]


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
        rule=draw(st.sampled_from(UNIT_RULES)),
        centre_shift=draw(st.sampled_from([0, 0, 1, 2, 4])),
    )


def random_stream(fmt: UnitFormat, n: int, seed: int, scale: float = 1.0, offset: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(offset * fmt.one, fmt.one * scale, (n, fmt.size)).round()
    return np.clip(x, fmt.w_min, fmt.w_max).astype(np.int64)


def random_r0(fmt: UnitFormat, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    R0 = identity(fmt) + rng.integers(-fmt.r_one // 4, fmt.r_one // 4 + 1, (fmt.size, fmt.size))
    return np.clip(R0, fmt.r_min, fmt.r_max)


@settings(max_examples=150, deadline=None)
@given(fmt=formats(), data=st.data())
def test_model_matches_python_reference(fmt: UnitFormat, data: st.DataObject) -> None:
    n = data.draw(st.integers(1, 12))
    seed = data.draw(st.integers(0, 2**31))
    # mostly moderate values with the occasional extreme word, so saturation paths run too
    X = random_stream(
        fmt, n, seed, data.draw(st.sampled_from([0.3, 1.0, 4.0])), data.draw(st.sampled_from([0, 2]))
    )
    learn = data.draw(st.one_of(st.booleans(), st.lists(st.booleans(), min_size=n, max_size=n)))
    learn = learn if isinstance(learn, bool) else np.array(learn)
    assert_matches_reference(fmt, X, random_r0(fmt, seed), learn=learn)


@pytest.mark.parametrize("mode", ROUNDING_MODES)
@pytest.mark.parametrize("rule", UNIT_RULES)
@pytest.mark.parametrize("centre_shift", [0, 3])
def test_model_matches_reference_longer_stream(mode: str, rule: str, centre_shift: int) -> None:
    fmt = UnitFormat(3, 10, 6, 16, 11, 4, rounding=mode, rule=rule, centre_shift=centre_shift)
    X = random_stream(fmt, 150, 1, 1.5, 0.5)
    learn = np.random.default_rng(2).random(150) < 0.6
    assert_matches_reference(fmt, X, identity(fmt), learn=learn)


@pytest.mark.parametrize("mode", ROUNDING_MODES)
@pytest.mark.parametrize("rule", UNIT_RULES)
def test_kernels_agree_under_heavy_saturation(mode: str, rule: str) -> None:
    # W = 8 with R ≈ 2·I and inputs of 3σ: every quantity saturates often; the float64 fast loop skips checks
    # from bounds, so this is where it could part from the int64 kernel
    totals = dict.fromkeys(OVERFLOW_KEYS, 0)
    for seed in range(6):
        fmt = UnitFormat(4, 8, 5, 12, 7, seed % 2, rounding=mode, rule=rule, centre_shift=seed % 3)
        X = random_stream(fmt, 30, seed, 3.0, 1.0)
        learn = np.random.default_rng(seed).random(30) < 0.7
        res = both_kernels(fmt, X, random_r0(fmt, seed) * 2, learn=learn)
        totals = {k: totals[k] + res.overflow_counts[k] for k in OVERFLOW_KEYS}
    assert all(totals[k] > 0 for k in OVERFLOW_KEYS if not (rule == "whiten" and k in ("p", "e"))), totals


@pytest.mark.parametrize("mode", ROUNDING_MODES)
def test_int64_kernel_for_formats_beyond_float(mode: str) -> None:
    # W = 18 with W_R = 60: R's words exceed a double's 53 bits, so run uses the int64 kernel; it matches the
    # reference there too
    fmt = UnitFormat(3, 18, 14, 60, 50, 40, rounding=mode, rule="whiten", centre_shift=5)
    assert not uses_float_kernel(fmt)
    X = random_stream(fmt, 20, 4, 1.0, 1.0)
    learn = np.array([1, 1, 0, 0, 0, 1, 0, 1, 1, 1] * 2, dtype=bool)
    assert_matches_reference(fmt, X, identity(fmt), learn=learn)


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
    assert res.overflow and res.overflow_counts == {"xc": 0, "rw": 0, "z": 0, "p": 0, "v": 0, "e": 0, "r": 2}
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
    with pytest.raises(DataError, match="R0 holds"):
        run(fmt, np.zeros((1, 2), dtype=np.int64), np.array([[1 << 11, 0], [0, 0]]))
    with pytest.raises(DataError, match=r"\(2, 2\)"):
        run(fmt, np.zeros((1, 2), dtype=np.int64), np.eye(3, dtype=np.int64))
    with pytest.raises(DataError, match="both R0 and state"):
        run(fmt, np.zeros((1, 2), dtype=np.int64), identity(fmt), state=UnitState.reset(fmt))
    with pytest.raises(DataError, match=r"learn has shape \(3,\).*\(1,\)"):
        run(fmt, np.zeros((1, 2), dtype=np.int64), learn=np.ones(3, dtype=bool))
    with pytest.raises(DataError, match="0/1"):
        run(fmt, np.zeros((1, 2), dtype=np.int64), learn=np.array([2]))
    with pytest.raises(DataError, match="centre_shift=0"):
        run(fmt, np.zeros((1, 2), dtype=np.int64), state=UnitState(identity(fmt), np.array([1, 0]), 1))
    with pytest.raises(DataError, match="state.lfsr"):
        run(fmt, np.zeros((1, 2), dtype=np.int64), state=UnitState(identity(fmt), np.zeros(2, int), 0))
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


# ----------------------------------------------------------------------------------- learn vector, state, blocks
@pytest.mark.parametrize("mode", ["half_even", "stochastic"])
@pytest.mark.parametrize("rule", UNIT_RULES)
def test_learn_zero_changes_nothing(mode: str, rule: str) -> None:
    fmt = UnitFormat(5, 12, 8, 20, 16, 6, rounding=mode, rule=rule, centre_shift=3)
    X = random_stream(fmt, 80, 7, 1.0, 1.0)
    learn = np.random.default_rng(8).random(80) < 0.3
    res = run(fmt, X, learn=learn)
    # the learning samples alone give the same end state: learn = 0 moves neither mu, R nor the LFSR
    alone = run(fmt, X[learn])
    assert_same_state(res.state, alone.state)
    np.testing.assert_array_equal(res.z[learn], alone.z)
    # a learn = 0 sample's z is the forward pass of the state the learning samples before it left
    for t in np.flatnonzero(~learn)[:10]:
        before = run(fmt, X[:t][learn[:t]])
        fwd = run(fmt, X[t : t + 1], state=before.state, learn=False)
        np.testing.assert_array_equal(res.z[t], fwd.z[0])
        assert_same_state(fwd.state, before.state)
    # forward only from reset: the reset state comes back unchanged
    off = run(fmt, X, learn=False)
    assert_same_state(off.state, UnitState.reset(fmt))


def assert_same_state(a: UnitState, b: UnitState) -> None:
    np.testing.assert_array_equal(a.R, b.R)
    np.testing.assert_array_equal(a.mu, b.mu)
    assert a.lfsr == b.lfsr


@settings(max_examples=40, deadline=None)
@given(fmt=formats(), data=st.data())
def test_chunks_with_state_equal_one_run(fmt: UnitFormat, data: st.DataObject) -> None:
    n = 40
    X = random_stream(fmt, n, data.draw(st.integers(0, 2**31)), 1.0, data.draw(st.sampled_from([0, 1])))
    learn = np.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    cuts = sorted(data.draw(st.lists(st.integers(0, n), max_size=5)))
    whole = both_kernels(fmt, X, learn=learn)
    state = None
    zs, totals = [], dict.fromkeys(OVERFLOW_KEYS, 0)
    for a, b in zip([0, *cuts], [*cuts, n], strict=True):
        part = both_kernels(fmt, X[a:b], learn=learn[a:b], state=state)
        state = part.state
        zs.append(part.z)
        totals = {k: totals[k] + part.overflow_counts[k] for k in OVERFLOW_KEYS}
    np.testing.assert_array_equal(np.concatenate(zs), whole.z)
    assert_same_state(state, whole.state)
    assert totals == whole.overflow_counts


@settings(max_examples=60, deadline=None)
@given(fmt=formats(), data=st.data())
def test_block_equals_sample_at_a_time(fmt: UnitFormat, data: st.DataObject) -> None:
    # a run of learn = 0 samples is one matrix product; it equals feeding them one by one
    n = data.draw(st.integers(1, 30))
    X = random_stream(
        fmt, n, data.draw(st.integers(0, 2**31)), data.draw(st.sampled_from([0.3, 1.0, 4.0])), 1.0
    )
    warm = run(
        fmt, random_stream(fmt, 5, 3, 1.0, 1.0), random_r0(fmt, 5)
    )  # some mu and R, saturation possible
    block = both_kernels(fmt, X, learn=False, state=warm.state)
    counts = dict.fromkeys(OVERFLOW_KEYS, 0)
    for t in range(n):
        one = run(fmt, X[t : t + 1], learn=False, state=warm.state)
        np.testing.assert_array_equal(block.z[t], one.z[0])
        counts = {k: counts[k] + one.overflow_counts[k] for k in OVERFLOW_KEYS}
    assert block.overflow_counts == counts


def test_reset_state_and_identity_default() -> None:
    fmt = UnitFormat(3, 12, 8, 20, 16, 6, rounding="stochastic", centre_shift=4)
    st0 = UnitState.reset(fmt)
    assert st0.R.tolist() == (np.eye(3, dtype=np.int64) << 16).tolist()
    assert st0.mu.tolist() == [0, 0, 0] and st0.lfsr == 0xACE1
    X = random_stream(fmt, 30, 0, 1.0, 1.0)
    a, b, c = run(fmt, X), run(fmt, X, identity(fmt)), run(fmt, X, state=st0)
    assert_same(a, b)
    assert_same(a, c)
    assert a.state.lfsr != 0xACE1 and np.any(a.state.mu != 0) and np.any(a.R != identity(fmt))


def test_old_manifest_runs_like_the_default() -> None:
    new = UnitFormat(3, 12, 8, 20, 16, 6)
    old = UnitFormat.from_dict(
        {**{k: v for k, v in new.to_dict().items() if k not in ("rule", "centre_shift")}, "delayed": False}
    )
    X = random_stream(new, 20, 1)
    assert_same(run(old, X), run(new, X))


# ----------------------------------------------------------------------------------- against the float rules
def float_ema(x: np.ndarray, m: int) -> np.ndarray:
    """mu before each sample of mu ← mu + 2^-m (x − mu), from 0."""
    mu = np.zeros(x.shape[1])
    out = np.empty_like(x)
    for t in range(len(x)):
        out[t] = mu
        mu = mu + (x[t] - mu) * 2.0**-m
    return out


@pytest.mark.parametrize("m", [1, 4, 8])
def test_centring_tracks_a_float_running_mean(m: int) -> None:
    # every sample learns (the mean moves) with η = 2^-22: R drifts by far less than half its view's LSB, so z
    # sees Rw = I and z = xc exactly
    fmt = UnitFormat(4, 16, 10, 28, 22, 22, centre_shift=m)
    X = random_stream(fmt, 3000, 0, 1.0, 3.0)
    res = run(fmt, X)
    mu_f = float_ema(X / fmt.one, m)
    xc_f = X / fmt.one - mu_f
    err_lsb = np.abs(res.z - xc_f * fmt.one)
    assert np.abs(res.R - identity(fmt)).max() < 2 ** (fmt.view_drop - 1)
    assert err_lsb.max() <= 1.5, err_lsb.max()  # ½ LSB in mu's recursion, ½ in rnd(mu, m), ½ in z
    final = res.state.mu / 2.0 ** (fmt.frac + m)
    assert np.abs(final - (mu_f[-1] + (X[-1] / fmt.one - mu_f[-1]) * 2.0**-m)).max() <= 2.0**-fmt.frac


def float_whiten(x: np.ndarray, eta: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample float whiten rule R ← R − η (z vᵀ − R), v = Rᵀz, z = R x, from R = I."""
    R = np.eye(x.shape[1])
    zs = np.empty_like(x)
    for t in range(len(x)):
        z = R @ x[t]
        zs[t] = z
        R = R - eta * (np.outer(z, R.T @ z) - R)
    return zs, R


def test_whiten_follows_the_float_rule_at_small_eta() -> None:
    fmt = UnitFormat(4, 16, 12, 24, 20, 12, rule="whiten")
    rng = np.random.default_rng(0)
    cov = 0.5 * np.eye(4) + 0.5
    x = rng.standard_normal((8000, 4)) @ np.linalg.cholesky(cov).T * np.array([1.0, 0.5, 1.0, 1.0])
    X, _ = quantize(x, 16, 12)
    res = run(fmt, X)
    zf, Rf = float_whiten(X / fmt.one, fmt.eta)
    r_err_lsb = np.abs(res.R - Rf * fmt.r_one).max()
    z_err_lsb = np.abs(res.z - zf * fmt.one).max()
    assert not res.overflow
    assert r_err_lsb < 2**7, r_err_lsb  # measured 35 LSB of R (2^-20) after 8000 updates
    assert z_err_lsb < 8, z_err_lsb  # measured 3.5
    # and it whitens: ⟨z zᵀ⟩ over the tail is close to I (measured 0.09)
    tail = res.z[-1000:] / fmt.one
    assert np.abs(tail.T @ tail / 1000 - np.eye(4)).max() < 0.15
