"""Rounding, saturation, quantisation, LFSR and format validation in analogdecorr.fixed.format."""

from __future__ import annotations

import json
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analogdecorr.errors import ConfigError, DataError, FormatError
from analogdecorr.fixed.format import (
    QUANTIZE_MODES,
    ROUNDING_MODES,
    UNIT_RULES,
    Lfsr,
    UnitFormat,
    dequantize,
    lr_for_shift,
    quantize,
    round_shift,
    saturate,
    shift_for_lr,
)

DETERMINISTIC = ("trunc", "half_up", "half_even")


def ref_round(q: Fraction, mode: str) -> int:
    """Round an exact rational by name: the textbook definitions."""
    if mode == "trunc":
        return math.floor(q)
    if mode == "half_up":
        return math.floor(q + Fraction(1, 2))
    assert mode == "half_even"
    return round(q)  # Fraction.__round__ rounds half to even


def ref_rnd(v: int, k: int, mode: str, r: int = 0) -> int:
    if k == 0:
        return v
    if mode == "stochastic":
        return math.floor(Fraction(v + r % (1 << k), 1 << k))
    return ref_round(Fraction(v, 1 << k), mode)


def ref_sat(v: int, bits: int) -> int:
    return max(-(1 << (bits - 1)), min((1 << (bits - 1)) - 1, v))


# ------------------------------------------------------------------------------------------------ round_shift
ALL8 = np.arange(-128, 128, dtype=np.int64)  # every signed word of width <= 8


@pytest.mark.parametrize("mode", DETERMINISTIC)
@pytest.mark.parametrize("k", range(9))
def test_round_shift_exhaustive_8bit(mode: str, k: int) -> None:
    expected = np.array([ref_rnd(int(v), k, mode) for v in ALL8])
    got = round_shift(ALL8, k, mode)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, expected)
    # the python-int path gives the same python ints
    assert [round_shift(int(v), k, mode) for v in ALL8] == expected.tolist()
    assert all(type(round_shift(int(v), k, mode)) is int for v in ALL8[:3])


@pytest.mark.parametrize("k", range(9))
def test_round_shift_stochastic_exhaustive_8bit(k: int) -> None:
    r = np.arange(1 << k, dtype=np.int64)
    vv, rr = np.meshgrid(ALL8, r, indexing="ij")
    # r carries junk high bits, as a full LFSR state does: only the k low bits may count
    got = round_shift(vv, k, "stochastic", rr + (0x5A5A << k))
    expected = np.array([[ref_rnd(int(v), k, "stochastic", int(x)) for x in r] for v in ALL8])
    np.testing.assert_array_equal(got, expected)
    # unbiased: averaged over all 2^k random values the result is exactly v / 2^k
    sums = got.sum(axis=1)
    np.testing.assert_array_equal(sums, ALL8)


def test_round_shift_k0_is_identity_and_known_values() -> None:
    for mode in ROUNDING_MODES:
        assert round_shift(-7, 0, mode, rand=3) == -7
    # hand values: ±2.5 and ±1.5 (k = 1)
    v = np.array([5, -5, 3, -3])
    np.testing.assert_array_equal(round_shift(v, 1, "trunc"), [2, -3, 1, -2])
    np.testing.assert_array_equal(round_shift(v, 1, "half_up"), [3, -2, 2, -1])
    np.testing.assert_array_equal(round_shift(v, 1, "half_even"), [2, -2, 2, -2])


@settings(max_examples=400, deadline=None)
@given(
    v=st.integers(-(1 << 44), 1 << 44),
    k=st.integers(0, 40),
    mode=st.sampled_from(ROUNDING_MODES),
    r=st.integers(0, (1 << 62) - 1),
)
def test_round_shift_wide_matches_fraction(v: int, k: int, mode: str, r: int) -> None:
    expected = ref_rnd(v, k, mode, r)
    assert round_shift(v, k, mode, rand=r) == expected
    arr = round_shift(np.array([v], dtype=np.int64), k, mode, rand=np.array([r], dtype=np.int64))
    assert int(arr[0]) == expected


