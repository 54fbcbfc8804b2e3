"""The Amaranth rounding, saturation and LFSR blocks against the integer helpers of fixed.format (the spec).

Exhaustive over small widths: every signed 7-bit value through rnd(v, k) for k = 0..8 in every mode, every
signed 9-bit value through saturation to 6 bits; the LFSR step for hundreds of steps and its unrolled form.
"""

from __future__ import annotations

import random

import pytest
from amaranth.hdl import Module, Signal, signed
from amaranth.sim import Simulator

from analogdecorr.fixed.format import ROUNDING_MODES, Lfsr, UnitFormat, round_shift, saturate
from analogdecorr.hdl import rounding


def _run_comb(m: Module, bench) -> None:
    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()


def test_round_shift_exhaustive() -> None:
    """rnd(v, k) for all 7-bit v, k = 0..8 (k ≥ width too), all modes; stochastic: all 3-bit rand values."""
    m = Module()
    v = Signal(signed(7))
    rand = Signal(8)
    outs = {}
    for mode in ROUNDING_MODES:
        for k in range(9):
            o = Signal(signed(9), name=f"{mode}_{k}")
            m.d.comb += o.eq(rounding.round_shift(v, k, mode, rand if mode == "stochastic" else None))
            outs[mode, k] = o
    rng = random.Random(0)
    rands = list(range(8)) + [rng.randrange(256) for _ in range(4)]

    async def bench(ctx):
        for value in range(-64, 64):
            ctx.set(v, value)
            for r in rands:
                ctx.set(rand, r)
                for (mode, k), o in outs.items():
                    if mode != "stochastic" and r != rands[0]:
                        continue
                    expected = round_shift(value, k, mode, r)
                    assert ctx.get(o) == expected, (mode, k, value, r)

    _run_comb(m, bench)


def test_saturate_exhaustive() -> None:
    m = Module()
    v = Signal(signed(9))
    out, flag = rounding.saturate(v, 6)
    narrow, narrow_flag = rounding.saturate(v, 9)  # nothing to clamp: returned as is
    o, f = Signal(signed(6)), Signal()
    m.d.comb += [o.eq(out), f.eq(flag)]

    async def bench(ctx):
        for value in range(-256, 256):
            ctx.set(v, value)
            exp, count = saturate(value, 6)
            assert (ctx.get(o), ctx.get(f)) == (exp, count), value

    _run_comb(m, bench)
    assert narrow is not None and narrow_flag.value == 0


@pytest.mark.parametrize(("width", "taps", "seed"),
                         [(32, (32, 22, 2, 1), 0xACE1), (7, (7, 6), 1), (5, (5, 3), 19)])
def test_lfsr_step_sequence(width: int, taps: tuple[int, ...], seed: int) -> None:
    """A register stepped by lfsr_step follows fixed.format.Lfsr; the unrolled d-step form matches draw()."""
    m = Module()
    state = Signal(width, init=seed)
    m.d.sync += state.eq(rounding.lfsr_step(state, taps))
    values, after = rounding.lfsr_states(m, state, taps, 5)
    ref = Lfsr(width, taps, seed)

    async def bench(ctx):
        for _ in range(300):
            assert ctx.get(state) == ref.value
            ahead = Lfsr(width, taps, ref.value)
            assert [ctx.get(x) for x in values] == [int(x) for x in ahead.draw(5)]
            assert ctx.get(after) == ahead.value
            await ctx.tick()
            ref.step()

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.parametrize("mode", ROUNDING_MODES)
@pytest.mark.parametrize("shift", [0, 4, 9])  # update drop 2F + s − F_R = −4 (exact left shift), 0, 5
def test_unit_ops_against_helpers(mode: str, shift: int) -> None:
    """r_view, data_round and r_update compose rnd/sat exactly as NUMERICS.md says (random operands)."""
    fmt = UnitFormat(size=2, width=8, frac=4, r_width=17, r_frac=12, shift=shift, rounding=mode)
    m = Module()
    r = Signal(signed(fmt.r_width))
    prod = Signal(signed(2 * fmt.width))
    acc = Signal(signed(fmt.acc_bits))
    rand = Signal(fmt.lfsr_width)
    rw, rw_f = rounding.r_view(fmt, r)
    word, word_f = rounding.data_round(fmt, acc)
    new_r, new_f = rounding.r_update(fmt, r, prod, rand if rounding.uses_lfsr(fmt) else None)
    sigs = [Signal(signed(fmt.width)), Signal(), Signal(signed(fmt.width)), Signal(),
            Signal(signed(fmt.r_width)), Signal()]
    m.d.comb += [s.eq(e) for s, e in zip(sigs, (rw, rw_f, word, word_f, new_r, new_f), strict=True)]
    other = fmt.view_rounding
    rng = random.Random(shift)

    async def bench(ctx):
        for _ in range(400):
            rv = rng.randrange(fmt.r_min, fmt.r_max + 1)
            pv = rng.randrange(-(1 << 15), 1 << 15)
            av = rng.randrange(-(1 << (fmt.acc_bits - 1)), 1 << (fmt.acc_bits - 1))
            ra = rng.randrange(1 << 32)
            ctx.set(r, rv)
            ctx.set(prod, pv)
            ctx.set(acc, av)
            ctx.set(rand, ra)
            exp_rw = saturate(round_shift(rv, fmt.view_drop, other), fmt.width)
            exp_word = saturate(round_shift(av, fmt.frac, other), fmt.width)
            drop = fmt.update_drop
            delta = round_shift(pv, drop, mode, ra) if drop > 0 else pv << -drop
            exp_r = saturate(rv - delta, fmt.r_width)
            got = [ctx.get(s) for s in sigs]
            expected = [exp_rw[0], exp_rw[1], exp_word[0], exp_word[1], exp_r[0], exp_r[1]]
            assert got == expected, (rv, pv, av, ra)

    _run_comb(m, bench)


@pytest.mark.parametrize(("width", "taps", "seed", "n", "low"),
                         [(32, (32, 22, 2, 1), 0xACE1, 8, 12), (7, (7, 6), 1, 5, 7), (16, (16, 15, 13, 4), 9, 3, 5)])
def test_lfsr_ahead_matches_draw(width: int, taps: tuple[int, ...], seed: int, n: int, low: int) -> None:
    """The flat-XOR look-ahead gives the next n values (low bits) and the states after 0..n steps."""
    m = Module()
    state = Signal(width, init=seed)
    m.d.sync += state.eq(rounding.lfsr_step(state, taps))
    values, states = rounding.lfsr_ahead(state, taps, n, low)
    vsig = [Signal(low, name=f"v{k}") for k in range(n)]
    ssig = [Signal(width, name=f"st{k}") for k in range(n + 1)]
    m.d.comb += [a.eq(b) for a, b in zip(vsig + ssig, values + states, strict=True)]
    ref = Lfsr(width, taps, seed)

    async def bench(ctx):
        for _ in range(100):
            ahead = Lfsr(width, taps, ref.value)
            drawn = [int(x) for x in ahead.draw(n)]
            assert [ctx.get(v) for v in vsig] == [x & ((1 << low) - 1) for x in drawn]
            walk = Lfsr(width, taps, ref.value)
            expected_states = [walk.value] + [walk.step() for _ in range(n)]
            assert [ctx.get(x) for x in ssig] == expected_states
            await ctx.tick()
            ref.step()

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
