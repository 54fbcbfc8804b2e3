"""Single-MAC architecture: one W×W multiplier (M = 1) time-multiplexed over all 3d² multiplies of a sample.

R lives in one memory of d² words (address i·d + j, the R port's own addressing). The phase sequencer of
``unit.Arch`` issues d² slots per phase; address counters (no multiplier) walk

1. z: row by row (i outer, j inner): acc = Σ_j Rw[i,j]·x[j] → z[i] (x rotates through the input buffer);
2. p and v: column by column (j outer, i inner): p[i,j] = rnd(z[i]·Rw[i,j]) into the p memory, the running
   column sum of the full products gives v[j];
3. update: column by column (the LFSR order): e = sat(v[j] − p[i,j]) feeds z[i]·e, R[i,j] is written back.

Pipeline (cycles after a slot's issue): 0 memory addresses; 1 read data → view Rw / e → operand registers;
2 the product; 3 accumulate / p write / R write-back; 4 z[i] / v[j].
"""

from __future__ import annotations

from types import SimpleNamespace

from amaranth.hdl import Array, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.memory import Memory

from ..fixed.format import UnitFormat
from .rounding import data_round, lfsr_step, r_update, r_view, saturate, uses_lfsr, view_int
from .unit import P1, P2, P3, Arch, pipe


