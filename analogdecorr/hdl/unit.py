"""The memory-backed decorrelation unit: ``DecorrelationUnit(fmt, lanes=M)`` (plan/UNIT_V2.md, hdl/NUMERICS.md).

M multipliers ("lanes"), L = min(M, d) of them used; lane k owns rows i = g·L + k (g = 0..G−1, G = ⌈d / L⌉) and
keeps them in its own R bank (``lib.memory.Memory``, address g·d + j, one read and one write port: block RAM).
Per sample three passes of N = G·d issue cycles each, one multiply per lane per cycle:

1. z: for g, for j: lane k accumulates Rw[gL+k, j]·xc[j] (xc[j] broadcast) → z[gL+k] at the end of a row;
2. p, v: for j, for g: P = z[gL+k]·Rw[gL+k, j]; offdiag writes p = sat(rnd(P)) to the lane's p scratch; an adder
   tree sums the lanes' P, accumulated over g → v[j];
3. update: for j, for g: U = z·(v[j] − p) (offdiag) or z·v[j] − (Rw << F) (whiten); R ← sat(R − rnd(U)),
   read-modify-write; stochastic rounding gives lanes k = 0..L−1 consecutive LFSR values (j outer, i inner).

Samples with learn = 0 run pass 1 only. Inter-pass idle cycles are the read-after-write minimum (``plan.py``).
Rounding, saturation (sign-bit checks) and the R write are pipelined one adder per stage; see ``plan.py`` for
the stage numbers. offdiag's pass 3 reads R at stage 5 (when the write-back needs it) rather than delaying it
per lane; stochastic values are flat XORs of the LFSR state, registered one stage before the rounding.
offdiag's p scratch is single-ported (written in pass 2, read in pass 3, never in one cycle): SB_SPRAM256KA blocks
when elaborated for an iCE40 UltraPlus and ``plan.p_spram`` (``spram.py``), a ``lib.memory.Memory`` elsewhere.

Streams: x elements are centred on arrival (running mean mu, ``centre_shift`` m ≥ 1) into a two-sample buffer,
so the next sample's elements are taken while the current sample's passes run. A row group's L z words
are serialised into a two-sample output buffer in element order and drain while later groups and passes run;
a new sample starts once its input is complete and the sample before the previous one has drained.
Reset (``rst`` or ``ctl.reset``) runs an init sweep writing R = I and mu = 0 (``init_cycles``, busy = 1); LFSR,
flags and counters return to their reset values.
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, ResetInserter, Signal, Value, signed
from amaranth.lib import wiring
from amaranth.lib.memory import Memory

from ..errors import FormatError
from ..fixed.format import UnitFormat
from .plan import ST_P_WRITE, ST_PRODUCT, ST_R_WRITE, ST_Z_WRITE, UnitPlan, ceil_log2
from .ports import r_addr_width, unit_signature
from .raddr import RIndexDecoder
from .rounding import lfsr_ahead, round_shift, saturate, uses_lfsr
from .spram import SinglePortRam

UNIT_RULES = ("offdiag", "whiten")
ST_INIT, ST_IDLE, ST_RUN, ST_WAIT = 0, 1, 2, 3
#: Stages of the centring pipeline on the x stream (mu read, rounding, subtraction/saturation).
CENTRE_STAGES = 3


def _any(values: list[Value]) -> Value:
    out: Value = Const(0, 1)
    for v in values:
        out = out | v
    return out


def _pipe(m: Module, src: dict[str, Value], stages: int) -> list[dict[str, Signal]]:
    """Registered copies of the tag signals ``src``: element s holds the tags s cycles after issue."""
    out: list[dict[str, Value]] = [src]
    for s in range(1, stages + 1):
        cur = {k: Signal(Value.cast(v).shape(), name=f"s{s}_{k}") for k, v in out[-1].items()}
        m.d.sync += [cur[k].eq(out[-1][k]) for k in cur]
        out.append(cur)
    return out  # type: ignore[return-value]


def _delay(m: Module, v: Value, n: int, name: str) -> Value:
    """``v`` registered ``n`` times."""
    for t in range(n):
        r = Signal(Value.cast(v).shape(), name=f"{name}_d{t + 1}")
        m.d.sync += r.eq(v)
        v = r
    return v


def _reg(m: Module, v: Value, name: str) -> Signal:
    r = Signal(Value.cast(v).shape(), name=name)
    m.d.sync += r.eq(v)
    return r


class DecorrelationUnit(wiring.Component):
    """The fixed-point decorrelation unit with ``lanes`` = M multipliers (any M ≥ 1; L = min(M, d) are used).

    Ports: ``ports.py``. Properties (asserted by tests/test_hdl_sim.py in simulation): ``lanes`` (M),
    ``multipliers`` (L), ``cycles_per_sample`` (learning samples, streams never stalling), ``latency`` (last x
    element of a sample into an idle unit → its z element 0 valid), ``init_cycles``, ``r_read_latency``,
    ``storage_bits``, ``memory_plan``.
    """

    def __init__(self, fmt: UnitFormat, lanes: int = 1):
        self._MustUse__silence = True  # units are often built only to read their properties
        if not isinstance(fmt, UnitFormat):
            raise FormatError(f"DecorrelationUnit needs a fixed.format.UnitFormat, got {type(fmt).__name__}")
        rule = getattr(fmt, "rule", "offdiag")
        if rule not in UNIT_RULES:
            raise FormatError(f"rule={rule!r} is not on the unit's datapath; use one of {', '.join(UNIT_RULES)}")
        self.fmt = fmt
        self.plan = UnitPlan(fmt, lanes)
        self._decoder = RIndexDecoder(fmt.size, self.plan.lanes, self.plan.groups, fmt.r_width,
                                      r_addr_width(fmt.size))
        super().__init__(unit_signature(fmt))

    # ------------------------------------------------------------------ properties
    @property
    def lanes(self) -> int:
        """Multipliers requested (M)."""
        return self.plan.lanes_requested

    @property
    def multipliers(self) -> int:
        """Multipliers built and used: L = min(M, d)."""
        return self.plan.lanes

    @property
    def cycles_per_sample(self) -> int:
        """Steady-state cycles between learning samples (x always valid, z always ready): 3·G·d + gaps."""
        return self.plan.cycles_per_sample

    @property
    def latency(self) -> int:
        """Cycles from the transfer of a sample's last x element into an idle unit to z element 0 valid."""
        return self.fmt.size + 10 + (CENTRE_STAGES if self.plan.centre_shift else 0)

    @property
    def init_cycles(self) -> int:
        """Cycles of the reset sweep (R = I, mu = 0) after rst or ctl.reset; busy = 1 meanwhile."""
        return self.plan.init_cycles

    @property
    def r_read_latency(self) -> int:
        """Cycles from an R read command (ctl.r.re while busy = 0) to ctl.r.rvalid."""
        return self._decoder.stages + 2

    @property
    def storage_bits(self) -> int:
        return self.plan.storage_bits

    @property
    def memory_plan(self) -> list[dict[str, object]]:
        return [mem.to_dict() for mem in self.plan.memory_plan]

    @property
    def utilisation(self) -> float:
        """3d² / (L · cycles_per_sample): the fraction of multiplier cycles doing useful multiplies."""
        return self.fmt.multipliers_per_sample / (self.multipliers * self.cycles_per_sample)

    # ------------------------------------------------------------------ hardware
    def elaborate(self, platform: object) -> Module:
        m = Module()
        self._build(m)
        # ctl.reset is a synchronous reset of everything; the state machine's reset state runs the init sweep
        return ResetInserter(self.ctl.reset)(m)

    def _build(self, m: Module) -> None:  # noqa: C901 (one datapath, read top to bottom)
        fmt, plan = self.fmt, self.plan
        d, lanes, groups, slots = plan.size, plan.lanes, plan.groups, plan.slots
        w, wr, frac = fmt.width, fmt.r_width, fmt.frac
        offdiag = plan.rule == "offdiag"
        cm = plan.centre_shift
        nlast = plan.last_group_lanes
        depth = plan.depth
        gw, jw = ceil_log2(groups), ceil_log2(d)
        view_mode = fmt.view_rounding
        x, z, ctl = self.x, self.z, self.ctl
        flags: list[Value] = []

        # ---------------------------------------------------------------- memories
        r_mem = [Memory(shape=signed(wr), depth=slots, init=[]) for _ in range(lanes)]
        z_mem = [Memory(shape=signed(w), depth=max(2, 1 << gw), init=[]) for _ in range(lanes)]
        zo_mem = Memory(shape=signed(w), depth=2 << jw, init=[])
        # p: single-ported (written in pass 2, read in pass 3): SPRAM on an iCE40 UltraPlus when plan.p_spram
        p_mem = [SinglePortRam(slots, w, spram=None if plan.p_spram else False) for _ in range(lanes)] \
            if offdiag else []
        xc_mem = Memory(shape=signed(w), depth=2 << jw, init=[])
        v_mem = Memory(shape=signed(w), depth=d, init=[])
        for k in range(lanes):
            m.submodules[f"r_bank{k}"] = r_mem[k]
            m.submodules[f"z_bank{k}"] = z_mem[k]
            if offdiag:
                m.submodules[f"p_bank{k}"] = p_mem[k]
        m.submodules.xc_buf = xc_mem
        m.submodules.zo_buf = zo_mem
        m.submodules.v_buf = v_mem
        r_rp = [mem.read_port() for mem in r_mem]
        r_wp = [mem.write_port() for mem in r_mem]
        z_rp = [mem.read_port() for mem in z_mem]  # passes 2 and 3 read z[g·L + k]
        z_wp = [mem.write_port() for mem in z_mem]
        zo_rp, zo_wp = zo_mem.read_port(), zo_mem.write_port()  # z in element order for the output stream
        xc_rp, xc_wp = xc_mem.read_port(), xc_mem.write_port()
        v_rp, v_wp = v_mem.read_port(), v_mem.write_port()
        if cm:
            mu_mem = Memory(shape=signed(w + cm), depth=d, init=[])
            m.submodules.mu = mu_mem
            mu_rp, mu_wp = mu_mem.read_port(), mu_mem.write_port()

        m.submodules.r_index = dec = self._decoder

        # ---------------------------------------------------------------- sequencer state
        state = Signal(range(4), init=ST_INIT)
        ph = Signal(2)
        g = Signal(range(groups))
        j = Signal(range(d))
        raddr = Signal(range(slots))
        hold = Signal(range(max(plan.gap12, plan.gap23, plan.gap31, 1) + 1))
        target = Signal(2)
        cur_xb, cur_zb, cur_learn = Signal(), Signal(), Signal()
        rb_x, wb_z = Signal(), Signal()  # banks the next sample will read (xc) and write (z)
        xfull = [Signal(name=f"xfull{b}") for b in range(2)]
        xlearn = [Signal(name=f"xlearn{b}") for b in range(2)]
        zbusy = [Signal(name=f"zbusy{b}") for b in range(2)]
        zcount = [Signal(range(d + 1), name=f"zcount{b}") for b in range(2)]  # z words ready to drain
        init = state == ST_INIT
        issue = state == ST_RUN
        pass_end = (g == groups - 1) & (j == d - 1)
        inner_last = Mux(ph == 1, j == d - 1, g == groups - 1)
        inner_first = Mux(ph == 1, j == 0, g == 0)
        start_ok = Mux(rb_x, xfull[1], xfull[0]) & ~Mux(wb_z, zbusy[1], zbusy[0]) & ~dec.pending

        def start_sample() -> None:
            m.d.sync += [state.eq(ST_RUN), ph.eq(1), cur_xb.eq(rb_x), rb_x.eq(~rb_x), cur_zb.eq(wb_z),
                         wb_z.eq(~wb_z), cur_learn.eq(Mux(rb_x, xlearn[1], xlearn[0]))]
            with m.If(wb_z):
                m.d.sync += zbusy[1].eq(1)
            with m.Else():
                m.d.sync += zbusy[0].eq(1)

        def next_sample(gap: int) -> None:
            if gap:
                m.d.sync += [state.eq(ST_WAIT), hold.eq(gap - 1), target.eq(1)]
            else:
                with m.If(start_ok):
                    start_sample()
                with m.Else():
                    m.d.sync += state.eq(ST_IDLE)

        def next_pass(nxt: int, gap: int) -> None:
            if gap:
                m.d.sync += [state.eq(ST_WAIT), hold.eq(gap - 1), target.eq(nxt)]
            else:
                m.d.sync += ph.eq(nxt)

        # init sweep counters
        ia = Signal(range(slots))
        ig_row = Signal(range(groups * lanes + 1))  # g·L of the row group being initialised
        ij = Signal(range(d))

        with m.Switch(state):
            with m.Case(ST_INIT):
                m.d.sync += ia.eq(ia + 1)
                with m.If(ij == d - 1):
                    m.d.sync += [ij.eq(0), ig_row.eq(ig_row + lanes)]
                with m.Else():
                    m.d.sync += ij.eq(ij + 1)
                with m.If(ia == slots - 1):
                    m.d.sync += state.eq(ST_IDLE)
            with m.Case(ST_IDLE):
                with m.If(start_ok):
                    start_sample()
            with m.Case(ST_RUN):
                with m.If(pass_end):
                    m.d.sync += [g.eq(0), j.eq(0), raddr.eq(0)]
                with m.Elif(ph == 1):
                    m.d.sync += raddr.eq(raddr + 1)
                    with m.If(j == d - 1):
                        m.d.sync += [j.eq(0), g.eq(g + 1)]
                    with m.Else():
                        m.d.sync += j.eq(j + 1)
                with m.Else():
                    with m.If(g == groups - 1):
                        m.d.sync += [g.eq(0), j.eq(j + 1), raddr.eq(j + 1)]
                    with m.Else():
                        m.d.sync += [g.eq(g + 1), raddr.eq(raddr + d)]
                with m.If(pass_end):
                    with m.Switch(ph):
                        with m.Case(1):
                            with m.If(cur_xb):
                                m.d.sync += xfull[1].eq(0)
                            with m.Else():
                                m.d.sync += xfull[0].eq(0)
                            with m.If(cur_learn):
                                next_pass(2, plan.gap12)
                            with m.Else():
                                next_sample(0)
                        with m.Case(2):
                            next_pass(3, plan.gap23)
                        with m.Default():
                            next_sample(plan.gap31)
            with m.Case(ST_WAIT):
                with m.If(hold == 0):
                    with m.If(target == 1):
                        with m.If(start_ok):
                            start_sample()
                        with m.Else():
                            m.d.sync += state.eq(ST_IDLE)
                    with m.Else():
                        m.d.sync += [state.eq(ST_RUN), ph.eq(target)]
                with m.Else():
                    m.d.sync += hold.eq(hold - 1)

        # ---------------------------------------------------------------- issue and tag pipeline
        t0 = {"v": issue, "ph": ph, "g": g, "j": j, "a": raddr, "zb": cur_zb, "first": inner_first,
              "last": inner_last, "end": pass_end, "learn": cur_learn, "glast": g == groups - 1}
        s = _pipe(m, t0, depth)
        c_valid = [s[k]["v"] for k in range(1, depth + 1)]

        def active(st: dict[str, Signal], k: int) -> Value:
            """Lane k holds a real row in this slot (rows ≥ d of the last group are idle)."""
            if k < nlast:
                return Const(1, 1)
            return ~st["glast"]

        def at(st: dict[str, Signal], p: int) -> Value:
            return st["v"] & (st["ph"] == p)

        m.d.comb += [xc_rp.addr.eq(Cat(j, cur_xb)), v_rp.addr.eq(j)]
        xc2 = _delay(m, xc_rp.data, 1, "xc")
        v_d2 = _delay(m, v_rp.data, 1, "vj")

        # ---------------------------------------------------------------- host R port (through the decoder)
        busy = Signal()
        m.d.comb += [dec.addr.eq(ctl.r.addr), dec.we.eq(ctl.r.we & ~busy), dec.re.eq(ctl.r.re & ~busy),
                     dec.wdata.eq(ctl.r.wdata)]
        host_rd_lane = _reg(m, dec.out_lane, "host_rd_lane")
        host_rd = _reg(m, dec.out_valid & dec.out_re, "host_rd")

        # ---------------------------------------------------------------- LFSR (stochastic update rounding)
        rands: list[Value | None] = [None] * lanes
        s4, s5 = s[ST_PRODUCT], s[ST_P_WRITE]
        if uses_lfsr(fmt):
            # values for the slot at stage 4 are drawn (flat XORs of the state) and registered for stage 5
            lfsr = Signal(fmt.lfsr_width, init=fmt.lfsr_seed)
            values, states = lfsr_ahead(lfsr, fmt.lfsr_taps, lanes, fmt.update_drop)
            rands = [_reg(m, values[k], f"rand{k}") for k in range(lanes)]
            with m.If(at(s4, 3)):  # step by the active lanes: L, or the last group's count
                m.d.sync += lfsr.eq(Mux(s4["glast"], states[nlast], states[lanes]))

        # ---------------------------------------------------------------- lanes
        tree_in: list[Value] = []
        z_stage: list[Value] = []
        r_rdata = []
        for k in range(lanes):
            s2, s4, s6, s7 = s[2], s[4], s[ST_Z_WRITE], s[ST_R_WRITE]
            # stage 0: addresses (the host uses the R read port only while nothing issues)
            # pass 3 reads R late (plan.st_r_late_read), close to where it is needed
            late_st = s[plan.st_r_late_read]
            m.d.comb += r_rp[k].addr.eq(Mux(at(late_st, 3), late_st["a"], Mux(issue, raddr, dec.out_bank)))
            m.d.comb += z_rp[k].addr.eq(g)
            r_rdata.append(r_rp[k].data)
            # stage 1: memory data; round R to its view, v − p
            rv2 = _reg(m, round_shift(r_rp[k].data, fmt.view_drop, view_mode), f"rv{k}")
            # R before the update, wanted at stage 6 (the subtraction)
            r_old = _delay(m, r_rp[k].data, 5 - plan.st_r_late_read, f"r_old{k}")
            z2 = _reg(m, z_rp[k].data, f"zk{k}")
            e_raw2 = _reg(m, v_rp.data - p_mem[k].rdata, f"e_raw{k}") if offdiag else None
            # stage 2: saturate; pick the multiplier operands
            rw, rw_ovf = saturate(rv2, w)
            flags.append(s2["v"] & active(s2, k) & rw_ovf & (s2["ph"] != 3))  # pass 3 views the same R
            if offdiag:
                e, e_ovf = saturate(e_raw2, w)
                flags.append(at(s2, 3) & active(s2, k) & e_ovf)
                a_p3 = e
            else:
                a_p3 = v_d2
            opa = _reg(m, Mux(s2["ph"] == 3, a_p3, rw), f"opa{k}")
            opb = _reg(m, Mux(s2["ph"] == 1, xc2, z2), f"opb{k}")
            # stage 3: the lane's one multiplier
            prod = _reg(m, opa * opb, f"prod{k}")
            # stage 4: accumulate z's row sum; round p; form U
            acc = Signal(signed(fmt.acc_bits), name=f"acc{k}")
            with m.If(at(s4, 1)):
                m.d.sync += acc.eq(Mux(s4["first"], 0, acc) + prod)
            tree_in.append(Mux(at(s4, 2) & active(s4, k), prod, 0))
            if offdiag:
                pr5 = _reg(m, round_shift(prod, frac, view_mode), f"pr{k}")
                u5 = _reg(m, prod, f"u{k}")
            else:
                # rv2 holds the rounding of the previous cycle's read: for a pass-3 slot at stage 4 that is its
                # own late read (stage 2 → data at 3), so rw here is this slot's Rw
                u5 = _reg(m, prod - (rw << frac), f"u{k}")
            # stage 5: p write; z rounding; update rounding (LFSR value of this lane)
            if offdiag:
                p_val, p_ovf = saturate(pr5, w)
                p_we = at(s5, 2) & active(s5, k)
                # one address: the stage-5 write, else pass 3's issue read (plan.gap23 keeps them apart)
                m.d.comb += [p_mem[k].we.eq(p_we), p_mem[k].addr.eq(Mux(p_we, s5["a"], raddr)),
                             p_mem[k].wdata.eq(p_val)]
                flags.append(p_we & p_ovf)
            zr6 = _reg(m, round_shift(acc, frac, view_mode), f"zr{k}")
            drop = fmt.update_drop
            if drop > 0:
                delta = round_shift(u5, drop, fmt.rounding, rands[k])
            elif drop == 0:
                delta = u5
            else:
                delta = u5 << -drop
            delta6 = _reg(m, delta, f"delta{k}")
            # stage 6: z write; R − Δ
            z_val, z_ovf = saturate(zr6, w)
            z_we = at(s6, 1) & s6["last"] & active(s6, k)
            m.d.comb += [z_wp[k].en.eq(z_we), z_wp[k].addr.eq(s6["g"]), z_wp[k].data.eq(z_val)]
            z_stage.append(z_val)
            flags.append(z_we & z_ovf)
            nr7 = _reg(m, r_old - delta6, f"nr{k}")
            # stage 7: saturate and write R back (or the init sweep, or a host write)
            r_new, r_ovf = saturate(nr7, wr)
            upd = at(s7, 3) & active(s7, k)
            flags.append(upd & r_ovf)
            host_w = dec.out_valid & dec.out_we & (dec.out_lane == k)
            init_val = Mux(ig_row + k == ij, fmt.r_one, 0)
            m.d.comb += [
                r_wp[k].en.eq(init | upd | host_w),
                r_wp[k].addr.eq(Mux(init, ia, Mux(upd, s7["a"], dec.out_bank))),
                r_wp[k].data.eq(Mux(init, init_val, Mux(upd, r_new, dec.out_wdata))),
            ]

        # z serialiser: a row group's L words (all lanes at once) go to the output buffer one per cycle, done
        # before the next group's (d ≥ L cycles later)
        s6 = s[ST_Z_WRITE]
        ser_regs = [Signal(signed(w), name=f"zser{k}") for k in range(lanes)]
        ser_left = Signal(range(lanes + 1))
        ser_k = Signal(range(lanes))
        ser_bank = Signal()
        zo_widx = Signal(range(d))
        ser_we = ser_left != 0
        m.d.comb += [zo_wp.en.eq(ser_we), zo_wp.addr.eq(Cat(zo_widx, ser_bank)),
                     zo_wp.data.eq(Array(ser_regs)[ser_k])]
        with m.If(ser_we):
            m.d.sync += [ser_left.eq(ser_left - 1), ser_k.eq(ser_k + 1),
                         zo_widx.eq(Mux(zo_widx == d - 1, 0, zo_widx + 1))]
            with m.If(ser_bank):
                m.d.sync += zcount[1].eq(zcount[1] + 1)
            with m.Else():
                m.d.sync += zcount[0].eq(zcount[0] + 1)
        with m.If(at(s6, 1) & s6["last"]):  # after the countdown: a new group (d = L: the next cycle) wins
            m.d.sync += [ser_left.eq(Mux(s6["glast"], nlast, lanes)), ser_k.eq(0), ser_bank.eq(s6["zb"])]
            m.d.sync += [ser_regs[k].eq(z_stage[k]) for k in range(lanes)]

        # host readback: lane data the cycle after the decoder's read, registered
        with m.If(host_rd):
            m.d.sync += ctl.r.rdata.eq(Array(r_rdata)[host_rd_lane])
        m.d.sync += ctl.r.rvalid.eq(host_rd)

        # ---------------------------------------------------------------- v: adder tree over lanes, sum over g
        level = tree_in
        for lv in range(plan.tree_levels):
            nxt = []
            for q in range(0, len(level), 2):
                pair = level[q] + level[q + 1] if q + 1 < len(level) else level[q]
                nxt.append(_reg(m, pair, f"tree{lv}_{q // 2}"))
            level = nxt
        tree_out = level[0]
        st_acc = 4 + plan.tree_levels
        sa, sw = s[st_acc], s[st_acc + 2]
        v_acc = Signal(signed(fmt.acc_bits))
        with m.If(at(sa, 2)):
            m.d.sync += v_acc.eq(Mux(sa["first"], 0, v_acc) + tree_out)
        vr = _reg(m, round_shift(v_acc, frac, view_mode), "vr")
        v_val, v_ovf = saturate(vr, w)
        v_we = at(sw, 2) & sw["last"]
        m.d.comb += [v_wp.en.eq(v_we), v_wp.addr.eq(sw["j"]), v_wp.data.eq(v_val)]
        flags.append(v_we & v_ovf)

        # ---------------------------------------------------------------- x stream → xc buffer
        in_j = Signal(range(d))
        x_wb = Signal()
        in_learn = Signal()
        frame_error = Signal()
        xpay = x.payload
        learn_now = Mux(in_j == 0, xpay.learn, in_learn)
        in_pipe_valid: list[Value] = []
        spacing_ok: Value = Const(1, 1)
        if cm:
            i0 = {"v": Signal(), "j": in_j, "bank": x_wb, "learn": learn_now, "last": in_j == d - 1,
                  "x": xpay.data}
        take = x.valid & x.ready
        if cm:
            i0["v"] = take
            ins = [i0]
            for q in range(1, CENTRE_STAGES + 1):
                cur = {k: Signal(Value.cast(v).shape(), name=f"in{q}_{k}") for k, v in ins[-1].items()}
                m.d.sync += [cur[k].eq(ins[-1][k]) for k in cur]
                ins.append(cur)
            in_pipe_valid = [ins[q]["v"] for q in range(1, CENTRE_STAGES + 1)]
            if d <= CENTRE_STAGES:  # mu[j] of the previous sample may not be written back yet
                spacing_ok = ~_any([ins[q]["v"] & (ins[q]["j"] == in_j) for q in range(1, CENTRE_STAGES + 1)])
            i1, i2, i3 = ins[1], ins[2], ins[3]
            m.d.comb += mu_rp.addr.eq(in_j)
            mu = mu_rp.data
            rm2 = _reg(m, round_shift(mu, cm, view_mode), "rm")
            diff2 = _reg(m, (i1["x"].as_signed() << cm) - mu, "mu_diff")
            mu2 = _reg(m, mu, "mu_old")
            xr3 = _reg(m, i2["x"] - rm2, "xc_raw")
            t3 = _reg(m, round_shift(diff2, cm, view_mode), "mu_step")
            mu3 = _reg(m, mu2, "mu_old3")
            xc_val, xc_ovf = saturate(xr3, w)
            flags.append(i3["v"] & xc_ovf)
            m.d.comb += [xc_wp.en.eq(i3["v"]), xc_wp.addr.eq(Cat(i3["j"], i3["bank"])), xc_wp.data.eq(xc_val)]
            m.d.comb += [mu_wp.en.eq(init | (i3["v"] & i3["learn"])),
                         mu_wp.addr.eq(Mux(init, ij, i3["j"])),
                         mu_wp.data.eq(Mux(init, 0, (mu3 + t3)[: w + cm]))]
            full_set, full_bank, full_learn = i3["v"] & i3["last"], i3["bank"], i3["learn"]
        else:
            m.d.comb += [xc_wp.en.eq(take), xc_wp.addr.eq(Cat(in_j, x_wb)), xc_wp.data.eq(xpay.data)]
            full_set, full_bank, full_learn = take & (in_j == d - 1), x_wb, learn_now
        with m.If(full_set):
            with m.If(full_bank):
                m.d.sync += [xfull[1].eq(1), xlearn[1].eq(full_learn)]
            with m.Else():
                m.d.sync += [xfull[0].eq(1), xlearn[0].eq(full_learn)]
        m.d.comb += x.ready.eq(~init & ~Mux(x_wb, xfull[1], xfull[0]) & spacing_ok)
        with m.If(take):
            with m.If(in_j == 0):
                m.d.sync += in_learn.eq(xpay.learn)
            with m.If(xpay.last != (in_j == d - 1)):
                m.d.sync += frame_error.eq(1)
            with m.If(in_j == d - 1):
                m.d.sync += [in_j.eq(0), x_wb.eq(~x_wb)]
            with m.Else():
                m.d.sync += in_j.eq(in_j + 1)

        # ---------------------------------------------------------------- z drain
        ob = Signal()
        oi = Signal(range(d))
        zv = Signal()
        zlast = Signal()
        # words written ≥ words drained always holds, so "more written than drained" is an inequality test
        # (no carry chain in the drain's control)
        avail = Mux(ob, zbusy[1] & (zcount[1] != oi), zbusy[0] & (zcount[0] != oi))
        adv = ~zv | z.ready  # the output register is empty or being taken: read the next word (if any)
        m.d.comb += [zo_rp.en.eq(adv), zo_rp.addr.eq(Cat(oi, ob))]
        with m.If(adv):
            m.d.sync += [zv.eq(avail), zlast.eq(oi == d - 1)]
            with m.If(avail):
                with m.If(oi == d - 1):
                    m.d.sync += [oi.eq(0), ob.eq(~ob)]
                    with m.If(ob):
                        m.d.sync += [zbusy[1].eq(0), zcount[1].eq(0)]
                    with m.Else():
                        m.d.sync += [zbusy[0].eq(0), zcount[0].eq(0)]
                with m.Else():
                    m.d.sync += oi.eq(oi + 1)
        m.d.comb += [z.valid.eq(zv), z.payload.data.eq(zo_rp.data), z.payload.last.eq(zlast)]

        # ---------------------------------------------------------------- status
        overflow = Signal()
        m.d.sync += overflow.eq((overflow & ~ctl.clear_overflow) | _any(flags))
        samples = Signal(32)
        learned = Signal(32)
        s_end_fwd = s[ST_Z_WRITE]
        done_fwd = at(s_end_fwd, 1) & s_end_fwd["end"] & ~s_end_fwd["learn"]
        done_learn = at(s[ST_R_WRITE], 3) & s[ST_R_WRITE]["end"]
        done_any_r = _reg(m, done_fwd | done_learn, "done_any")  # registered: the counters' carry chains
        done_learn_r = _reg(m, done_learn, "done_learn")  # start at a flip-flop
        m.d.sync += [samples.eq(samples + done_any_r), learned.eq(learned + done_learn_r)]
        m.d.comb += busy.eq(init | (state != ST_IDLE) | (in_j != 0) | xfull[0] | xfull[1]
                            | _any(c_valid) | _any(in_pipe_valid) | done_any_r)
        m.d.comb += [ctl.busy.eq(busy), ctl.overflow.eq(overflow), ctl.frame_error.eq(frame_error),
                     ctl.samples.eq(samples), ctl.learned.eq(learned)]
