"""Row-parallel architecture: one processing element (PE) per row of R, each with ONE W×W multiplier (M = d).

PE i keeps row i of R in its own small memory (depth d, W_R bits), so one address j reads the whole column j
across the PEs in one cycle. Per sample, with the phase sequencer of ``unit.Arch`` issuing column j = 0..d−1:

1. z: PE i accumulates Rw[i,j]·x[j] (x[j] broadcast, shifted out of the input buffer), rounds to z[i];
2. p and v: PE i forms z[i]·Rw[i,j] = the full product; an adder tree over the PEs gives v[j] the cycle column
   j is processed; p[i,j] and then e[i,j] = sat(v[j] − p[i,j]) are written into PE i's e memory;
3. update: PE i multiplies z[i]·e[i,j] and writes R[i,j] back (d LFSR values per cycle, row order).

Pipeline (cycles after a slot's issue): 0 memory address; 1 read data → view Rw / e → operand registers;
2 the product; 3 accumulate / p and the adder tree / R write-back; 4 z / v and e.
Between phases only the true dependencies cost cycles: z is needed by every phase-2 product (3 cycles); e and
R column writes must land before they are read again (costs cycles only at d < 5 / d < 4).
"""

from __future__ import annotations

from types import SimpleNamespace

from amaranth.hdl import Array, Module, Mux, Signal, Value, signed
from amaranth.lib import wiring
from amaranth.lib.memory import Memory

from ..fixed.format import UnitFormat
from .rounding import data_round, lfsr_states, r_update, r_view, saturate, uses_lfsr, view_int
from .unit import P1, P2, P3, Arch, pipe


