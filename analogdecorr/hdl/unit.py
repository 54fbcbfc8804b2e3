"""The decorrelation unit as an Amaranth ``wiring.Component`` with the ports of ``hdl/NUMERICS.md``.

``DecorrelationUnit(fmt, arch)`` picks an architecture (``row``: one multiplier per row, ``mac``: one
multiplier for everything) and exposes the timing the tests assert: ``latency``, ``cycles_per_sample`` and
``multipliers``.

Both architectures share the control here (``Arch``): a one-vector input buffer, the z output register with
its valid flag, a phase sequencer (phase 1 z = Rw x, phase 2 p and v, phase 3 the R update; each phase issues
one multiply per multiplier per cycle, with only the pipeline gaps the data dependencies need between phases),
the ``busy`` flag, the sticky overflow flag and the R port's valid bit. The datapaths live in ``row.py`` and
``mac.py``.
"""

from __future__ import annotations

import difflib
from types import SimpleNamespace

from amaranth.hdl import Module, Signal, Value, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..errors import FormatError
from ..fixed.format import UnitFormat

ARCHS = ("row", "mac")

# sequencer states: idle, the three phases (a multiply is issued every cycle), wait (a pipeline gap)
S_IDLE, P1, P2, P3, S_WAIT = 0, 1, 2, 3, 4


def addr_width(size: int) -> int:
    """Bits of ``r_addr``: ⌈log₂ d²⌉."""
    return max(1, (size * size - 1).bit_length())


def unit_signature(fmt: UnitFormat) -> wiring.Signature:
    """The port list of NUMERICS.md (x/z streams of d × signed(W), R load/readback, learn, busy, overflow)."""
    vec = data.ArrayLayout(signed(fmt.width), fmt.size)
    return wiring.Signature(
        {
            "x": In(stream.Signature(vec)),
            "z": Out(stream.Signature(vec)),
            "learn": In(1, init=1),
            "r_addr": In(addr_width(fmt.size)),
            "r_we": In(1),
            "r_wdata": In(signed(fmt.r_width)),
            "r_re": In(1),
            "r_rdata": Out(signed(fmt.r_width)),
            "r_rvalid": Out(1),
            "busy": Out(1),
            "overflow": Out(1),
            "clear_overflow": In(1),
        }
    )


def pipe(m: Module, src: dict[str, Value], stages: int) -> list[dict[str, Signal]]:
    """Registered copies of the tag signals ``src``: element s is the tag set s cycles after issue."""
    out: list[dict[str, Value]] = [src]
    for s in range(1, stages + 1):
        cur = {k: Signal(Value.cast(v).shape(), name=f"s{s}_{k}") for k, v in out[-1].items()}
        m.d.sync += [cur[k].eq(out[-1][k]) for k in cur]
        out.append(cur)
    return out  # type: ignore[return-value]


