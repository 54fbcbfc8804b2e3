"""Amaranth simulation of the memory-backed DecorrelationUnit against the integer model (the specification).

Every z element, the final R (read back through ctl.r), the overflow flag and the sample counters are compared
with ``fixed.model.run`` over a covering set of sizes d, lane counts M (M < d, M = d, M > d, d not a multiple
of M), widths, rounding modes, with random gaps on x and random stalls on z and R-port commands while busy
(which must be ignored). Timing (cycles per sample, latency, init sweep, R read latency) is measured, not assumed.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.sim import Simulator

from analogdecorr.errors import FormatError
from analogdecorr.fixed.format import ROUNDING_MODES, UNIT_RULES, UnitFormat
from analogdecorr.fixed.model import OVERFLOW_KEYS, run
from analogdecorr.hdl import DecorrelationUnit
from analogdecorr.hdl.ports import verilog_ports

# η per width: W=8 gives 2F + s < F_R (exact left shift of the update), the others drop 8 bits
SHIFTS = {8: 2, 12: 8, 16: 8}


def make_format(d: int, w: int, mode: str = "half_even", **kw) -> UnitFormat:
    """F = W − 4, F_R = F + 8, W_R = W + 12 (R ∈ [−128, 128)), η from SHIFTS."""
    f = w - 4
    args = dict(size=d, width=w, frac=f, r_width=w + 12, r_frac=f + 8, shift=SHIFTS[w], rounding=mode)
    args.update(kw)
    return UnitFormat(**args)


# ------------------------------------------------------------------------------------------------ harness
@dataclass
class SimResult:
    z: np.ndarray
    R: np.ndarray
    overflow: bool
    frame_error: bool
    samples: int
    learned: int
    init_cycles: int  # cycles busy after the simulation's reset (the init sweep)
    x_last_cycles: list[int] = field(default_factory=list)  # cycle of each sample's last x transfer
    z_first_cycles: list[int] = field(default_factory=list)  # first cycle each sample's z element 0 is valid


def simulate(unit: DecorrelationUnit, X: np.ndarray, R0: np.ndarray | None = None, *, learn=True,
             p_gap: float = 0.0, p_stall: float = 0.0, port_noise: bool = False, seed: int = 0) -> SimResult:
    """Wait for the init sweep, load R0 through ctl.r, stream X element by element, read R back once idle.

    ``p_gap``/``p_stall``: probability that x.valid is withheld / z.ready is low in a cycle. ``port_noise``
    drives random R writes and reads while busy (the unit must ignore them).
    """
    out: dict = {}
    ctl = unit.ctl

    async def bench(ctx):
        cyc = 0
        while ctx.get(ctl.busy):
            assert not ctx.get(unit.x.ready), "x accepted during the init sweep"
            await ctx.tick()
            cyc += 1
            assert cyc <= 4 * unit.init_cycles + 10, "init sweep does not end"
        if R0 is not None:
            await load_r(ctx, unit, R0)
        zs, x_last, z_first = await stream(ctx, unit, X, learn=learn, p_gap=p_gap, p_stall=p_stall,
                                           port_noise=port_noise, seed=seed)
        out["res"] = SimResult(zs, await read_r(ctx, unit), bool(ctx.get(ctl.overflow)),
                               bool(ctx.get(ctl.frame_error)), ctx.get(ctl.samples), ctx.get(ctl.learned), cyc,
                               x_last, z_first)

    run_bench(unit, bench)
    return out["res"]


async def load_r(ctx, unit: DecorrelationUnit, R0: np.ndarray) -> None:
    """Write R0 through ctl.r, one word per cycle (the unit is idle)."""
    d = unit.fmt.size
    for a in range(d * d):
        ctx.set(unit.ctl.r.we, 1)
        ctx.set(unit.ctl.r.addr, a)
        ctx.set(unit.ctl.r.wdata, int(R0[a // d][a % d]))
        await ctx.tick()
    ctx.set(unit.ctl.r.we, 0)


async def stream(ctx, unit: DecorrelationUnit, X: np.ndarray, *, learn=True, p_gap: float = 0.0,
                 p_stall: float = 0.0, port_noise: bool = False, seed: int = 0, lasts: list[bool] | None = None,
                 max_cycles: int = 300_000) -> tuple[np.ndarray, list[int], list[int]]:
    """Send X's elements on x and take z's until every z element is in, then wait for busy = 0.

    Returns z (n, d), the cycle of each sample's last x transfer and the first cycle each z element 0 is valid.
    ``lasts`` overrides the last markers (one per element) to test framing.
    """
    fmt = unit.fmt
    d = fmt.size
    n = len(X)
    learns = [bool(learn)] * n if isinstance(learn, (bool, np.bool_)) else [bool(v) for v in learn]
    rng = random.Random(seed)
    x, z, ctl = unit.x, unit.z, unit.ctl
    elems = [(int(X[t][jj]), jj == d - 1, learns[t]) for t in range(n) for jj in range(d)]
    if lasts is not None:
        elems = [(v, bool(lst), lrn) for (v, _, lrn), lst in zip(elems, lasts, strict=True)]
    ei, zs, x_last, z_first = 0, [], [], []
    cyc, x_valid = 0, False
    while len(zs) < n * d:
        if not x_valid and ei < len(elems) and rng.random() >= p_gap:
            x_valid = True
            v, last, lrn = elems[ei]
            ctx.set(x.payload.data, v)
            ctx.set(x.payload.last, int(last))
            ctx.set(x.payload.learn, int(lrn))
        ctx.set(x.valid, int(x_valid))
        z_ready = rng.random() >= p_stall
        ctx.set(z.ready, int(z_ready))
        noisy = port_noise and ctx.get(ctl.busy) and rng.random() < 0.3
        ctx.set(ctl.r.we, int(noisy))
        ctx.set(ctl.r.re, int(noisy))
        ctx.set(ctl.r.addr, rng.randrange(d * d))
        ctx.set(ctl.r.wdata, rng.randrange(fmt.r_min, fmt.r_max + 1))
        if ctx.get(z.valid):
            if len(zs) % d == 0 and len(z_first) == len(zs) // d:
                z_first.append(cyc)
            if z_ready:
                assert ctx.get(z.payload.last) == (len(zs) % d == d - 1), "z last marker misplaced"
                zs.append(ctx.get(z.payload.data))
        if x_valid and ctx.get(x.ready):
            if ei % d == d - 1:
                x_last.append(cyc)
            ei += 1
            x_valid = False
        await ctx.tick()
        cyc += 1
        assert not ctx.get(ctl.r.rvalid), "an R read was acted on while busy"
        assert cyc < max_cycles, "simulation timed out"
    ctx.set(x.valid, 0)
    ctx.set(ctl.r.we, 0)
    ctx.set(ctl.r.re, 0)
    while ctx.get(ctl.busy):
        await ctx.tick()
    return np.array(zs, dtype=np.int64).reshape(n, d), x_last, z_first


async def read_r(ctx, unit: DecorrelationUnit) -> np.ndarray:
    """Read R through ctl.r, one command per cycle; every rvalid comes exactly r_read_latency cycles later."""
    d = unit.fmt.size
    ctl = unit.ctl
    R = np.zeros((d, d), dtype=np.int64)
    pending: list[tuple[int, int]] = []
    a = cyc = got = 0
    while got < d * d:
        if a < d * d:
            ctx.set(ctl.r.re, 1)
            ctx.set(ctl.r.addr, a)
            pending.append((cyc, a))
            a += 1
        else:
            ctx.set(ctl.r.re, 0)
        await ctx.tick()
        cyc += 1
        if ctx.get(ctl.r.rvalid):
            issued, addr = pending.pop(0)
            assert cyc - issued == unit.r_read_latency
            R[addr // d, addr % d] = ctx.get(ctl.r.rdata)
            got += 1
        assert cyc < d * d + 4 * unit.r_read_latency, "R reads do not come back"
    ctx.set(ctl.r.re, 0)
    return R


def run_bench(unit: DecorrelationUnit, bench) -> None:
    sim = Simulator(unit)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


def random_inputs(fmt: UnitFormat, n: int, scale: float, seed: int, r_spread: float = 0.3):
    """Gaussian x (σ = scale, saturated to W bits) and a non-identity R0 near I (off-diagonals ~ r_spread)."""
    rng = np.random.default_rng(seed)
    X = np.clip(np.round(rng.normal(0.0, scale * fmt.one, (n, fmt.size))), fmt.w_min, fmt.w_max)
    R0 = np.eye(fmt.size) * fmt.r_one + rng.normal(0.0, r_spread * fmt.r_one, (fmt.size, fmt.size))
    R0 = np.clip(np.round(R0), fmt.r_min, fmt.r_max)
    return X.astype(np.int64), R0.astype(np.int64)


def assert_matches(res: SimResult, ref, n_learned: int | None = None) -> None:
    np.testing.assert_array_equal(res.z, ref.z, err_msg="z words differ from the integer model")
    np.testing.assert_array_equal(res.R, ref.R, err_msg="final R differs from the integer model")
    assert res.overflow == ref.overflow, f"overflow {res.overflow} != model {ref.overflow_counts}"
    assert not res.frame_error
    assert res.samples == len(ref.z)
    if n_learned is not None:
        assert res.learned == n_learned


# ------------------------------------------------------------------------------------------------ bit-exact
def _matrix() -> list[tuple[int, int, int, str, str, int]]:
    """Every d with M ∈ {1, 2, 3, d, d + 2} (deduplicated); width, rounding mode, rule and centring cycle
    through with different periods so that every (mode, rule) pair and both centring states occur."""
    cases = []
    for d in (2, 3, 5, 8):
        for lanes in sorted({1, 2, 3, d, d + 2}):
            k = len(cases)
            cases.append((d, lanes, (8, 12, 16)[k % 3], ROUNDING_MODES[k % 4], UNIT_RULES[(k // 4) % 2],
                          (0, 2, 5)[k % 3 if k % 2 else (k + 1) % 3]))
    return cases


MATRIX = _matrix()


def _case_inputs(k: int, fmt: UnitFormat) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x with a per-feature offset (centring has a mean to remove), R0, and a learn pattern (odd k: random)."""
    X, R0 = random_inputs(fmt, 8, scale=(0.4, 0.9, 2.5)[k % 3], seed=k)
    offset = (np.arange(fmt.size) - fmt.size / 2) * fmt.one // 2
    X = np.clip(X + offset.astype(np.int64), fmt.w_min, fmt.w_max)
    learn = np.random.default_rng(k).random(len(X)) < 0.7 if k % 2 else np.ones(len(X), bool)
    return X, R0, learn


