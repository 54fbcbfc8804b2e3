"""The Amaranth rounding, saturation and LFSR blocks against the integer helpers of fixed.format (the spec).

Exhaustive over small widths: every signed 7-bit value through rnd(v, k) for k = 0..8 in every mode, every
signed 9-bit value through saturation to 6 bits; the LFSR step for hundreds of steps and its look-ahead form.
"""

from __future__ import annotations

import random

import pytest
from amaranth.hdl import Module, Signal, signed
from amaranth.sim import Simulator

from analogdecorr.fixed.format import ROUNDING_MODES, Lfsr, round_shift, saturate
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
    """A register stepped by lfsr_step follows fixed.format.Lfsr."""
    m = Module()
    state = Signal(width, init=seed)
    m.d.sync += state.eq(rounding.lfsr_step(state, taps))
    ref = Lfsr(width, taps, seed)

    async def bench(ctx):
        for _ in range(300):
            assert ctx.get(state) == ref.value
            await ctx.tick()
            ref.step()

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


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