def test_round_shift_rejects_bad_arguments() -> None:
    with pytest.raises(FormatError, match="half_even"):
        round_shift(3, 1, "half_evn")
    with pytest.raises(ValueError, match="k >= 0"):
        round_shift(3, -1, "trunc")
    with pytest.raises(ValueError, match="rand"):
        round_shift(3, 1, "stochastic")


# ------------------------------------------------------------------------------------------------ saturate
@pytest.mark.parametrize("bits", range(2, 9))
def test_saturate_exhaustive(bits: int) -> None:
    v = np.arange(-(1 << (bits + 1)), 1 << (bits + 1), dtype=np.int64)
    clamped, n = saturate(v, bits)
    expected = [ref_sat(int(x), bits) for x in v]
    np.testing.assert_array_equal(clamped, expected)
    assert n == sum(int(x) != e for x, e in zip(v, expected, strict=True)) == len(v) - (1 << bits)
    for x, e in zip(v.tolist(), expected, strict=True):
        assert saturate(x, bits) == (e, int(x != e))


@given(v=st.integers(-(1 << 60), 1 << 60), bits=st.integers(2, 60))
def test_saturate_property(v: int, bits: int) -> None:
    c, n = saturate(v, bits)
    assert c == ref_sat(v, bits)
    assert n == int(c != v)
    ca, na = saturate(np.array([v, 0]), bits)
    assert ca.tolist() == [c, 0] and na == n


# ------------------------------------------------------------------------------------------------ quantize
@pytest.mark.parametrize("mode", QUANTIZE_MODES)
@pytest.mark.parametrize("frac", [0, 3, 7])
def test_quantize_exhaustive_8bit_grid_and_ties(mode: str, frac: int) -> None:
    # every value on a 2^-(frac+2) grid spanning more than the 8-bit range: exact points, quarter points, ties
    grid = np.arange(-4 * 160, 4 * 160) / 2.0 ** (frac + 2)
    ints, n = quantize(grid, 8, frac, mode)
    expected = [ref_sat(ref_round(Fraction(x) * 2**frac, mode), 8) for x in grid]
    np.testing.assert_array_equal(ints, expected)
    unclamped = [ref_round(Fraction(x) * 2**frac, mode) for x in grid]
    assert n == sum(u != e for u, e in zip(unclamped, expected, strict=True))
    exact = ints[grid * 2**frac == np.round(grid * 2**frac)]
    np.testing.assert_array_equal(quantize(dequantize(exact, frac), 8, frac, mode)[0], exact)


@settings(max_examples=300, deadline=None)
@given(
    x=st.floats(allow_nan=False, min_value=-1e6, max_value=1e6),
    width=st.integers(8, 18),
    data=st.data(),
    mode=st.sampled_from(QUANTIZE_MODES),
)
def test_quantize_matches_fraction(x: float, width: int, data: st.DataObject, mode: str) -> None:
    frac = data.draw(st.integers(0, width - 1))
    ints, n = quantize(x, width, frac, mode)
    unclamped = ref_round(Fraction(x) * 2**frac, mode)
    assert int(ints) == ref_sat(unclamped, width)
    assert n == int(ref_sat(unclamped, width) != unclamped)


def test_quantize_extremes_and_errors() -> None:
    ints, n = quantize([np.inf, -np.inf, 1e300, 0.0], 8, 4)
    assert ints.tolist() == [127, -128, 127, 0] and n == 3
    with pytest.raises(DataError, match="NaN"):
        quantize([0.0, np.nan], 8, 4)
    with pytest.raises(FormatError, match="half_even"):
        quantize(0.5, 8, 4, "stochastic")
    np.testing.assert_array_equal(dequantize([-128, 127, 8], 4), [-8.0, 7.9375, 0.5])


