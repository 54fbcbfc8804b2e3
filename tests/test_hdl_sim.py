"""Amaranth simulation of DecorrelationUnit against the integer model (the specification), bit for bit.

Every z word, the final R (read back through the R port) and the sticky overflow flag are compared with
``fixed.model.run`` for d ∈ {2, 3, 4, 8}, W ∈ {8, 12, 16}, every rounding mode and both architectures, with
random valid gaps on x and ready stalls on z. Timing (latency, cycles per sample) is measured, not assumed.
"""

from __future__ import annotations

import itertools
import random
import re
from dataclasses import dataclass, field

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.sim import Simulator

from analogdecorr.errors import FormatError
from analogdecorr.fixed.format import ROUNDING_MODES, UnitFormat
from analogdecorr.fixed.model import OVERFLOW_KEYS, run
from analogdecorr.hdl import DecorrelationUnit

ARCHS = ("row", "mac")
SIZES = (2, 3, 4, 8)
WIDTHS = (8, 12, 16)
# η per width: W=8 gives 2F + s < F_R (exact left shift of the update), the others drop 8 and 12 bits
SHIFTS = {8: 2, 12: 8, 16: 8}


def make_format(d: int, w: int, mode: str = "half_even", delayed: bool = False, **kw) -> UnitFormat:
    """F = W − 4, F_R = F + 8, W_R = W + 12 (R ∈ [−128, 128)), η from SHIFTS."""
    f = w - 4
    args = dict(size=d, width=w, frac=f, r_width=w + 12, r_frac=f + 8, shift=SHIFTS[w], rounding=mode,
                delayed=delayed)
    args.update(kw)
    return UnitFormat(**args)


# ------------------------------------------------------------------------------------------------ harness
def _pack(values, w: int) -> int:
    mask = (1 << w) - 1
    return sum((int(v) & mask) << (k * w) for k, v in enumerate(values))


def _unpack(raw: int, w: int, d: int) -> list[int]:
    out = []
    for k in range(d):
        v = (raw >> (k * w)) & ((1 << w) - 1)
        out.append(v - (1 << w) if v >> (w - 1) else v)
    return out


@dataclass
class SimResult:
    z: np.ndarray
    R: np.ndarray
    overflow: bool
    x_cycles: list[int] = field(default_factory=list)  # cycle of each x transfer
    z_valid_cycles: list[int] = field(default_factory=list)  # first cycle each z is valid
    overflow_after: list[bool] = field(default_factory=list)  # flag after 0, 1, …, n samples (one_by_one)


