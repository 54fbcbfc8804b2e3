"""Run a board top level (``board.LinkTop``) in the Amaranth simulator through its serial line.

A software UART drives ``rx`` bit by bit with frames made by ``link.py`` (the host driver's own encoder) and
decodes ``tx`` bit by bit into frames with ``link.FrameDecoder``: the whole top level, UART included, is
exercised as a board would be. Like the host driver, the sender keeps at most ``window`` requests in flight
(each request gets one reply), which the board's RX FIFO is sized for.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from amaranth.sim import Simulator

from ..errors import DataError
from .board import LinkTop
from .link import Frame, FrameDecoder


@dataclass
class LinkRun:
    """Replies received, simulated cycles, wall seconds, bytes the decoder skipped (desynchronisation)."""

    replies: list[Frame]
    cycles: int
    seconds: float
    skipped: int
    rx_cycles: list[int] = field(default_factory=list)  # cycle at which each reply's last byte arrived


def simulate_link(top: LinkTop, requests: list[bytes], *, window: int = 2, max_cycles: int = 10_000_000,
                  idle_cycles: int = 0, vcd: str | None = None) -> LinkRun:
    """Send ``requests`` (one encoded frame each) over ``top.rx``; collect one reply per request from ``top.tx``.

    ``idle_cycles`` of idle line come first (e.g. for the core's power-on init sweep to run).
    DataError if the replies do not all arrive within ``max_cycles``.
    """
    div = top.divisor
    sim = Simulator(top)
    sim.add_clock(1e-8)
    dec = FrameDecoder()
    replies: list[Frame] = []
    rx_cycles: list[int] = []
    state = {"cycle": 0, "done": False}

    async def monitor(ctx) -> None:  # decodes the tx line, one byte per start bit
        while True:
            while ctx.get(top.tx):
                await ctx.tick()
                state["cycle"] += 1
            await ctx.tick().repeat(div // 2)  # middle of the start bit
            byte = 0
            for bit in range(8):
                await ctx.tick().repeat(div)
                byte |= ctx.get(top.tx) << bit
            await ctx.tick().repeat(div)  # middle of the stop bit
            state["cycle"] += div // 2 + 9 * div
            if not ctx.get(top.tx):
                raise DataError(f"tx stop bit low after byte {byte:#04x} at cycle {state['cycle']}")
            for f in dec.feed(bytes([byte])):
                replies.append(f)
                rx_cycles.append(state["cycle"])

    async def driver(ctx) -> None:
        ctx.set(top.rx, 1)
        if idle_cycles:
            await ctx.tick().repeat(idle_cycles)
        for i, frame in enumerate(requests):
            while i - len(replies) >= window:
                await ctx.tick().repeat(div)
                if state["cycle"] > max_cycles:
                    raise DataError(f"request {i}: {len(replies)} replies after {state['cycle']} cycles "
                                    f"(window {window}); the board stopped answering")
            for byte in frame:
                for level in [0, *((byte >> k) & 1 for k in range(8)), 1]:
                    ctx.set(top.rx, level)
                    await ctx.tick().repeat(div)
        while len(replies) < len(requests):
            await ctx.tick().repeat(div)
            if state["cycle"] > max_cycles:
                raise DataError(f"{len(replies)} of {len(requests)} replies after {state['cycle']} cycles; "
                                "the board stopped answering")

    sim.add_testbench(monitor, background=True)
    sim.add_testbench(driver)
    t0 = time.perf_counter()
    if vcd:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()
    return LinkRun(replies, state["cycle"], time.perf_counter() - t0, dec.skipped, rx_cycles)