# ------------------------------------------------------------------------------------------------ LFSR
@pytest.mark.parametrize(
    "width, taps",
    [
        (3, (3, 2)),
        (4, (4, 3)),
        (5, (5, 3)),
        (6, (6, 5)),
        (7, (7, 6)),
        (8, (8, 6, 5, 4)),
        (16, (16, 15, 13, 4)),
    ],
)
def test_lfsr_maximal_length_period(width: int, taps: tuple[int, ...]) -> None:
    lfsr = Lfsr(width, taps, seed=1)
    seq = lfsr.draw((1 << width) + 3)
    period = (1 << width) - 1
    assert len(set(seq[:period].tolist())) == period  # every non-zero state once
    assert 0 not in seq
    np.testing.assert_array_equal(seq[period:], seq[: len(seq) - period])


def test_lfsr_hand_sequence() -> None:
    # width 4, taps (4, 3): feedback = bit3 XOR bit2, shifted in at the bottom
    lfsr = Lfsr(4, (4, 3), seed=0b0001)
    states = [lfsr.value] + [lfsr.step() for _ in range(5)]
    assert states == [0b0001, 0b0010, 0b0100, 0b1001, 0b0011, 0b0110]
    # default LFSR: seed 0xACE1, feedback from bits 31, 21, 1, 0
    lfsr = Lfsr()
    assert [lfsr.value] + [lfsr.step() for _ in range(4)] == [0xACE1, 0x159C3, 0x2B386, 0x5670D, 0xACE1B]


@pytest.mark.parametrize("chunks", [[0, 1, 2, 37, 500], [4000], [31, 33, 1000, 65, 7]])
def test_lfsr_draw_matches_step(chunks: list[int]) -> None:
    a, b = Lfsr(), Lfsr()
    ref = []
    for _ in range(sum(chunks)):
        ref.append(a.value)
        a.step()
    got = np.concatenate([b.draw(c) for c in chunks])
    np.testing.assert_array_equal(got, ref)
    assert a.value == b.value


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(
        [(5, (5, 3)), (8, (8, 6, 5, 4)), (16, (16, 15, 13, 4)), (32, (32, 22, 2, 1)), (62, (62, 1))]
    ),
    st.data(),
)
def test_lfsr_draw_bits_matches_step(spec: tuple[int, tuple[int, ...]], data: st.DataObject) -> None:
    width, taps = spec
    seed = data.draw(st.integers(1, (1 << width) - 1))
    chunks = data.draw(st.lists(st.integers(0, 3000), min_size=1, max_size=4))
    bits = data.draw(st.integers(0, width))
    a, b = Lfsr(width, taps, seed), Lfsr(width, taps, seed)
    ref = []
    for _ in range(sum(chunks)):
        ref.append(a.value & ((1 << bits) - 1))
        a.step()
    got = np.concatenate([b.draw(c, bits=bits) for c in chunks])
    np.testing.assert_array_equal(got, ref)
    assert a.value == b.value
    with pytest.raises(ValueError, match="bits"):
        b.draw(3, bits=width + 1)
    words = Lfsr(width, taps, seed).draw_words(50, bits=bits)
    assert words.dtype == {8: np.uint8, 16: np.uint16, 32: np.uint32}.get(
        max(8, 1 << (bits - 1).bit_length()), np.uint64
    )
    np.testing.assert_array_equal(
        words, ref[:50] if sum(chunks) >= 50 else Lfsr(width, taps, seed).draw(50, bits)
    )


@pytest.mark.parametrize(
    "width, taps",
    [(5, (5, 3)), (8, (8, 6, 5, 4)), (16, (16, 15, 13, 4)), (32, (32, 22, 2, 1)), (62, (62, 1))],
)
def test_lfsr_long_draw_matches_step(width: int, taps: tuple[int, ...]) -> None:
    # 9000 values: past the 4096 directly computed bits, through two block recurrences
    a, b = Lfsr(width, taps, 1), Lfsr(width, taps, 1)
    ref = []
    for _ in range(9000):
        ref.append(a.value)
        a.step()
    np.testing.assert_array_equal(b.draw(9000), ref)
    assert a.value == b.value


def test_lfsr_default_has_no_short_cycle() -> None:
    seq = Lfsr().draw(200_000)
    assert len(np.unique(seq)) == len(seq)
    assert seq.min() > 0 and seq.max() < 1 << 32


# ------------------------------------------------------------------------------------------------ UnitFormat
BASE = dict(size=4, width=16, frac=12, r_width=24, r_frac=20, shift=12)


