"""The R port's index decoder: host index a = i·d + j → (lane k, bank address g·d + j), pipelined.

Row i = g·L + k sits in lane k's R bank at address g·d + j. Dividing by the constants L·d and d is done as a
restoring division, a compare and a subtract of the index width per quotient bit, so no divider or constant
multiplier is built; two quotient bits per stage keep the copies of the command (we, re, wdata) that travel
along few. ``out_valid`` marks a command whose index is in range (a < d²).
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .plan import ceil_log2

#: Quotient bits (compare-subtracts of the index width) per pipeline stage.
BITS_PER_STAGE = 2


class RIndexDecoder(wiring.Component):
    """a (with we/re/wdata) in; ``stages`` cycles later lane, bank address and the command out."""

    def __init__(self, size: int, lanes: int, groups: int, r_width: int, addr_width: int):
        self._MustUse__silence = True  # the unit builds one early to read ``stages``
        self.size, self.lanes, self.groups = size, lanes, groups
        self._qg = ceil_log2(groups)  # quotient bits of a // (L·d)
        self._qk = ceil_log2(lanes)  # quotient bits of (a mod L·d) // d
        bank_depth = groups * size
        super().__init__({
            "addr": In(addr_width), "we": In(1), "re": In(1), "wdata": In(signed(r_width)),
            "out_valid": Out(1), "out_we": Out(1), "out_re": Out(1), "out_wdata": Out(signed(r_width)),
            "out_lane": Out(range(max(2, lanes))), "out_bank": Out(range(max(2, bank_depth))),
            "pending": Out(1),
        })

    @property
    def stages(self) -> int:
        """Cycles from a command to its decoded form on the ``out_*`` signals."""
        return 1 + -(-(self._qg + self._qk) // BITS_PER_STAGE) + 1

    def elaborate(self, platform: object) -> Module:
        m = Module()
        d, lanes = self.size, self.lanes
        aw = len(self.addr)
        bank_w = len(self.out_bank)
        lane_w = len(self.out_lane)

        def stage(name: str) -> dict[str, Signal]:
            return {
                "v": Signal(name=f"{name}_v"), "we": Signal(name=f"{name}_we"), "re": Signal(name=f"{name}_re"),
                "wdata": Signal(signed(len(self.wdata)), name=f"{name}_wdata"),
                "rem": Signal(aw, name=f"{name}_rem"), "bank": Signal(bank_w, name=f"{name}_bank"),
                "lane": Signal(lane_w, name=f"{name}_lane"),
            }

        def carry(dst: dict[str, Signal], src: dict[str, Signal], skip: tuple[str, ...]) -> None:
            m.d.sync += [dst[k].eq(src[k]) for k in dst if k not in skip]

        s0 = stage("ri0")
        live = (self.we | self.re) & (self.addr < d * d)
        m.d.sync += [s0["v"].eq(live), s0["we"].eq(self.we), s0["re"].eq(self.re), s0["wdata"].eq(self.wdata),
                     s0["rem"].eq(self.addr), s0["bank"].eq(0), s0["lane"].eq(0)]
        stages = [s0]
        # quotient bits, most significant first: a // (L·d) adds d·2^b to the bank address per bit b of g;
        # (a mod L·d) // d is the lane. BITS_PER_STAGE compare-subtracts run per registered stage.
        steps = [("g", b) for b in reversed(range(self._qg))] + [("k", b) for b in reversed(range(self._qk))]
        for q in range(0, len(steps), BITS_PER_STAGE):
            cur, nxt = stages[-1], stage(f"ri{q}")
            rem, bank, lane = cur["rem"], cur["bank"], cur["lane"]
            for kind, b in steps[q : q + BITS_PER_STAGE]:
                step = ((lanes * d) if kind == "g" else d) << b
                take = rem >= step
                rem = Mux(take, rem - step, rem)[:aw]
                if kind == "g":
                    bank = Mux(take, bank + (d << b), bank)[:bank_w]
                else:
                    lane = Mux(take, lane | (1 << b), lane)[:lane_w]
            carry(nxt, cur, ("rem", "bank", "lane"))
            m.d.sync += [nxt["rem"].eq(rem), nxt["bank"].eq(bank), nxt["lane"].eq(lane)]
            stages.append(nxt)
        # what remains is j: bank address g·d + j
        cur, last = stages[-1], stage("rij")
        carry(last, cur, ("bank",))
        m.d.sync += last["bank"].eq(cur["bank"] + cur["rem"])
        stages.append(last)

        m.d.comb += [
            self.out_valid.eq(last["v"]), self.out_we.eq(last["we"]), self.out_re.eq(last["re"]),
            self.out_wdata.eq(last["wdata"]), self.out_lane.eq(last["lane"]), self.out_bank.eq(last["bank"]),
        ]
        pending = 0
        for s in stages:
            pending = pending | s["v"]
        m.d.comb += self.pending.eq(pending)
        return m