@pytest.mark.parametrize(("d", "lanes", "w", "mode", "rule", "centre"), MATRIX)
def test_bit_exact_with_backpressure(d: int, lanes: int, w: int, mode: str, rule: str, centre: int) -> None:
    """R0 loaded through the port, random stalls on both streams, R-port noise while busy, per-sample learn:
    z, final R, overflow and counters equal the model's."""
    k = MATRIX.index((d, lanes, w, mode, rule, centre))
    fmt = make_format(d, w, mode, rule=rule, centre_shift=centre)
    X, R0, learn = _case_inputs(k, fmt)
    unit = DecorrelationUnit(fmt, lanes=lanes)
    res = simulate(unit, X, R0, learn=learn, p_gap=0.3, p_stall=0.4, port_noise=True, seed=k)
    assert_matches(res, run(fmt, X, R0, learn=learn), n_learned=int(learn.sum()))
    assert res.init_cycles == unit.init_cycles


def test_matrix_covers_what_it_claims() -> None:
    """The matrix mixes rules, modes, centring, learn patterns, and saturates in some cases but not all."""
    assert {(mode, rule) for _, _, _, mode, rule, _ in MATRIX} == {(m, r) for m in ROUNDING_MODES
                                                                 for r in UNIT_RULES}
    assert {c > 0 for *_, c in MATRIX} == {False, True}
    assert {(c > 0, rule) for *_, rule, c in MATRIX} == {(c, r) for c in (False, True) for r in UNIT_RULES}
    assert {lanes > d for d, lanes, *_ in MATRIX} == {False, True}
    assert any(d % lanes and lanes < d for d, lanes, *_ in MATRIX)
    flags = set()
    for k, (d, _, w, mode, rule, centre) in enumerate(MATRIX):
        fmt = make_format(d, w, mode, rule=rule, centre_shift=centre)
        X, R0, learn = _case_inputs(k, fmt)
        flags.add(run(fmt, X, R0, learn=learn).overflow)
    assert flags == {False, True}