class Arch:
    """Shared control of the time-multiplexed architectures; subclasses set the timing and build the datapath.

    Subclass contract: ``slots`` issue cycles per phase, ``gaps`` = (phase 1→2, 2→3, 3→next 1) idle cycles,
    ``front`` = cycles from the first issue of phase 1 to the cycle z is valid, ``datapath(m, unit, ctl)``.
    """

    name = ""
    slots = 0
    gaps = (0, 0, 0)
    front = 0
    multipliers = 0

    def __init__(self, fmt: UnitFormat):
        self.fmt = fmt

    @property
    def cycles_per_sample(self) -> int:
        """Steady-state interval between x transfers with learn = 1 and valid/ready always high."""
        return 3 * self.slots + sum(self.gaps)

    @property
    def latency(self) -> int:
        """Cycles from an x transfer into an idle unit to z valid: 2 (buffer, start decision) + ``front``."""
        return 2 + self.front

    def datapath(self, m: Module, u: wiring.Component, c: SimpleNamespace) -> None:  # pragma: no cover
        raise NotImplementedError

    def build(self, m: Module, u: wiring.Component) -> None:
        """Control (input buffer, z register, sequencer, busy, overflow) plus the subclass's datapath."""
        fmt = self.fmt
        d, w = fmt.size, fmt.width
        g12, g23, g31 = self.gaps

        # ---- input buffer: one vector and its learn bit; the datapath consumes it during phase 1
        x_full = Signal()
        x_learn = Signal()
        x_buf = [Signal(signed(w), name=f"x_buf{i}") for i in range(d)]
        m.d.comb += u.x.ready.eq(~x_full)
        with m.If(u.x.valid & ~x_full):
            m.d.sync += [x_full.eq(1), x_learn.eq(u.learn)]
            m.d.sync += [x_buf[i].eq(u.x.payload[i]) for i in range(d)]

        # ---- z register: written by the datapath (z_set marks the last word), freed by the z transfer
        z = [Signal(signed(w), name=f"z{i}") for i in range(d)]
        z_valid = Signal()
        z_inflight = Signal()  # a started sample has not written its z yet
        z_set = Signal()
        m.d.comb += [u.z.payload[i].eq(z[i]) for i in range(d)]
        m.d.comb += u.z.valid.eq(z_valid)
        with m.If(u.z.valid & u.z.ready):
            m.d.sync += z_valid.eq(0)
        with m.If(z_set):
            m.d.sync += [z_valid.eq(1), z_inflight.eq(0)]

        # ---- sequencer
        ph = Signal(range(S_WAIT + 1))
        cnt = Signal(range(self.slots))
        gap = Signal(range(max(self.gaps) + 1))
        nxt = Signal(range(P3 + 1))
        learn_cur = Signal()
        issue = Signal()
        last = Signal()
        can_start = Signal()
        m.d.comb += [
            issue.eq((ph == P1) | (ph == P2) | (ph == P3)),
            last.eq(cnt == self.slots - 1),
            can_start.eq(x_full & ~z_valid & ~z_inflight),
        ]

        def start_or_idle() -> None:
            with m.If(can_start):
                m.d.sync += [ph.eq(P1), cnt.eq(0), learn_cur.eq(x_learn), z_inflight.eq(1)]
            with m.Else():
                m.d.sync += ph.eq(S_IDLE)

        def go(target: int, g: int) -> None:
            if g == 0:
                if target == P1:
                    start_or_idle()
                else:
                    m.d.sync += [ph.eq(target), cnt.eq(0)]
            else:
                m.d.sync += [ph.eq(S_WAIT), gap.eq(g - 1), nxt.eq(target)]

        with m.Switch(ph):
            with m.Case(P1, P2, P3):
                m.d.sync += cnt.eq(cnt + 1)
                with m.If(last):
                    with m.If(ph == P1):
                        m.d.sync += x_full.eq(0)
                        with m.If(learn_cur):
                            go(P2, g12)
                        with m.Else():
                            m.d.sync += ph.eq(S_IDLE)  # z credit: the next sample waits for this z
                    with m.Elif(ph == P2):
                        go(P3, g23)
                    with m.Else():
                        go(P1, g31)
            with m.Case(S_WAIT):
                with m.If(gap == 0):
                    with m.If(nxt == P1):
                        start_or_idle()
                    with m.Else():
                        m.d.sync += [ph.eq(nxt), cnt.eq(0)]
                with m.Else():
                    m.d.sync += gap.eq(gap - 1)
            with m.Default():
                start_or_idle()

        busy = Signal()
        c = SimpleNamespace(
            ph=ph, cnt=cnt, issue=issue, last=last, first=cnt == 0, learn_cur=learn_cur,
            x_buf=x_buf, z=z, z_set=z_set, busy=busy, port_re=u.r_re & ~busy, port_we=u.r_we & ~busy,
            flags=[], stage_valid=[],
        )
        self.datapath(m, u, c)

        m.d.comb += busy.eq(x_full | (ph != S_IDLE) | _any(c.stage_valid))
        m.d.comb += u.busy.eq(busy)
        m.d.sync += u.r_rvalid.eq(c.port_re)
        m.d.sync += u.overflow.eq((u.overflow & ~u.clear_overflow) | _any(c.flags))


def _any(values: list[Value]) -> Value:
    out: Value = Value.cast(0)
    for v in values:
        out = out | v
    return out


class DecorrelationUnit(wiring.Component):
    """The fixed-point decorrelation unit of NUMERICS.md; ``arch`` is ``"row"`` (M = d) or ``"mac"`` (M = 1).

    Timing (learn = 1; measured in simulation by tests/test_hdl_sim.py):

    - row: cycles_per_sample = 3d + 3 + max(0, 5 − d) + max(0, 4 − d), latency = d + 6, M = d;
    - mac: cycles_per_sample = 3d² + max(0, 4 − d) + max(0, d + 3 − d²) + max(0, 5 − 2d),
      latency = d² + 6, M = 1.

    A sample with learn = 0 runs phase 1 only, and the next sample starts once its z has been taken.
    ``delayed`` formats keep a second, W-bit copy of Rw (the view before the latest update) for phase 1.
    R sits in memories whose power-on contents are the identity; ``rst`` resets the control, the LFSR and the
    overflow flag but not the memory contents (load R through the R port after a reset that follows use).
    """

    def __init__(self, fmt: UnitFormat, arch: str = "row"):
        # units are often built only to read their timing properties (or rejected): no "never used" warning
        self._MustUse__silence = True
        if not isinstance(fmt, UnitFormat):
            raise FormatError(f"DecorrelationUnit needs a fixed.format.UnitFormat, got {type(fmt).__name__}")
        if arch not in ARCHS:
            close = difflib.get_close_matches(str(arch), ARCHS, n=1, cutoff=0.0)
            raise FormatError(
                f"unknown architecture {arch!r}: did you mean {close[0]!r}? "
                f"(choose one of {', '.join(ARCHS)})"
            )
        from .mac import MacArch
        from .row import RowArch

        self.fmt = fmt
        self.arch = arch
        self._impl: Arch = RowArch(fmt) if arch == "row" else MacArch(fmt)
        super().__init__(unit_signature(fmt))

    @property
    def latency(self) -> int:
        """Cycles from the x transfer to z valid (idle unit, no stalls)."""
        return self._impl.latency

    @property
    def cycles_per_sample(self) -> int:
        """Steady-state cycles between x transfers (learn = 1, valid/ready always high)."""
        return self._impl.cycles_per_sample

    @property
    def multipliers(self) -> int:
        """Hardware W×W multipliers M."""
        return self._impl.multipliers

    @property
    def utilisation(self) -> float:
        """3d² / (M · cycles_per_sample): the fraction of multiplier cycles doing useful multiplies."""
        return self.fmt.multipliers_per_sample / (self.multipliers * self.cycles_per_sample)

    def elaborate(self, platform: object) -> Module:
        m = Module()
        self._impl.build(m, self)
        return m