def test_format_derived_numbers_and_roundtrip() -> None:
    fmt = UnitFormat(**BASE, rounding="stochastic", rule="whiten", centre_shift=5)
    assert (fmt.one, fmt.r_one) == (4096, 1 << 20)
    assert (fmt.w_min, fmt.w_max, fmt.r_min, fmt.r_max) == (-32768, 32767, -(1 << 23), (1 << 23) - 1)
    assert fmt.update_drop == 2 * 12 + 12 - 20 == 16
    assert fmt.view_drop == 8 and fmt.view_rounding == "half_even" and fmt.eta == 2.0**-12
    assert fmt.acc_bits == 34 and fmt.multipliers_per_sample == 48
    assert fmt.mu_bits == 21 and fmt.update_bits == 33 and fmt.intermediate_bits == 35
    assert UnitFormat(**BASE).rule == "offdiag" and UnitFormat(**BASE).centre_shift == 0
    assert set(UNIT_RULES) == {"offdiag", "whiten"}
    data = json.loads(json.dumps(fmt.to_dict()))
    assert UnitFormat.from_dict(data) == fmt
    assert UnitFormat(**BASE, rounding="trunc").view_rounding == "trunc"
    with pytest.raises(FormatError, match=r"unknown format field 'shfit' \(did you mean 'shift'\?\); choose from size"):
        UnitFormat.from_dict({**BASE, "shfit": 3})
    with pytest.raises(FormatError, match="incomplete"):
        UnitFormat.from_dict({"size": 4})


@pytest.mark.parametrize(
    "change, pattern",
    [
        (dict(size=1), "size=1.*size >= 2"),
        (dict(frac=16), "0 <= F < W"),
        (dict(frac=-1), "0 <= F < W"),
        (dict(width=7, frac=4), "width=7.*8..18"),
        (dict(width=19), "width=19.*8..18"),
        (dict(r_width=15), "r_width=15 < width=16"),
        (dict(r_frac=11, shift=8), "r_frac=11 < frac=12"),
        (dict(r_width=22, r_frac=20), "integer bits.*r_width >= 24"),
        (dict(shift=-1), "shift=-1"),
        (dict(shift=21), "underflow.*shift <= 20"),
        (dict(rounding="half_evn"), "did you mean 'half_even'.*choose from trunc, half_up, half_even, stochastic"),
        (dict(rounding="stochastc"), "did you mean 'stochastic'"),
        (dict(lfsr_seed=0), "seed 0 locks"),
        (dict(lfsr_seed=1 << 32), "lfsr_seed"),
        (dict(lfsr_taps=(33, 2)), r"outside 1..lfsr_width"),
        (dict(lfsr_taps=(32, 0)), r"outside 1..lfsr_width"),
        (dict(lfsr_taps=(22, 2, 1)), "do not include lfsr_width"),
        (dict(lfsr_taps=(32, 2, 2)), "repeat"),
        (dict(lfsr_taps=()), "empty"),
        (dict(lfsr_width=1, lfsr_taps=(1,)), "lfsr_width=1"),
        (
            dict(rounding="stochastic", lfsr_width=8, lfsr_taps=(8, 6, 5, 4), lfsr_seed=1),
            "16 bits.*lfsr_width=8",
        ),
        (dict(size=2.5), "size=2.5 must be an integer"),
        (dict(rule="kappa"), "kappa.*4th product.*'offdiag' or 'whiten'"),
        (dict(rule="whitne"), "did you mean 'whiten'"),
        (dict(centre_shift=17), "centre_shift=17 is outside 0..16"),
        (dict(centre_shift=-1), "centre_shift=-1"),
        (dict(centre_shift=True), "centre_shift=True must be an integer"),
        (dict(r_width=63, r_frac=20), "int64"),
    ],
)
def test_format_errors(change: dict, pattern: str) -> None:
    with pytest.raises(FormatError, match=pattern):
        UnitFormat(**{**BASE, **change})