@pytest.mark.parametrize(("d", "lanes"), [(3, 2), (5, 5)])
def test_identity_after_reset_without_load(d: int, lanes: int) -> None:
    """No R load: the init sweep's R = I is what the model starts from."""
    fmt = make_format(d, 12, "stochastic")
    X, _ = random_inputs(fmt, 6, scale=1.0, seed=d)
    res = simulate(DecorrelationUnit(fmt, lanes=lanes), X, None, p_gap=0.2, p_stall=0.2)
    assert_matches(res, run(fmt, X))


@pytest.mark.parametrize("lanes", [1, 3])
def test_learn_zero_is_forward_only(lanes: int) -> None:
    """learn = 0 samples: z with the current R and mu, R, mu and the LFSR unchanged (the model's per-sample
    learn); checked against the model's pieces too: a frozen prefix, then learning from the same R."""
    fmt = make_format(4, 12, "stochastic", centre_shift=2)
    X, R0 = random_inputs(fmt, 10, scale=1.0, seed=11, r_spread=0.5)
    learn = np.array([False] * 4 + [True, True, False, True, False, True])
    res = simulate(DecorrelationUnit(fmt, lanes=lanes), X, R0, learn=learn, p_gap=0.3, p_stall=0.3, seed=3)
    ref = run(fmt, X, R0, learn=learn)
    assert_matches(res, ref, n_learned=int(learn.sum()))
    fwd = run(fmt, X[:4], R0, learn=False)
    np.testing.assert_array_equal(res.z[:4], fwd.z)
    np.testing.assert_array_equal(fwd.R, R0)


