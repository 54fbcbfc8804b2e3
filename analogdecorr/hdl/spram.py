"""A single-port scratch memory: iCE40 UltraPlus SPRAM (SB_SPRAM256KA) on that device, ``lib.memory`` elsewhere.

The unit's p scratch is written only in pass 2 and read only at pass 3's issue, never both in one cycle, so one
address per cycle suffices. On an iCE40 UltraPlus (the iCEBreaker's UP5K: 4 blocks of 16384 × 16) it then fits
the SPRAMs instead of the few block RAMs, which hold R. Reads are synchronous (data the cycle after the address,
held while ``we`` is high in the Amaranth model; undefined in the SPRAM during a write, which nothing uses).
"""

from __future__ import annotations

from amaranth.hdl import ClockSignal, Const, Elaboratable, Instance, Module, Signal, signed
from amaranth.lib.memory import Memory

from .plan import SPRAM_DEPTH, SPRAM_WIDTH, ceil_log2


def is_ultraplus(platform: object) -> bool:
    """The platform is an iCE40 UltraPlus (UP3K/UP5K: SB_SPRAM256KA available)."""
    return str(getattr(platform, "device", "")).upper().startswith("ICE40UP")


class SinglePortRam(Elaboratable):
    """``depth`` × signed ``width`` words; ``addr``/``we``/``wdata`` in, ``rdata`` one cycle after a read.

    ``spram``: True instantiates SB_SPRAM256KA blocks (⌈width / 16⌉ side by side), False a ``lib.memory.Memory``,
    None picks SPRAM when elaborated for an iCE40 UltraPlus platform.
    """

    def __init__(self, depth: int, width: int, *, spram: bool | None = None):
        self.depth, self.width, self.spram = depth, width, spram
        self.addr = Signal(range(max(2, depth)))
        self.we = Signal()
        self.wdata = Signal(signed(width))
        self.rdata = Signal(signed(width))

    def uses_spram(self, platform: object) -> bool:
        if self.spram is None:
            return is_ultraplus(platform) and self.depth <= SPRAM_DEPTH
        return self.spram

    def elaborate(self, platform: object) -> Module:
        m = Module()
        if not self.uses_spram(platform):
            mem = Memory(shape=signed(self.width), depth=self.depth, init=[])
            m.submodules.mem = mem
            rp, wp = mem.read_port(), mem.write_port()
            m.d.comb += [rp.addr.eq(self.addr), rp.en.eq(~self.we), wp.addr.eq(self.addr), wp.en.eq(self.we),
                         wp.data.eq(self.wdata), self.rdata.eq(rp.data)]
            return m
        if self.depth > SPRAM_DEPTH:
            raise ValueError(f"SPRAM scratch of depth {self.depth} > {SPRAM_DEPTH}")
        address = Signal(14)
        m.d.comb += address.eq(self.addr)
        assert ceil_log2(SPRAM_DEPTH) == 14
        blocks = -(-self.width // SPRAM_WIDTH)
        wide = Signal(blocks * SPRAM_WIDTH)
        out = Signal(blocks * SPRAM_WIDTH)
        m.d.comb += [wide.eq(self.wdata.as_unsigned()), self.rdata.eq(out[: self.width])]
        for b in range(blocks):
            sl = slice(b * SPRAM_WIDTH, (b + 1) * SPRAM_WIDTH)
            m.submodules[f"spram{b}"] = Instance(
                "SB_SPRAM256KA",
                i_ADDRESS=address, i_DATAIN=wide[sl], i_MASKWREN=Const(0b1111, 4), i_WREN=self.we,
                i_CHIPSELECT=Const(1, 1), i_CLOCK=ClockSignal(), i_STANDBY=Const(0, 1), i_SLEEP=Const(0, 1),
                i_POWEROFF=Const(1, 1), o_DATAOUT=out[sl],
            )
        return m