class RowArch(Arch):
    """One PE per row; 3 phases of d cycles plus 3 cycles (d ≥ 5) per sample."""

    name = "row"

    def __init__(self, fmt: UnitFormat):
        super().__init__(fmt)
        d = fmt.size
        self.slots = d
        # 1→2: z of the last column is ready 5 cycles after its issue, operands load 1 cycle after issue → 3;
        # 2→3: e[.,j] is written 4 cycles after issue, read at issue → free at d ≥ 5;
        # 3→1: R is written 3 cycles after issue → free at d ≥ 4.
        self.gaps = (3, max(0, 5 - d), max(0, 4 - d))
        self.front = d + 4
        self.multipliers = d

    def datapath(self, m: Module, u: wiring.Component, c: SimpleNamespace) -> None:
        fmt = self.fmt
        d, w, wr = fmt.size, fmt.width, fmt.r_width
        delayed = fmt.delayed

        # ---- tags travelling with each issued slot
        s = pipe(m, {"v": c.issue, "ph": c.ph[:2], "j": c.cnt, "first": c.first, "last": c.last,
                     "learn": c.learn_cur, "x": c.x_buf[0]}, 4)
        c.stage_valid += [s[k]["v"] for k in range(1, 5)]
        s1, s3, s4 = s[1], s[3], s[4]

        # phase 1 shifts x[j] out of the input buffer, one element per issued column
        with m.If(c.issue & (c.ph == P1)):
            m.d.sync += [c.x_buf[k].eq(c.x_buf[k + 1]) for k in range(d - 1)]

        # ---- R port: r_addr = i·d + j decoded by a table (no arithmetic on addresses)
        port_i = Signal(range(d))
        port_j = Signal(range(d))
        port_ok = Signal()
        with m.Switch(u.r_addr):
            for a in range(d * d):
                with m.Case(a):
                    m.d.comb += [port_i.eq(a // d), port_j.eq(a % d), port_ok.eq(1)]
        rd_sel = Signal(range(d))
        m.d.sync += rd_sel.eq(port_i)
        port_view, _ = r_view(fmt, u.r_wdata)

        # ---- stochastic rounding: d consecutive LFSR values per update column (row order)
        rand = [None] * d
        if uses_lfsr(fmt):
            lfsr = Signal(fmt.lfsr_width, init=fmt.lfsr_seed)
            values, after = lfsr_states(m, lfsr, fmt.lfsr_taps, d)
            rand = values
            with m.If(s3["v"] & (s3["ph"] == P3)):
                m.d.sync += lfsr.eq(after)

        v1 = s1["v"]
        rw_flag_ok = (s1["ph"] == P2) | ((s1["ph"] == P1) & (~s1["learn"] if delayed else 1))
        upd3 = s3["v"] & (s3["ph"] == P3)
        acc_bits = fmt.acc_bits
        prods = []
        rdata = []
        p_regs = []
        e_ports = []
        for i in range(d):
            init = [fmt.r_one if j == i else 0 for j in range(d)]
            rmem = Memory(shape=signed(wr), depth=d, init=init)
            emem = Memory(shape=signed(w), depth=d, init=[])
            m.submodules[f"r_mem{i}"] = rmem
            m.submodules[f"e_mem{i}"] = emem
            r_rp, r_wp = rmem.read_port(), rmem.write_port()
            e_rp, e_wp = emem.read_port(), emem.write_port()
            m.d.comb += [r_rp.addr.eq(Mux(c.issue, c.cnt, port_j)), e_rp.addr.eq(c.cnt)]
            rdata.append(r_rp.data)

            # stage 1: view of R / e → operand registers
            rw, rw_ovf = r_view(fmt, r_rp.data)
            c.flags.append(v1 & rw_flag_ok & rw_ovf)
            a_src = Mux(s1["ph"] == P3, e_rp.data, rw)
            if delayed:
                omem = Memory(shape=signed(w), depth=d, init=[view_int(fmt, x) for x in init])
                m.submodules[f"rw_old{i}"] = omem
                o_rp, o_wp = omem.read_port(), omem.write_port()
                m.d.comb += o_rp.addr.eq(c.cnt)
                a_src = Mux((s1["ph"] == P1) & s1["learn"], o_rp.data, a_src)
                # phase 3 reads R before this sample's update: its view is what the next sample's z uses
                o_upd = v1 & (s1["ph"] == P3)
                o_port = c.port_we & port_ok & (port_i == i)
                m.d.comb += [
                    o_wp.en.eq(o_upd | o_port),
                    o_wp.addr.eq(Mux(o_upd, s1["j"], port_j)),
                    o_wp.data.eq(Mux(o_upd, rw, port_view)),
                ]
            a = Signal(signed(w), name=f"a{i}")
            b = Signal(signed(w), name=f"b{i}")
            r1 = Signal(signed(wr), name=f"r_old1_{i}")
            r2 = Signal(signed(wr), name=f"r_old2_{i}")
            m.d.sync += [a.eq(a_src), b.eq(Mux(s1["ph"] == P1, s1["x"], c.z[i])), r1.eq(r_rp.data), r2.eq(r1)]

            # stage 2: the PE's only multiplier
            prod = Signal(signed(2 * w), name=f"prod{i}")
            m.d.sync += prod.eq(a * b)
            prods.append(prod)

            # stage 3: accumulate (phase 1), p (phase 2), R write-back (phase 3)
            acc = Signal(signed(acc_bits), name=f"acc{i}")
            with m.If(s3["v"] & (s3["ph"] == P1)):
                m.d.sync += acc.eq(Mux(s3["first"], 0, acc) + prod)
            p_val, p_ovf = data_round(fmt, prod)
            p_reg = Signal(signed(w), name=f"p{i}")
            m.d.sync += p_reg.eq(p_val)
            p_regs.append(p_reg)
            c.flags.append(s3["v"] & (s3["ph"] == P2) & p_ovf)
            new_r, r_ovf = r_update(fmt, r2, prod, rand[i])
            c.flags.append(upd3 & r_ovf)
            port_w = c.port_we & port_ok & (port_i == i)
            m.d.comb += [
                r_wp.en.eq(upd3 | port_w),
                r_wp.addr.eq(Mux(upd3, s3["j"], port_j)),
                r_wp.data.eq(Mux(upd3, new_r, u.r_wdata)),
            ]

            # stage 4: z (end of phase 1)
            z_val, z_ovf = data_round(fmt, acc)
            z_wr = s4["v"] & (s4["ph"] == P1) & s4["last"]
            with m.If(z_wr):
                m.d.sync += c.z[i].eq(z_val)
            c.flags.append(z_wr & z_ovf)
            e_ports.append(e_wp)

        # ---- adder tree over the PEs (stage 3) → v[j] and e[., j] (stage 4)
        total = Signal(signed(acc_bits), name="col_sum")
        m.d.sync += total.eq(_tree(prods))
        v_val, v_ovf = data_round(fmt, total)
        e_wr = s4["v"] & (s4["ph"] == P2)
        c.flags.append(e_wr & v_ovf)
        for i in range(d):
            e_val, e_ovf = saturate(v_val - p_regs[i], w)
            c.flags.append(e_wr & e_ovf)
            m.d.comb += [e_ports[i].en.eq(e_wr), e_ports[i].addr.eq(s4["j"]), e_ports[i].data.eq(e_val)]

        m.d.comb += c.z_set.eq(s4["v"] & (s4["ph"] == P1) & s4["last"])
        m.d.comb += u.r_rdata.eq(Array(rdata)[rd_sel])


def _tree(values: list[Value]) -> Value:
    """Balanced adder tree (exact: Amaranth widens each sum by one bit)."""
    while len(values) > 1:
        values = [values[k] + values[k + 1] if k + 1 < len(values) else values[k]
                  for k in range(0, len(values), 2)]
    return values[0]