@pytest.mark.parametrize("lanes", [2, 5])
def test_learn_zero_only(lanes: int) -> None:
    fmt = make_format(3, 8, "half_up")
    X, R0 = random_inputs(fmt, 8, scale=2.0, seed=2, r_spread=1.0)
    res = simulate(DecorrelationUnit(fmt, lanes=lanes), X, R0, learn=False, p_gap=0.2, p_stall=0.5, seed=1)
    assert_matches(res, run(fmt, X, R0, learn=False), n_learned=0)


def test_update_shift_zero() -> None:
    """2F + s = F_R: the update is the product itself (no rounding, no shift)."""
    fmt = make_format(3, 8, "stochastic", shift=4)
    assert fmt.update_drop == 0
    X, R0 = random_inputs(fmt, 8, scale=0.7, seed=4)
    assert_matches(simulate(DecorrelationUnit(fmt, lanes=2), X, R0, p_gap=0.2, p_stall=0.2), run(fmt, X, R0))


# ------------------------------------------------------------------------------------------------ overflow
def _single_kind_cases() -> dict[str, tuple[UnitFormat, np.ndarray, np.ndarray]]:
    """Deterministic search for inputs where exactly one quantity saturates (and one where none does)."""
    d = 3
    fmts = [UnitFormat(size=d, width=8, frac=4, r_width=14, r_frac=8, shift=2),
            UnitFormat(size=d, width=8, frac=4, r_width=12, r_frac=8, shift=0)]  # R range = data range
    rng = np.random.default_rng(0)
    found: dict[str, tuple[UnitFormat, np.ndarray, np.ndarray]] = {}
    wanted = [k for k in OVERFLOW_KEYS if k != "xc"]  # xc needs centring: tested with it
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
            if len(found) == len(wanted) + 1:
                break
    return found


SINGLE_KIND = _single_kind_cases()


@pytest.mark.parametrize("kind", ("none", *(k for k in OVERFLOW_KEYS if k != "xc")))
def test_overflow_flag_per_quantity(kind: str) -> None:
    """Each saturating quantity (R view, z, p, v, e, R) alone raises the flag; no saturation leaves it 0."""
    assert kind in SINGLE_KIND, f"no input found where only {kind} saturates"
    fmt, X, R0 = SINGLE_KIND[kind]
    ref = run(fmt, X, R0)
    assert ref.overflow == (kind != "none")
    assert_matches(simulate(DecorrelationUnit(fmt, lanes=2), X, R0, p_gap=0.3, p_stall=0.3), ref)


