"""The R port's index decoder against Python divmod: every index of d ∈ {5, 37} with several lane counts."""

from __future__ import annotations

import pytest
from amaranth.sim import Simulator

from analogdecorr.hdl.ports import r_addr_width
from analogdecorr.hdl.raddr import RIndexDecoder


@pytest.mark.parametrize(("d", "lanes"), [(5, 1), (5, 2), (5, 5), (37, 3), (37, 8)])
def test_every_index_decodes(d: int, lanes: int) -> None:
    """a = i·d + j → lane i mod L, bank address (i // L)·d + j, after ``stages`` cycles; a ≥ d² is dropped."""
    groups = -(-d // lanes)
    dec = RIndexDecoder(d, lanes, groups, 20, r_addr_width(d))
    addrs = list(range(d * d)) + list(range(d * d, min(1 << r_addr_width(d), d * d + 7)))
    seen: list[tuple[int, int, int, int]] = []

    async def bench(ctx):
        for cyc in range(len(addrs) + dec.stages + 2):
            if cyc < len(addrs):
                ctx.set(dec.addr, addrs[cyc])
                ctx.set(dec.we, cyc % 2)
                ctx.set(dec.re, 1 - cyc % 2)
                ctx.set(dec.wdata, cyc - 500)
            else:
                ctx.set(dec.we, 0)
                ctx.set(dec.re, 0)
            if ctx.get(dec.out_valid):
                assert ctx.get(dec.out_we) + ctx.get(dec.out_re) == 1
                seen.append((cyc, ctx.get(dec.out_lane), ctx.get(dec.out_bank), ctx.get(dec.out_wdata)))
            await ctx.tick()

    sim = Simulator(dec)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    expected = [(a + dec.stages, (a // d) % lanes, (a // d // lanes) * d + a % d, a - 500) for a in range(d * d)]
    assert seen == expected