def test_old_manifest_delayed_key() -> None:
    old = {
        **BASE,
        "rounding": "half_even",
        "lfsr_width": 32,
        "lfsr_taps": [32, 22, 2, 1],
        "lfsr_seed": 0xACE1,
    }
    fmt = UnitFormat.from_dict({**old, "delayed": False})
    assert fmt == UnitFormat(**BASE) and "delayed" not in fmt.to_dict()
    with pytest.raises(FormatError, match="delayed.*removed"):
        UnitFormat.from_dict({**old, "delayed": True})
    with pytest.raises(TypeError):
        UnitFormat(**BASE, delayed=False)  # the constructor no longer knows it


def test_format_boundaries_are_legal() -> None:
    UnitFormat(size=2, width=8, frac=0, r_width=8, r_frac=0, shift=0)
    UnitFormat(size=2, width=18, frac=17, r_width=40, r_frac=39, shift=39, rule="whiten", centre_shift=16)
    UnitFormat(size=2, width=18, frac=17, r_width=40, r_frac=39, shift=39)
    assert (
        UnitFormat(
            size=2, width=18, frac=17, r_width=40, r_frac=39, shift=37, rounding="stochastic"
        ).update_drop
        == 32
    )
    fmt = UnitFormat(**{**BASE, "lfsr_taps": [32, 22, 2, 1], "size": np.int64(3)})
    assert fmt.lfsr_taps == (32, 22, 2, 1) and type(fmt.size) is int
    # stochastic needing exactly lfsr_width bits is fine
    UnitFormat(**{**BASE, "rounding": "stochastic", "lfsr_width": 16, "lfsr_taps": (16, 15, 13, 4)})


# ------------------------------------------------------------------------------------------------ lr ↔ shift
def test_shift_for_lr_worked_example() -> None:
    # the analog default: decor_lr 3e-5 per batch of 64 with sample_frac 0.1 -> k = floor(6.4) + 1 = 7 rows
    k = math.floor(0.1 * 64) + 1
    assert k == 7
    s = shift_for_lr(3e-5, k)
    assert s == 18  # log2(7 / 3e-5) = 17.83
    assert lr_for_shift(18, 7) == 7 * 2.0**-18
    assert 0.85 < 2.0**-s / (3e-5 / 7) < 0.9  # η = 3.81e-6 vs lr/k = 4.29e-6


@given(st.floats(1e-9, 1.0), st.integers(1, 256))
def test_shift_for_lr_is_nearest_in_log_scale(lr: float, k: int) -> None:
    s = shift_for_lr(lr, k)
    step = lr / k
    assert 2.0**-0.5 <= 2.0**-s / step <= 2.0**0.5 * (1 + 1e-12)
    # the neighbours are no closer in log scale
    for other in (s - 1, s + 1):
        if other >= 0:
            assert (
                abs(math.log2(lr_for_shift(other, k) / lr)) >= abs(math.log2(lr_for_shift(s, k) / lr)) - 1e-9
            )
    assert shift_for_lr(lr_for_shift(s, k), k) == s  # round trip


def test_shift_for_lr_errors() -> None:
    with pytest.raises(FormatError, match=r"lr/k = 2 > 1.*decor_lr <= 1.41"):
        shift_for_lr(2.0, 1)
    assert shift_for_lr(1.4, 1) == 0  # within √2 of η = 1: still s = 0
    with pytest.raises(FormatError, match=r"needs shift=24.*largest legal shift 20.*r_frac >= 24"):
        shift_for_lr(7 * 2.0**-24, 7, max_shift=20)
    assert shift_for_lr(7 * 2.0**-20, 7, max_shift=20) == 20
    for bad in (0.0, -1e-4, float("nan"), float("inf"), "3e-5", True):
        with pytest.raises(ConfigError, match="decor_lr"):
            shift_for_lr(bad, 7)
    for bad_rows in (0, -3, 2.5, True):
        with pytest.raises(ConfigError, match="rows_per_update"):
            shift_for_lr(1e-4, bad_rows)
    with pytest.raises(ConfigError, match="shift=-1"):
        lr_for_shift(-1, 7)
    with pytest.raises(ConfigError, match="rows_per_update=0"):
        lr_for_shift(3, 0)