def test_overflow_from_centring_alone() -> None:
    """xc = sat(x − rnd(mu, m)) saturating is the only overflow: the flag rises (model key "xc")."""
    fmt = make_format(3, 12, "half_even", centre_shift=1)
    X = np.array([[fmt.w_max] * 3, [fmt.w_min] * 3])
    learn = np.array([True, False])  # sample 0 moves mu to w_max; sample 1's xc = w_min − w_max/2
    ref = run(fmt, X, learn=learn)
    assert ref.overflow_counts["xc"] == 3 and sum(ref.overflow_counts.values()) == 3
    res = simulate(DecorrelationUnit(fmt, lanes=2), X, None, learn=learn, p_gap=0.3, p_stall=0.3)
    assert_matches(res, ref, n_learned=1)


def test_overflow_sticky_and_clear() -> None:
    """The flag rises with a saturating sample, stays up over a quiet one, and clear_overflow drops it."""
    fmt = make_format(3, 8, "half_even", shift=6)
    unit = DecorrelationUnit(fmt, lanes=2)
    loud = [fmt.w_max, fmt.w_max, fmt.w_min]
    R0 = ((np.eye(3) + 0.5) * fmt.r_one).astype(np.int64)
    assert run(fmt, np.array([loud]), R0).overflow and not run(fmt, np.zeros((1, 3), np.int64), R0).overflow
    seen = {}

    async def bench(ctx):
        while ctx.get(unit.ctl.busy):
            await ctx.tick()
        await load_r(ctx, unit, R0)
        await stream(ctx, unit, np.array([loud]))
        seen["loud"] = ctx.get(unit.ctl.overflow)
        await stream(ctx, unit, np.zeros((1, 3), np.int64))
        seen["quiet"] = ctx.get(unit.ctl.overflow)
        ctx.set(unit.ctl.clear_overflow, 1)
        await ctx.tick()
        ctx.set(unit.ctl.clear_overflow, 0)
        seen["cleared"] = ctx.get(unit.ctl.overflow)
        await stream(ctx, unit, np.zeros((1, 3), np.int64))
        seen["quiet_after"] = ctx.get(unit.ctl.overflow)

    run_bench(unit, bench)
    assert seen == {"loud": 1, "quiet": 1, "cleared": 0, "quiet_after": 0}


# ------------------------------------------------------------------------------------------------ reset, frames
def test_reset_command_restores_identity_and_seed() -> None:
    """After learning, ctl.reset: busy for init_cycles, R = I, counters and flags 0, then the same stream
    gives what a fresh unit gives (mu back at 0, LFSR back at its seed)."""
    fmt = make_format(5, 12, "stochastic", centre_shift=2)  # mu must return to 0 as well
    unit = DecorrelationUnit(fmt, lanes=2)
    X, R0 = random_inputs(fmt, 4, scale=3.0, seed=5, r_spread=0.5)
    ref = run(fmt, X)
    assert run(fmt, X, R0).overflow and not ref.overflow  # the reset must clear the flag
    got = {}

    async def run_stream(ctx, key):
        zs, _, _ = await stream(ctx, unit, X, p_gap=0.2, p_stall=0.2, seed=len(got))
        got[key] = (zs, await read_r(ctx, unit), ctx.get(unit.ctl.overflow), ctx.get(unit.ctl.samples))

    async def bench(ctx):
        while ctx.get(unit.ctl.busy):
            await ctx.tick()
        await load_r(ctx, unit, R0)  # a non-identity R0, so the reset has something to undo
        await run_stream(ctx, "before")
        ctx.set(unit.ctl.reset, 1)
        await ctx.tick()
        ctx.set(unit.ctl.reset, 0)
        busy = 0
        while ctx.get(unit.ctl.busy):
            busy += 1
            await ctx.tick()
        got["busy"] = busy
        got["after_reset"] = (await read_r(ctx, unit), ctx.get(unit.ctl.overflow), ctx.get(unit.ctl.samples),
                              ctx.get(unit.ctl.learned))
        await run_stream(ctx, "after")

    run_bench(unit, bench)
    assert got["busy"] == unit.init_cycles
    R_reset, ovf, samples, learned = got["after_reset"]
    np.testing.assert_array_equal(R_reset, np.eye(5, dtype=np.int64) * fmt.r_one)
    assert (ovf, samples, learned) == (0, 0, 0)
    z_before, _, _, n_before = got["before"]
    np.testing.assert_array_equal(z_before, run(fmt, X, R0).z)
    assert n_before == len(X)
    z_after, R_after, ovf_after, _ = got["after"]
    np.testing.assert_array_equal(z_after, ref.z)
    np.testing.assert_array_equal(R_after, ref.R)
    assert ovf_after == ref.overflow