class MacArch(Arch):
    """One multiplier; 3 phases of d² cycles per sample (plus a few cycles at d ≤ 3)."""

    name = "mac"

    def __init__(self, fmt: UnitFormat):
        super().__init__(fmt)
        d = fmt.size
        self.slots = d * d
        # 1→2: z[d−1] lands 5 cycles after row d−1's last issue; phase 2 needs it d−1 slots in, 1 cycle after
        # issue. 2→3: v[j] lands 5 cycles after column j's last issue, phase 3 reads it 1 cycle after (j, 0).
        # 3→1: R[0, d−1] is written 3 cycles after its issue ((d−1)·d in phase 3) and read at slot d−1.
        self.gaps = (max(0, 4 - d), max(0, d + 3 - d * d), max(0, 5 - 2 * d))
        self.front = d * d + 4
        self.multipliers = 1

    def datapath(self, m: Module, u: wiring.Component, c: SimpleNamespace) -> None:
        fmt = self.fmt
        d, w, wr = fmt.size, fmt.width, fmt.r_width
        delayed = fmt.delayed

        # ---- address counters: phase 1 row-major, phases 2 and 3 column-major
        i = Signal(range(d))
        j = Signal(range(d))
        addr = Signal(range(d * d))
        with m.If(c.issue):
            with m.If(c.last):
                m.d.sync += [i.eq(0), j.eq(0), addr.eq(0)]
            with m.Elif(c.ph == P1):
                m.d.sync += addr.eq(addr + 1)
                with m.If(j == d - 1):
                    m.d.sync += [j.eq(0), i.eq(i + 1)]
                with m.Else():
                    m.d.sync += j.eq(j + 1)
            with m.Else():
                with m.If(i == d - 1):
                    m.d.sync += [i.eq(0), j.eq(j + 1), addr.eq(j + 1)]
                with m.Else():
                    m.d.sync += [i.eq(i + 1), addr.eq(addr + d)]
            # phase 1 rotates x so that x[j] is always at the head of the buffer
            with m.If(c.ph == P1):
                m.d.sync += [c.x_buf[k].eq(c.x_buf[(k + 1) % d]) for k in range(d)]

        s = pipe(m, {"v": c.issue, "ph": c.ph[:2], "i": i, "j": j, "addr": addr, "i0": i == 0, "j0": j == 0,
                     "il": i == d - 1, "jl": j == d - 1, "last": c.last, "learn": c.learn_cur,
                     "x": c.x_buf[0]}, 4)
        c.stage_valid += [s[k]["v"] for k in range(1, 5)]
        s1, s3, s4 = s[1], s[3], s[4]
        v1, v3, v4 = s1["v"], s3["v"], s4["v"]

        # ---- memories: R (d² × W_R, identity at power-on), p (d² × W), Rw before the last update (delayed)
        r_init = [fmt.r_one if a % (d + 1) == 0 else 0 for a in range(d * d)]
        rmem = Memory(shape=signed(wr), depth=d * d, init=r_init)
        pmem = Memory(shape=signed(w), depth=d * d, init=[])
        m.submodules.r_mem = rmem
        m.submodules.p_mem = pmem
        r_rp, r_wp = rmem.read_port(), rmem.write_port()
        p_rp, p_wp = pmem.read_port(), pmem.write_port()
        m.d.comb += [r_rp.addr.eq(Mux(c.issue, addr, u.r_addr)), p_rp.addr.eq(addr)]
        m.d.comb += u.r_rdata.eq(r_rp.data)
        port_we = c.port_we & (u.r_addr < d * d)
        v_regs = Array(Signal(signed(w), name=f"v{k}") for k in range(d))
        z_arr = Array(c.z)

        # ---- stage 1: view of R, e = v[j] − p[i,j] → operand registers
        rw, rw_ovf = r_view(fmt, r_rp.data)
        rw_flag_ok = (s1["ph"] == P2) | ((s1["ph"] == P1) & (~s1["learn"] if delayed else 1))
        c.flags.append(v1 & rw_flag_ok & rw_ovf)
        e_val, e_ovf = saturate(v_regs[s1["j"]] - p_rp.data, w)
        c.flags.append(v1 & (s1["ph"] == P3) & e_ovf)
        a_src = Mux(s1["ph"] == P3, e_val, rw)
        if delayed:
            omem = Memory(shape=signed(w), depth=d * d, init=[view_int(fmt, x) for x in r_init])
            m.submodules.rw_old = omem
            o_rp, o_wp = omem.read_port(), omem.write_port()
            m.d.comb += o_rp.addr.eq(addr)
            a_src = Mux((s1["ph"] == P1) & s1["learn"], o_rp.data, a_src)
            o_upd = v1 & (s1["ph"] == P3)
            port_view, _ = r_view(fmt, u.r_wdata)
            m.d.comb += [
                o_wp.en.eq(o_upd | port_we),
                o_wp.addr.eq(Mux(o_upd, s1["addr"], u.r_addr)),
                o_wp.data.eq(Mux(o_upd, rw, port_view)),
            ]
        a = Signal(signed(w))
        b = Signal(signed(w))
        r1 = Signal(signed(wr))
        r2 = Signal(signed(wr))
        m.d.sync += [a.eq(a_src), b.eq(Mux(s1["ph"] == P1, s1["x"], z_arr[s1["i"]]))]
        m.d.sync += [r1.eq(r_rp.data), r2.eq(r1)]

        # ---- stage 2: the one multiplier
        prod = Signal(signed(2 * w))
        m.d.sync += prod.eq(a * b)

        # ---- stage 3: accumulate (phase 1 over j, phase 2 over i), p write, R write-back
        acc = Signal(signed(fmt.acc_bits))
        with m.If(v3 & (s3["ph"] == P1)):
            m.d.sync += acc.eq(Mux(s3["j0"], 0, acc) + prod)
        with m.If(v3 & (s3["ph"] == P2)):
            m.d.sync += acc.eq(Mux(s3["i0"], 0, acc) + prod)
        p_val, p_ovf = data_round(fmt, prod)
        p_wr = v3 & (s3["ph"] == P2)
        c.flags.append(p_wr & p_ovf)
        m.d.comb += [p_wp.en.eq(p_wr), p_wp.addr.eq(s3["addr"]), p_wp.data.eq(p_val)]

        upd3 = v3 & (s3["ph"] == P3)
        rand = None
        if uses_lfsr(fmt):
            rand = Signal(fmt.lfsr_width, init=fmt.lfsr_seed)
            with m.If(upd3):
                m.d.sync += rand.eq(lfsr_step(rand, fmt.lfsr_taps))
        new_r, r_ovf = r_update(fmt, r2, prod, rand)
        c.flags.append(upd3 & r_ovf)
        m.d.comb += [
            r_wp.en.eq(upd3 | port_we),
            r_wp.addr.eq(Mux(upd3, s3["addr"], u.r_addr)),
            r_wp.data.eq(Mux(upd3, new_r, u.r_wdata)),
        ]

        # ---- stage 4: z[i] at the end of a row (phase 1), v[j] at the end of a column (phase 2)
        word, word_ovf = data_round(fmt, acc)
        z_wr = v4 & (s4["ph"] == P1) & s4["jl"]
        v_wr = v4 & (s4["ph"] == P2) & s4["il"]
        with m.If(z_wr):
            m.d.sync += z_arr[s4["i"]].eq(word)
        with m.If(v_wr):
            m.d.sync += v_regs[s4["j"]].eq(word)
        c.flags.append((z_wr | v_wr) & word_ovf)
        m.d.comb += c.z_set.eq(z_wr & s4["last"])