def simulate(unit: DecorrelationUnit, X: np.ndarray, R0: np.ndarray | None = None, *, learn=True,
             p_gap: float = 0.0, p_stall: float = 0.0, port_noise: bool = False, one_by_one: bool = False,
             seed: int = 0, max_cycles: int = 200_000) -> SimResult:
    """Load R0 through the R port, stream X (learn per sample or for all), read R back once idle.

    ``p_gap``/``p_stall``: probability that x.valid is withheld / z.ready is low in a cycle. ``port_noise``
    drives random R writes and reads while ``busy`` (they must be ignored). ``one_by_one``: wait for idle
    after each sample and record the overflow flag.
    """
    fmt = unit.fmt
    d, w = fmt.size, fmt.width
    n = len(X)
    learns = [bool(learn)] * n if isinstance(learn, bool) else [bool(v) for v in learn]
    rng = random.Random(seed)
    out: dict = {}

    async def bench(ctx):
        assert ctx.get(unit.busy) == 0
        if R0 is not None:
            for a in range(d * d):
                ctx.set(unit.r_we, 1)
                ctx.set(unit.r_addr, a)
                ctx.set(unit.r_wdata, int(R0[a // d][a % d]))
                await ctx.tick()
            ctx.set(unit.r_we, 0)
        xpay, zpay = unit.x.payload.as_value(), unit.z.payload.as_value()
        cyc, xi = 0, 0
        zs, x_cycles, z_first, ovf_after = [], [], [], []
        x_valid = False
        while len(zs) < n:
            idle = xi == len(zs) and not x_valid and not ctx.get(unit.busy)
            if one_by_one and idle and len(ovf_after) == xi:  # the flag after samples 0..xi−1
                ovf_after.append(bool(ctx.get(unit.overflow)))
            may_send = xi < n and (not one_by_one or idle)
            if not x_valid and may_send and rng.random() >= p_gap:
                x_valid = True
                ctx.set(xpay, _pack(X[xi], w))
                ctx.set(unit.learn, int(learns[xi]))
            ctx.set(unit.x.valid, int(x_valid))
            z_ready = rng.random() >= p_stall
            ctx.set(unit.z.ready, int(z_ready))
            noisy = port_noise and ctx.get(unit.busy) and rng.random() < 0.3
            ctx.set(unit.r_we, int(noisy))
            ctx.set(unit.r_re, int(noisy))
            ctx.set(unit.r_addr, rng.randrange(d * d))
            ctx.set(unit.r_wdata, rng.randrange(fmt.r_min, fmt.r_max + 1))
            z_valid = ctx.get(unit.z.valid)
            if z_valid and len(z_first) == len(zs):
                z_first.append(cyc)
            if z_valid and z_ready:
                zs.append(_unpack(ctx.get(zpay), w, d))
            if x_valid and ctx.get(unit.x.ready):
                x_cycles.append(cyc)
                xi += 1
                x_valid = False
            await ctx.tick()
            cyc += 1
            assert not ctx.get(unit.r_rvalid), "R read acted on while busy"
            assert cyc < max_cycles, "simulation timed out"
        ctx.set(unit.x.valid, 0)
        ctx.set(unit.r_we, 0)
        ctx.set(unit.r_re, 0)
        while ctx.get(unit.busy):
            await ctx.tick()
        if one_by_one:
            ovf_after.append(bool(ctx.get(unit.overflow)))
        R = np.zeros((d, d), dtype=np.int64)
        for a in range(d * d):
            ctx.set(unit.r_re, 1)
            ctx.set(unit.r_addr, a)
            await ctx.tick()
            ctx.set(unit.r_re, 0)
            assert ctx.get(unit.r_rvalid)
            R[a // d, a % d] = ctx.get(unit.r_rdata)
        out["res"] = SimResult(np.array(zs, dtype=np.int64).reshape(n, d), R, bool(ctx.get(unit.overflow)),
                               x_cycles, z_first, ovf_after)

    sim = Simulator(unit)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return out["res"]


def random_inputs(fmt: UnitFormat, n: int, scale: float, seed: int, r_spread: float = 0.3):
    """Gaussian x (σ = scale, saturated to W bits) and a non-identity R0 near I (off-diagonals ~ r_spread)."""
    rng = np.random.default_rng(seed)
    X = np.clip(np.round(rng.normal(0.0, scale * fmt.one, (n, fmt.size))), fmt.w_min, fmt.w_max)
    R0 = np.eye(fmt.size) * fmt.r_one + rng.normal(0.0, r_spread * fmt.r_one, (fmt.size, fmt.size))
    R0 = np.clip(np.round(R0), fmt.r_min, fmt.r_max)
    return X.astype(np.int64), R0.astype(np.int64)


def assert_matches(res: SimResult, ref) -> None:
    np.testing.assert_array_equal(res.z, ref.z, err_msg="z words differ from the integer model")
    np.testing.assert_array_equal(res.R, ref.R, err_msg="final R differs from the integer model")
    assert res.overflow == ref.overflow, f"overflow {res.overflow} != model {ref.overflow_counts}"


# ------------------------------------------------------------------------------------------------ bit-exact
MATRIX = list(itertools.product(ARCHS, SIZES, WIDTHS, ROUNDING_MODES))


@pytest.mark.parametrize(("arch", "d", "w", "mode"), MATRIX)
def test_bit_exact_with_backpressure(arch: str, d: int, w: int, mode: str) -> None:
    """R0 loaded through the port, random stalls on both streams, R-port noise while busy: bit-exact."""
    k = MATRIX.index((arch, d, w, mode))
    fmt = make_format(d, w, mode)
    # every third configuration drives x hard enough to saturate somewhere
    X, R0 = random_inputs(fmt, 12, scale=(0.4, 0.9, 2.5)[k % 3], seed=k)
    res = simulate(DecorrelationUnit(fmt, arch), X, R0, p_gap=0.3, p_stall=0.4, port_noise=True, seed=k)
    assert_matches(res, run(fmt, X, R0))


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize(("d", "w", "mode"), [(2, 12, "half_even"), (3, 16, "stochastic"), (8, 8, "trunc"),
                                              (4, 12, "half_up")])
def test_delayed_update(arch: str, d: int, w: int, mode: str) -> None:
    """delayed=True: z of sample t uses R from before sample t−1's update, exactly as the model."""
    fmt = make_format(d, w, mode, delayed=True)
    X, R0 = random_inputs(fmt, 10, scale=1.0, seed=d + w)
    ref = run(fmt, X, R0)
    assert not np.array_equal(ref.z, run(make_format(d, w, mode), X, R0).z), "delay must matter for this data"
    res = simulate(DecorrelationUnit(fmt, arch), X, R0, p_gap=0.3, p_stall=0.3, seed=d)
    assert_matches(res, ref)


@pytest.mark.parametrize("arch", ARCHS)
def test_reset_state_is_identity(arch: str) -> None:
    """Without a load, R starts at the identity (2^F_R on the diagonal)."""
    fmt = make_format(3, 12, "stochastic")
    X, _ = random_inputs(fmt, 8, scale=1.0, seed=5)
    res = simulate(DecorrelationUnit(fmt, arch), X, None, p_gap=0.2, p_stall=0.2)
    assert_matches(res, run(fmt, X))


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("delayed", [False, True])
def test_learn_zero_is_forward_only(arch: str, delayed: bool) -> None:
    """learn = 0: z = Rw x with the loaded R, R unchanged; then learn = 1 continues from the same R."""
    fmt = make_format(4, 12, "stochastic", delayed=delayed)
    X, R0 = random_inputs(fmt, 10, scale=1.0, seed=11, r_spread=0.5)
    n0 = 4
    res = simulate(DecorrelationUnit(fmt, arch), X, R0, learn=[False] * n0 + [True] * (len(X) - n0),
                   p_gap=0.3, p_stall=0.3, seed=3)
    fwd = run(fmt, X[:n0], R0, learn=False)
    np.testing.assert_array_equal(fwd.R, R0)
    rest = run(fmt, X[n0:], R0)  # the LFSR has not been stepped by forward-only samples
    np.testing.assert_array_equal(res.z[:n0], fwd.z)
    np.testing.assert_array_equal(res.z[n0:], rest.z)
    np.testing.assert_array_equal(res.R, rest.R)
    assert res.overflow == (fwd.overflow or rest.overflow)


@pytest.mark.parametrize("arch", ARCHS)
def test_learn_zero_only(arch: str) -> None:
    fmt = make_format(3, 8, "half_up")
    X, R0 = random_inputs(fmt, 8, scale=2.0, seed=2, r_spread=1.0)
    res = simulate(DecorrelationUnit(fmt, arch), X, R0, learn=False, p_gap=0.2, p_stall=0.5, seed=1)
    assert_matches(res, run(fmt, X, R0, learn=False))


@pytest.mark.parametrize("arch", ARCHS)
def test_update_shift_zero(arch: str) -> None:
    """2F + s = F_R: the update is the product itself (no rounding, no shift)."""
    fmt = make_format(3, 8, "stochastic", shift=4)
    assert fmt.update_drop == 0
    X, R0 = random_inputs(fmt, 8, scale=0.7, seed=4)
    assert_matches(simulate(DecorrelationUnit(fmt, arch), X, R0, p_gap=0.2, p_stall=0.2), run(fmt, X, R0))


# ------------------------------------------------------------------------------------------------ overflow
def _single_kind_cases() -> dict[str, tuple[UnitFormat, np.ndarray, np.ndarray]]:
    """Deterministic search for inputs where exactly one quantity saturates (and one where none does)."""
    d = 3
    fmts = [UnitFormat(size=d, width=8, frac=4, r_width=14, r_frac=8, shift=2),
            UnitFormat(size=d, width=8, frac=4, r_width=12, r_frac=8, shift=0)]  # R range = data range
    rng = np.random.default_rng(0)
    found: dict[str, tuple[UnitFormat, np.ndarray, np.ndarray]] = {}
    for t in range(30000):
        fmt = fmts[t % 2]
        n = int(rng.integers(1, 3))
        sx, sr = rng.choice([0.5, 1, 2, 4, 8]), rng.choice([0.2, 0.5, 1, 2, 4])
        X = np.clip(np.round(rng.normal(0, sx * fmt.one, (n, d))), fmt.w_min, fmt.w_max).astype(np.int64)
        R0 = np.eye(d) * fmt.r_one + rng.normal(0, sr * fmt.r_one, (d, d))
        R0 = np.clip(np.round(R0), fmt.r_min, fmt.r_max).astype(np.int64)
        if rng.random() < 0.5:  # one entry at the edge of R's range: R itself may saturate
            R0.flat[rng.integers(0, d * d)] = rng.choice([fmt.r_max - int(rng.integers(0, 40)),
                                                          fmt.r_min + int(rng.integers(0, 40))])
        kinds = [k for k, v in run(fmt, X, R0).overflow_counts.items() if v]
        key = "none" if not kinds else kinds[0] if len(kinds) == 1 else None
        if key is not None and key not in found:
            found[key] = (fmt, X, R0)
            if len(found) == len(OVERFLOW_KEYS) + 1:
                break
    return found


SINGLE_KIND = _single_kind_cases()


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("kind", ("none", *OVERFLOW_KEYS))
def test_overflow_flag_per_quantity(arch: str, kind: str) -> None:
    """Each saturating quantity (R view, z, p, v, e, R) alone raises the flag; no saturation leaves it 0."""
    assert kind in SINGLE_KIND, f"no input found where only {kind} saturates"
    fmt, X, R0 = SINGLE_KIND[kind]
    ref = run(fmt, X, R0)
    assert ref.overflow == (kind != "none")
    assert_matches(simulate(DecorrelationUnit(fmt, arch), X, R0, p_gap=0.3, p_stall=0.3), ref)


@pytest.mark.parametrize("arch", ARCHS)
def test_overflow_onset_and_clear(arch: str) -> None:
    """The flag rises with the first saturating sample, stays up (sticky) and clear_overflow drops it."""
    fmt = make_format(3, 8, "half_even", shift=6)
    rng = np.random.default_rng(7)
    X = np.round(rng.normal(0, 0.3 * fmt.one, (8, 3))).astype(np.int64)
    X[5] = [fmt.w_max, fmt.w_max, fmt.w_min]  # z = x + Σx/2 saturates
    X[6:] = 0
    R0 = ((np.eye(3) + 0.5) * fmt.r_one).astype(np.int64)
    unit = DecorrelationUnit(fmt, arch)
    res = simulate(unit, X, R0, one_by_one=True)
    expected = [False] + [run(fmt, X[: t + 1], R0).overflow for t in range(len(X))]
    assert expected[5] is False and expected[6] is True
    assert res.overflow_after == expected

    seen = {}

    async def bench(ctx):
        for a in range(9):  # load R0 (a fresh simulation starts from the identity)
            ctx.set(unit.r_we, 1)
            ctx.set(unit.r_addr, a)
            ctx.set(unit.r_wdata, int(R0[a // 3, a % 3]))
            await ctx.tick()
        ctx.set(unit.r_we, 0)
        ctx.set(unit.z.ready, 1)
        for sample, key in ((X[5], "saturating"), (X[6], "quiet")):
            ctx.set(unit.x.payload.as_value(), _pack(sample, fmt.width))
            ctx.set(unit.x.valid, 1)
            await ctx.tick()
            ctx.set(unit.x.valid, 0)
            for _ in range(4 * unit.cycles_per_sample):
                await ctx.tick()
            seen[key] = ctx.get(unit.overflow)
            ctx.set(unit.clear_overflow, 1)
            await ctx.tick()
            ctx.set(unit.clear_overflow, 0)
            seen[key + "_cleared"] = ctx.get(unit.overflow)

    sim = Simulator(unit)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert seen == {"saturating": 1, "saturating_cleared": 0, "quiet": 0, "quiet_cleared": 0}


# ------------------------------------------------------------------------------------------------ timing
@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("d", (2, 3, 4, 5, 8, 16))
def test_measured_timing(arch: str, d: int) -> None:
    """valid/ready always high: the steady x interval is cycles_per_sample; x → z valid is latency."""
    if arch == "mac" and d == 16:
        d = 12  # 768 cycles per sample: d=12 exercises the same counters in half the time
    fmt = make_format(d, 12)
    unit = DecorrelationUnit(fmt, arch)
    X, _ = random_inputs(fmt, 6, scale=0.5, seed=d)
    res = simulate(unit, X)
    gaps = np.diff(res.x_cycles)
    assert list(gaps[1:]) == [unit.cycles_per_sample] * (len(gaps) - 1), (list(gaps), unit.cycles_per_sample)
    assert res.z_valid_cycles[0] - res.x_cycles[0] == unit.latency
    # the next x is buffered early, so in steady state z words also come every cycles_per_sample cycles
    assert list(np.diff(res.z_valid_cycles)) == [unit.cycles_per_sample] * (len(X) - 1)
    assert_matches(res, run(fmt, X))


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("d", (8, 16))
def test_multiplier_utilisation(arch: str, d: int) -> None:
    """3d² / (M · cycles_per_sample) ≥ 0.8 at d = 8 and 16; M = d (row) or 1 (mac)."""
    unit = DecorrelationUnit(make_format(d, 16), arch)
    assert unit.multipliers == (d if arch == "row" else 1)
    util = 3 * d * d / (unit.multipliers * unit.cycles_per_sample)
    assert util == pytest.approx(unit.utilisation)
    assert util >= 0.8, (arch, d, unit.cycles_per_sample)
    if arch == "row":
        assert unit.cycles_per_sample == 3 * d + 3 and unit.latency == d + 6
    else:
        assert unit.cycles_per_sample == 3 * d * d and unit.latency == d * d + 6


# ------------------------------------------------------------------------------------------------ Verilog
PORTS = ("x__payload", "x__valid", "x__ready", "z__payload", "z__valid", "z__ready", "learn", "r_addr",
         "r_we", "r_wdata", "r_re", "r_rdata", "r_rvalid", "busy", "overflow", "clear_overflow", "clk", "rst")


@pytest.mark.parametrize("arch", ARCHS)
def test_verilog_ports_and_multipliers(arch: str) -> None:
    """d = 8 converts; the NUMERICS.md port names and widths are there; exactly M multiplies in the design."""
    fmt = make_format(8, 16, "stochastic")
    unit = DecorrelationUnit(fmt, arch)
    text = verilog.convert(unit, name="decor_unit", emit_src=False)
    header = re.search(r"module decor_unit\((.*?)\);", text, re.S)
    assert header is not None
    assert set(PORTS) == {p.strip() for p in header.group(1).split(",")}
    widths = {"x__payload": 8 * 16, "z__payload": 8 * 16, "r_addr": 6, "r_wdata": 28, "r_rdata": 28}
    for name, bits in widths.items():
        assert re.search(rf"(input|output) \[{bits - 1}:0\] {name};", text), name
    assert len(re.findall(r"[\w)] \* [\w$(]", text)) == unit.multipliers


@pytest.mark.parametrize("arch", ARCHS)
def test_verilog_largest_format(arch: str) -> None:
    """d = 16, W = 18 (stochastic, delayed: the most logic) converts."""
    fmt = UnitFormat(size=16, width=18, frac=14, r_width=30, r_frac=22, shift=12, rounding="stochastic",
                     delayed=True)
    text = verilog.convert(DecorrelationUnit(fmt, arch), name="decor_unit", emit_src=False)
    assert "module decor_unit(" in text
    assert len(re.findall(r"[\w)] \* [\w$(]", text)) == (16 if arch == "row" else 1)


def test_unknown_architecture_names_closest() -> None:
    with pytest.raises(FormatError, match="'row'"):
        DecorrelationUnit(make_format(4, 12), "rwo")
    with pytest.raises(FormatError, match="'mac'"):
        DecorrelationUnit(make_format(4, 12), "macc")