def test_reset_in_the_middle_of_a_sample() -> None:
    """ctl.reset while a sample is in pass 2 and the next is half received: everything in flight is dropped,
    and a fresh stream afterwards is what the model gives from the reset state."""
    fmt = make_format(4, 12, "stochastic", rule="whiten", centre_shift=1)
    unit = DecorrelationUnit(fmt, lanes=3)
    X, _ = random_inputs(fmt, 3, scale=1.0, seed=8)
    got = {}

    async def bench(ctx):
        while ctx.get(unit.ctl.busy):
            await ctx.tick()
        ctx.set(unit.z.ready, 0)  # z of the first sample stays in the unit
        ctx.set(unit.x.valid, 1)
        for e in range(6):  # one whole sample and half of the next
            ctx.set(unit.x.payload.data, 100 + e)
            ctx.set(unit.x.payload.last, int(e == 3))
            ctx.set(unit.x.payload.learn, 1)
            while not ctx.get(unit.x.ready):
                await ctx.tick()
            await ctx.tick()
        ctx.set(unit.x.valid, 0)
        for _ in range(unit.plan.slots + 4):  # into pass 2 of the first sample
            await ctx.tick()
        assert ctx.get(unit.ctl.busy)
        ctx.set(unit.ctl.reset, 1)
        await ctx.tick()
        ctx.set(unit.ctl.reset, 0)
        got["z_valid_after_reset"] = ctx.get(unit.z.valid)
        while ctx.get(unit.ctl.busy):
            await ctx.tick()
        zs, _, _ = await stream(ctx, unit, X, p_gap=0.2, p_stall=0.2)
        got["z"], got["R"] = zs, await read_r(ctx, unit)
        got["counters"] = (ctx.get(unit.ctl.samples), ctx.get(unit.ctl.learned))

    run_bench(unit, bench)
    ref = run(fmt, X)
    assert got["z_valid_after_reset"] == 0
    np.testing.assert_array_equal(got["z"], ref.z)
    np.testing.assert_array_equal(got["R"], ref.R)
    assert got["counters"] == (3, 3)


def test_frame_error_on_misplaced_last() -> None:
    """A last marker on the wrong element raises the sticky frame_error; the unit keeps its own count."""
    fmt = make_format(3, 12)
    unit = DecorrelationUnit(fmt, lanes=3)
    X, _ = random_inputs(fmt, 2, scale=0.5, seed=1)
    seen = {}

    async def bench(ctx):
        while ctx.get(unit.ctl.busy):
            await ctx.tick()
        seen["before"] = ctx.get(unit.ctl.frame_error)
        lasts = [False, True, False, False, False, True]  # sample 0: last on element 1 instead of 2
        seen["z"], _, _ = await stream(ctx, unit, X, lasts=lasts)
        seen["after"] = ctx.get(unit.ctl.frame_error)

    run_bench(unit, bench)
    assert seen["before"] == 0 and seen["after"] == 1
    np.testing.assert_array_equal(seen["z"], run(fmt, X).z)


