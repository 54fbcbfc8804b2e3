"""The board top level: UART, the host-link frame decoder/encoder of ``link.py``, and a decorrelation core.

``LinkTop(core, divisor)`` wraps any core with the unit's v2 ports (``x``/``z`` element streams, the nested
``ctl`` control port; UNIT_V2.md) behind a serial line ``rx``/``tx``. Bytes from the UART go through a FIFO
(``fifo_depth`` bytes, enough for two sample frames, so the host can keep two samples in flight while the unit
is busy) into the decoder, which checks each header's CRC before acting, streams SAMPLE elements into
``core.x`` as they arrive, writes R words through ``ctl.r``, and pulses ``ctl.reset``/``ctl.clear_overflow``.
The encoder frames every z vector as it leaves the core, and answers the other requests (status, R words).
Requests other than SAMPLE wait until every earlier sample's z has been sent and the core is idle, so replies
come in request order. ``BoardTop`` puts ``LinkTop`` on an amaranth-boards platform (its UART pins and LEDs).

``LoopbackCore`` is a stand-in with the same ports (z = x, R a plain memory): a link-only bitstream for bringing
up a board's UART, and the tests' reference for the link alone.
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Elaboratable, Module, Mux, Signal, Value, signed
from amaranth.lib import memory, wiring
from amaranth.lib.fifo import SyncFIFOBuffered

from ..errors import ConfigError
from . import link
from .link import LinkParams
from .ports import unit_signature
from .uart import UartRx, UartTx


def crc8_next(crc: Value, byte: Value) -> Value:
    """CRC-8 (0x07) of ``crc`` advanced by one byte: link.crc8 in gateware, as its GF(2) XOR matrix.

    CRC is linear in c = crc ^ byte, so output bit k is the XOR of the bits of c that link.crc8 maps onto it
    (a flat XOR per bit; the 8-step shift/mux loop would duplicate its operand 2^8 times in RTLIL).
    """
    c = Value.cast(crc ^ byte)[:8]
    columns = [link.crc8(bytes([1 << i])) for i in range(8)]  # image of basis vector i (init 0, so linear)
    bits = []
    for k in range(8):
        terms = [c[i] for i in range(8) if columns[i] >> k & 1]
        acc: Value = Const(0, 1)
        for t in terms:
            acc = acc ^ t
        bits.append(acc)
    return Cat(*bits)


def fifo_depth_for(params: LinkParams) -> int:
    """RX FIFO bytes: a power of two holding at least two SAMPLE frames (two samples in flight)."""
    need = 2 * params.sample_frame_bytes
    return max(64, 1 << (need - 1).bit_length())


class LinkTop(Elaboratable):
    """Serial line ``rx``/``tx`` ↔ ``core``. ``leds`` (2 bits): overflow, any sticky link error."""

    def __init__(self, core: wiring.Component, divisor: int, fifo_depth: int | None = None):
        fmt = core.fmt
        self.core = core
        self.divisor = divisor
        self.params = LinkParams.from_format(fmt)
        self.fifo_depth = fifo_depth or fifo_depth_for(self.params)
        self.lanes = int(getattr(core, "multipliers", getattr(core, "lanes", 1)))
        self.rx = Signal(init=1)
        self.tx = Signal(init=1)
        self.leds = Signal(2)
        if self.params.r_words > 1 << (8 * link.ADDR_BYTES):
            raise ConfigError(f"d = {fmt.size}: R has more words than the link's 24-bit addresses")

    def elaborate(self, platform: object) -> Module:  # noqa: C901 (one FSM per direction reads best whole)
        m = Module()
        p = self.params
        core = self.core
        ctl = core.ctl
        d, w, xb, rb = p.size, p.width, p.xb, p.rb

        m.submodules.urx = urx = UartRx(self.divisor)
        m.submodules.utx = utx = UartTx(self.divisor)
        m.submodules.fifo = fifo = SyncFIFOBuffered(width=8, depth=self.fifo_depth)
        m.submodules.core = core
        m.d.comb += [urx.rx.eq(self.rx), self.tx.eq(utx.tx)]
        m.d.comb += [fifo.w_data.eq(urx.data.payload), fifo.w_en.eq(urx.data.valid)]

        # ---- sticky link flags
        crc_error, header_error, rx_overrun, length_error, uart_error = (Signal(name=n) for n in (
            "crc_error", "header_error", "rx_overrun", "length_error", "uart_error"))
        clear_flags = Signal()
        for flag, cond in ((rx_overrun, urx.data.valid & ~fifo.w_rdy), (uart_error, urx.frame_error)):
            with m.If(cond):
                m.d.sync += flag.eq(1)
        with m.If(clear_flags):
            m.d.sync += [f.eq(0) for f in (crc_error, header_error, rx_overrun, length_error, uart_error)]

        # ---- samples whose z frame has not been sent yet
        pending = Signal(16)
        pend_inc = Signal()
        pend_dec = Signal()
        m.d.sync += pending.eq(pending + pend_inc - pend_dec)

        # ---- R port: the decoder writes, the encoder reads
        wr_addr = Signal(8 * link.ADDR_BYTES)
        rd_addr = Signal(8 * link.ADDR_BYTES)
        reading = Signal()
        r_we = Signal()
        r_re = Signal()
        wr_word = Signal(8 * rb)
        addr_w = len(ctl.r.addr)
        m.d.comb += [
            ctl.r.addr.eq(Mux(reading, rd_addr, wr_addr)[:addr_w]),
            ctl.r.we.eq(r_we),
            ctl.r.wdata.eq(wr_word[: p.r_width]),
            ctl.r.re.eq(r_re),
        ]
        reset_pulse = Signal()
        clear_pulse = Signal()
        m.d.comb += [ctl.reset.eq(reset_pulse), ctl.clear_overflow.eq(clear_pulse)]

        # ---- encoder requests (from the decoder)
        req = Signal()  # the decoder asks for a reply; held until the encoder takes it
        req_type = Signal(8)
        req_read = Signal()  # READ_R words (else status)
        req_count = Signal(16)
        enc_idle = Signal()
        quiet = Signal()
        m.d.comb += quiet.eq((pending == 0) & ~ctl.busy & enc_idle & ~req)

        # ================================================================ decoder
        b = fifo.r_data
        b_valid = fifo.r_rdy
        take = Signal()
        m.d.comb += fifo.r_en.eq(take)
        crc = Signal(8)
        ftype = Signal(8)
        length = Signal(16)
        remaining = Signal(16)
        learn = Signal()
        nb = max(xb, rb, link.ADDR_BYTES + link.COUNT_BYTES)
        elem = Signal(8 * nb)
        nbyte = Signal(range(nb + 1))
        elem_idx = Signal(range(d + 1))
        crc_in = crc8_next(crc, b)
        x_data = Signal(signed(w))
        x_last = Signal()
        elem_top = len(elem)

        def shift_in() -> list:
            """Little-endian assembly: each byte enters at the top of ``elem``."""
            return [elem.eq(Cat(elem[8:], b)), nbyte.eq(nbyte + 1), crc.eq(crc_in),
                    remaining.eq(remaining - 1)]

        def word(nbytes: int) -> Value:
            """The assembled little-endian word of ``nbytes`` bytes (they sit at the top of ``elem``)."""
            return elem[elem_top - 8 * nbytes : elem_top]

        m.d.comb += [
            core.x.payload.data.eq(x_data),
            core.x.payload.last.eq(x_last),
            core.x.payload.learn.eq(learn),
        ]

        with m.FSM(name="dec"):
            with m.State("HUNT"):
                m.d.comb += take.eq(b_valid)
                with m.If(b_valid & (b == link.SYNC)):
                    m.d.sync += crc.eq(0)
                    m.next = "TYPE"
            with m.State("TYPE"):
                m.d.comb += take.eq(b_valid)
                with m.If(b_valid):
                    m.d.sync += [ftype.eq(b), crc.eq(crc_in)]
                    m.next = "LEN0"
            with m.State("LEN0"):
                m.d.comb += take.eq(b_valid)
                with m.If(b_valid):
                    m.d.sync += [length[:8].eq(b), crc.eq(crc_in)]
                    m.next = "LEN1"
            with m.State("LEN1"):
                m.d.comb += take.eq(b_valid)
                with m.If(b_valid):
                    m.d.sync += [length[8:].eq(b), crc.eq(crc_in)]
                    m.next = "HCHK"
            with m.State("HCHK"):
                m.d.comb += take.eq(b_valid)
                with m.If(b_valid):
                    m.d.sync += [crc.eq(0), remaining.eq(length), nbyte.eq(0), elem_idx.eq(0)]
                    with m.If(b != crc):
                        m.d.sync += header_error.eq(1)
                        m.next = "HUNT"
                    with m.Elif((ftype == link.SAMPLE) & (length == p.sample_payload)):
                        m.next = "SFLAGS"
                    with m.Elif((ftype == link.WRITE_R) & (length >= link.ADDR_BYTES + rb)):
                        m.next = "WAIT_W"
                    with m.Elif((ftype == link.READ_R) & (length == link.ADDR_BYTES + link.COUNT_BYTES)):
                        m.next = "WAIT_R"
                    with m.Elif(((ftype == link.STATUS) | (ftype == link.CLEAR) | (ftype == link.RESET))
                                & (length == 0)):
                        m.next = "WAIT_C"
                    with m.Else():  # a well-framed request this board does not take: skip it
                        m.d.sync += [length_error.eq(1), remaining.eq(length + 1)]
                        m.next = "SKIP"
            with m.State("SKIP"):
                m.d.comb += take.eq(b_valid)
                with m.If(b_valid):
                    m.d.sync += remaining.eq(remaining - 1)
                    with m.If(remaining == 1):
                        m.next = "HUNT"

            # ---- SAMPLE: flags, then d elements straight into the core
            with m.State("SFLAGS"):
                m.d.comb += take.eq(b_valid)
                with m.If(b_valid):
                    m.d.sync += [learn.eq(b[0]), crc.eq(crc_in), nbyte.eq(0)]
                    m.d.comb += pend_inc.eq(1)
                    m.next = "SBYTES"
            with m.State("SBYTES"):
                m.d.comb += take.eq(b_valid)
                with m.If(b_valid):
                    m.d.sync += shift_in()
                    with m.If(nbyte == xb - 1):
                        m.d.sync += [x_data.eq(Cat(elem[8:], b)[elem_top - 8 * xb : elem_top - 8 * xb + w]),
                                     x_last.eq(elem_idx == d - 1), nbyte.eq(0)]
                        m.next = "SPUSH"
            with m.State("SPUSH"):
                m.d.comb += core.x.valid.eq(1)
                with m.If(core.x.ready):
                    m.d.sync += elem_idx.eq(elem_idx + 1)
                    with m.If(elem_idx == d - 1):
                        m.next = "PCRC_S"
                    with m.Else():
                        m.next = "SBYTES"
            with m.State("PCRC_S"):
                m.d.comb += take.eq(b_valid)
                with m.If(b_valid):
                    with m.If(b != crc):
                        m.d.sync += crc_error.eq(1)
                    m.next = "HUNT"

            # ---- WRITE_R: address, then words written as they complete
            with m.State("WAIT_W"):
                with m.If(quiet):
                    m.next = "WADDR"
            with m.State("WADDR"):
                m.d.comb += take.eq(b_valid)
                with m.If(b_valid):
                    m.d.sync += shift_in()
                    with m.If(nbyte == link.ADDR_BYTES - 1):
                        m.d.sync += [wr_addr.eq(Cat(elem[8:], b)[elem_top - 24 : elem_top]), nbyte.eq(0)]
                        m.next = "WBYTES"
            with m.State("WBYTES"):
                with m.If(remaining == 0):
                    with m.If(nbyte != 0):
                        m.d.sync += length_error.eq(1)
                    m.next = "PCRC_C"
                with m.Else():
                    m.d.comb += take.eq(b_valid)
                    with m.If(b_valid):
                        m.d.sync += shift_in()
                        with m.If(nbyte == rb - 1):
                            m.d.sync += [wr_word.eq(Cat(elem[8:], b)[elem_top - 8 * rb : elem_top]),
                                         nbyte.eq(0)]
                            m.next = "WPUSH"
            with m.State("WPUSH"):
                with m.If(~ctl.busy):
                    m.d.comb += r_we.eq(1)
                    m.d.sync += wr_addr.eq(wr_addr + 1)
                    m.next = "WBYTES"

            # ---- READ_R: address and count, then the encoder fetches and sends the words
            with m.State("WAIT_R"):
                with m.If(quiet):
                    m.next = "RARGS"
            with m.State("RARGS"):
                m.d.comb += take.eq(b_valid)
                with m.If(b_valid):
                    m.d.sync += shift_in()
                    with m.If(remaining == 1):
                        args = Cat(elem[8:], b)[elem_top - 40 : elem_top]
                        m.d.sync += [rd_addr.eq(args[:24]), req_count.eq(args[24:40])]
                        m.next = "PCRC_C"

            # ---- commands without payload
            with m.State("WAIT_C"):
                with m.If(quiet):
                    m.next = "PCRC_C"
            with m.State("PCRC_C"):
                m.d.comb += take.eq(b_valid)
                with m.If(b_valid):
                    ok = b == crc
                    with m.If(~ok):
                        m.d.sync += crc_error.eq(1)
                    m.d.sync += [req_type.eq(link.STATUS | link.REPLY), req_read.eq(0)]
                    with m.If(ok & (ftype == link.READ_R) & (req_count != 0)):
                        m.d.sync += [req_type.eq(link.READ_R | link.REPLY), req_read.eq(1)]
                    with m.Elif(ok & (ftype != link.READ_R)):
                        m.d.sync += req_type.eq(ftype | link.REPLY)
                    with m.If(ok & (ftype == link.CLEAR)):
                        m.d.comb += [clear_pulse.eq(1), clear_flags.eq(1)]
                    with m.If(ok & (ftype == link.RESET)):
                        m.d.comb += [reset_pulse.eq(1), clear_flags.eq(1)]
                        m.next = "RESET_WAIT"
                    with m.Else():
                        m.d.sync += req.eq(1)
                        m.next = "REPLY"
            with m.State("RESET_WAIT"):  # one cycle for busy to rise, then the init sweep
                m.next = "RESET_SWEEP"
            with m.State("RESET_SWEEP"):
                with m.If(~ctl.busy):
                    m.d.sync += req.eq(1)
                    m.next = "REPLY"
            with m.State("REPLY"):  # the encoder takes the request
                with m.If(~req):
                    m.next = "HUNT"

        # ================================================================ encoder
        flags_byte = Cat(ctl.busy, ctl.overflow, ctl.frame_error, crc_error, header_error, rx_overrun,
                         length_error, uart_error)
        status_bytes: list[Value] = [flags_byte]
        status_bytes += [ctl.samples[8 * k : 8 * k + 8] for k in range(4)]
        status_bytes += [ctl.learned[8 * k : 8 * k + 8] for k in range(4)]
        consts = [(d, 2), (w, 1), (p.r_width, 1), (self.lanes, 2), (self.fifo_depth, 2),
                  (link.PROTOCOL_VERSION, 1)]
        for value, nbytes in consts:
            status_bytes += [Const((value >> (8 * k)) & 0xFF, 8) for k in range(nbytes)]
        assert len(status_bytes) == link.STATUS_LEN
        status_arr = Array(status_bytes)

        tcrc = Signal(8)
        ttype = Signal(8)
        tlen = Signal(16)
        tleft = Signal(16)
        kind = Signal(2)  # 0 status, 1 z, 2 R words
        sidx = Signal(range(link.STATUS_LEN))
        wreg = Signal(8 * max(xb, rb))
        wbytes = Signal(range(max(xb, rb) + 1))  # bytes of wreg still to send
        words_left = Signal(16)
        rwait = Signal()
        out = Signal(8)
        out_valid = Signal()
        m.d.comb += [utx.data.payload.eq(out), utx.data.valid.eq(out_valid)]
        sent = out_valid & utx.data.ready
        z_ext = Signal(signed(8 * xb))
        r_ext = Signal(signed(8 * rb))
        m.d.comb += [z_ext.eq(core.z.payload.data), r_ext.eq(ctl.r.rdata)]

        with m.FSM(name="enc"):
            with m.State("IDLE"):
                m.d.comb += enc_idle.eq(1)
                with m.If(req):
                    m.d.sync += [req.eq(0), ttype.eq(req_type), sidx.eq(0), wbytes.eq(0)]
                    with m.If(req_read):
                        m.d.sync += [kind.eq(2), tlen.eq(req_count * rb), words_left.eq(req_count),
                                     reading.eq(1)]
                    with m.Else():
                        m.d.sync += [kind.eq(0), tlen.eq(link.STATUS_LEN)]
                    m.next = "SYNC"
                with m.Elif(core.z.valid):
                    m.d.sync += [ttype.eq(link.SAMPLE | link.REPLY), kind.eq(1), tlen.eq(p.z_payload),
                                 wbytes.eq(0)]
                    m.next = "SYNC"
            with m.State("SYNC"):
                m.d.comb += [out.eq(link.SYNC), out_valid.eq(1)]
                with m.If(sent):
                    m.d.sync += tcrc.eq(0)
                    m.next = "TYPE"
            with m.State("TYPE"):
                m.d.comb += [out.eq(ttype), out_valid.eq(1)]
                with m.If(sent):
                    m.d.sync += tcrc.eq(crc8_next(tcrc, out))
                    m.next = "LEN0"
            with m.State("LEN0"):
                m.d.comb += [out.eq(tlen[:8]), out_valid.eq(1)]
                with m.If(sent):
                    m.d.sync += tcrc.eq(crc8_next(tcrc, out))
                    m.next = "LEN1"
            with m.State("LEN1"):
                m.d.comb += [out.eq(tlen[8:]), out_valid.eq(1)]
                with m.If(sent):
                    m.d.sync += tcrc.eq(crc8_next(tcrc, out))
                    m.next = "HCRC"
            with m.State("HCRC"):
                m.d.comb += [out.eq(tcrc), out_valid.eq(1)]
                with m.If(sent):
                    m.d.sync += [tcrc.eq(0), tleft.eq(tlen)]
                    m.next = "PAY"
            with m.State("PAY"):
                with m.If(tleft == 0):
                    m.next = "PCRC"
                with m.Elif(kind == 0):
                    m.d.comb += [out.eq(status_arr[sidx]), out_valid.eq(1)]
                    with m.If(sent):
                        m.d.sync += [sidx.eq(sidx + 1), tleft.eq(tleft - 1), tcrc.eq(crc8_next(tcrc, out))]
                with m.Elif(wbytes != 0):
                    m.d.comb += [out.eq(wreg[:8]), out_valid.eq(1)]
                    with m.If(sent):
                        m.d.sync += [wreg.eq(wreg >> 8), wbytes.eq(wbytes - 1), tleft.eq(tleft - 1),
                                     tcrc.eq(crc8_next(tcrc, out))]
                with m.Elif(kind == 1):
                    m.d.comb += core.z.ready.eq(1)
                    with m.If(core.z.valid):
                        m.d.sync += [wreg.eq(z_ext), wbytes.eq(xb)]
                with m.Else():  # R words: one read at a time
                    with m.If(~rwait):
                        m.d.comb += r_re.eq(1)
                        m.d.sync += rwait.eq(1)
                    with m.Elif(ctl.r.rvalid):
                        m.d.sync += [wreg.eq(r_ext), wbytes.eq(rb), rwait.eq(0), rd_addr.eq(rd_addr + 1),
                                     words_left.eq(words_left - 1)]
            with m.State("PCRC"):
                m.d.comb += [out.eq(tcrc), out_valid.eq(1)]
                with m.If(sent):
                    m.d.sync += reading.eq(0)
                    m.d.comb += pend_dec.eq(kind == 1)
                    m.next = "IDLE"

        m.d.comb += self.leds.eq(Cat(ctl.overflow, crc_error | header_error | rx_overrun | length_error
                                     | uart_error))
        return m


# ------------------------------------------------------------------------------------------ stand-in core
class LoopbackCore(wiring.Component):
    """Stand-in with the unit's v2 ports (``ports.unit_signature``): z = x, R a d²-word memory, real counters.

    ``overflow`` sets when an x element is the most negative W-bit value (so the flag path can be tested);
    ``reset`` (and power-on) sweeps R to the identity (2^F_R on the diagonal) over d² cycles with ``busy`` high.
    """

    def __init__(self, fmt: object):
        self.fmt = fmt
        d = fmt.size  # type: ignore[attr-defined]
        self.multipliers = 0
        self.init_cycles = d * d
        self.r_read_latency = 1
        super().__init__(unit_signature(fmt))

    def elaborate(self, platform: object) -> Module:
        m = Module()
        fmt = self.fmt
        d, w = fmt.size, fmt.width  # type: ignore[attr-defined]
        m.submodules.rmem = rmem = memory.Memory(shape=signed(fmt.r_width), depth=d * d,  # type: ignore
                                                 init=[])
        wp = rmem.write_port()
        rp = rmem.read_port()
        buf = memory.Memory(shape=signed(w), depth=d, init=[])
        m.submodules.buf = buf
        bw = buf.write_port()
        br = buf.read_port(transparent_for=(bw,))
        ctl = self.ctl
        idx = Signal(range(d + 1))
        sweep = Signal(range(d * d + 1), init=d * d)  # power-on: sweep too
        sweeping = Signal()
        elem_no = Signal(range(d), reset_less=True)
        m.d.comb += sweeping.eq(sweep != 0)
        busy = Signal()
        m.d.comb += [ctl.busy.eq(busy | sweeping), self.x.ready.eq(~busy & ~sweeping)]
        learn_cur = Signal()

        # R port (and the reset sweep writing the identity, address by address)
        r_one = 1 << fmt.r_frac  # type: ignore[attr-defined]
        sw_addr = Signal(range(d * d + 1))
        sw_diag = Signal(range(d * d + d + 2))
        with m.If(sweeping):
            m.d.comb += [wp.addr.eq(sw_addr), wp.en.eq(1), wp.data.eq(Mux(sw_addr == sw_diag, r_one, 0))]
            m.d.sync += [sweep.eq(sweep - 1), sw_addr.eq(sw_addr + 1)]
            with m.If(sw_addr == sw_diag):
                m.d.sync += sw_diag.eq(sw_diag + d + 1)
        with m.Else():
            m.d.comb += [wp.addr.eq(ctl.r.addr), wp.data.eq(ctl.r.wdata), wp.en.eq(ctl.r.we & ~ctl.busy)]
        m.d.comb += [rp.addr.eq(ctl.r.addr), ctl.r.rdata.eq(rp.data)]
        m.d.sync += ctl.r.rvalid.eq(ctl.r.re & ~ctl.busy)

        # x in: write the buffer; after the last element play it back as z
        with m.If(self.x.valid & self.x.ready):
            m.d.comb += [bw.addr.eq(idx), bw.data.eq(self.x.payload.data), bw.en.eq(1)]
            with m.If(idx == 0):
                m.d.sync += learn_cur.eq(self.x.payload.learn)
            with m.If(self.x.payload.data == -(1 << (w - 1))):
                m.d.sync += ctl.overflow.eq(1)
            with m.If(self.x.payload.last != (idx == d - 1)):
                m.d.sync += ctl.frame_error.eq(1)
            with m.If(idx == d - 1):
                m.d.sync += [idx.eq(0), busy.eq(1), elem_no.eq(0)]
            with m.Else():
                m.d.sync += idx.eq(idx + 1)
        # playback: read address elem_no, z valid one cycle later (a small skid: z_valid register)
        z_valid = Signal()
        z_last = Signal()
        m.d.comb += [br.addr.eq(Mux(self.z.valid & self.z.ready, elem_no + 1, elem_no)),
                     self.z.payload.data.eq(br.data), self.z.payload.last.eq(z_last), self.z.valid.eq(z_valid)]
        started = Signal()
        with m.If(busy & ~started):
            m.d.sync += [started.eq(1), z_valid.eq(1), z_last.eq(d == 1)]
        with m.If(self.z.valid & self.z.ready):
            m.d.sync += elem_no.eq(elem_no + 1)
            m.d.sync += z_last.eq(elem_no + 1 == d - 1)
            with m.If(z_last):
                m.d.sync += [z_valid.eq(0), started.eq(0), busy.eq(0), ctl.samples.eq(ctl.samples + 1),
                             ctl.learned.eq(ctl.learned + learn_cur)]
        with m.If(ctl.clear_overflow):
            m.d.sync += ctl.overflow.eq(0)
        with m.If(ctl.reset):
            m.d.sync += [sweep.eq(d * d), sw_addr.eq(0), sw_diag.eq(0), ctl.overflow.eq(0),
                         ctl.frame_error.eq(0), ctl.samples.eq(0), ctl.learned.eq(0), idx.eq(0), busy.eq(0),
                         started.eq(0), z_valid.eq(0)]
        return m