# ------------------------------------------------------------------------------------------------ timing
@pytest.mark.parametrize(("d", "lanes"), [(2, 1), (5, 2), (8, 8), (8, 10), (16, 4), (32, 8)])
def test_measured_timing(d: int, lanes: int) -> None:
    """valid/ready always high: the steady interval between samples is cycles_per_sample; last x → z is
    latency. At d = 16, M = 4 and d = 32, M = 8 cycles_per_sample is within 10 % of 3d²/M."""
    fmt = make_format(d, 12)
    unit = DecorrelationUnit(fmt, lanes=lanes)
    n = 3 if d <= 8 else 2
    X, _ = random_inputs(fmt, n + 1, scale=0.5, seed=d)
    res = simulate(unit, X)
    # the first two samples are buffered early (two-sample input buffer); later ones pace the unit
    steady = np.diff(res.z_first_cycles)
    assert list(steady) == [unit.cycles_per_sample] * n, (list(steady), unit.cycles_per_sample)
    assert res.z_first_cycles[0] - res.x_last_cycles[0] == unit.latency
    assert unit.multipliers == min(lanes, d)
    assert unit.cycles_per_sample == 3 * -(-d // unit.multipliers) * d + sum(
        (unit.plan.gap12, unit.plan.gap23, unit.plan.gap31))
    if d >= 16:
        assert unit.cycles_per_sample <= 1.1 * 3 * d * d / lanes
    assert_matches(res, run(fmt, X))


def test_forward_only_rate() -> None:
    """learn = 0 samples run pass 1 only: G·d cycles each once the stream keeps up (d = 8, M = 2: 32)."""
    fmt = make_format(8, 12)
    unit = DecorrelationUnit(fmt, lanes=2)
    X, _ = random_inputs(fmt, 5, scale=0.5, seed=0)
    res = simulate(unit, X, learn=False)
    assert list(np.diff(res.z_first_cycles)[1:]) == [unit.plan.slots] * 3
    assert_matches(res, run(fmt, X, learn=False), n_learned=0)


def test_plan_numbers() -> None:
    """Properties and the memory plan agree with each other; R sits in L banks of G·d words of W_R bits."""
    fmt = make_format(10, 16)
    unit = DecorrelationUnit(fmt, lanes=4)
    plan = {mem["name"]: mem for mem in unit.memory_plan}
    assert (unit.lanes, unit.multipliers, unit.plan.groups) == (4, 4, 3)
    assert plan["r_bank"]["count"] == 4 and plan["r_bank"]["depth"] == 30 and plan["r_bank"]["width"] == 28
    assert unit.storage_bits == sum(mem["bits"] for mem in unit.memory_plan)
    assert unit.init_cycles == 30
    assert unit.utilisation == pytest.approx(300 / (4 * unit.cycles_per_sample))


# ------------------------------------------------------------------------------------------------ Verilog
def test_verilog_ports_memories_and_multipliers() -> None:
    """d = 5, M = 2 converts; the ports are ports.py's table; exactly L multiplies; R and p in memories."""
    fmt = make_format(5, 16, "stochastic")
    unit = DecorrelationUnit(fmt, lanes=2)
    text = verilog.convert(unit, name="decor_unit", emit_src=False)
    header = re.search(r"module decor_unit\((.*?)\);", text, re.S)
    assert header is not None
    expected = verilog_ports(fmt.width, fmt.r_width, fmt.size)
    assert {p.strip() for p in header.group(1).split(",")} == set(expected)
    for name, (direction, bits) in expected.items():
        width = rf"\[{bits - 1}:0\] " if bits > 1 else ""
        assert re.search(rf"^\s*{direction} (signed )?{width}{name};", text, re.M), name
    assert len(re.findall(r"[\w)] \* [\w$(]", text)) == unit.multipliers
    # R: one memory per lane, G·d = 15 words of W_R = 28 bits (reg [27:0] name [14:0])
    assert len(re.findall(r"reg \[27:0\] \w*r_bank\d\w* \[14:0\]", text)) == 2
    # p: one single-port RAM module per lane (SPRAM on an iCE40 UltraPlus, here a plain memory)
    assert len(re.findall(r"^module \\decor_unit\.p_bank\d", text, re.M)) == 2
    assert len(re.findall(r"reg \[15:0\] mem \[14:0\]", text)) == 2


def test_bad_parameters_are_format_errors() -> None:
    with pytest.raises(FormatError, match="lanes"):
        DecorrelationUnit(make_format(4, 12), lanes=0)
    with pytest.raises(FormatError, match="UnitFormat"):
        DecorrelationUnit({"size": 4}, lanes=2)
