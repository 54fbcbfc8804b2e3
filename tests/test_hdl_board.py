"""The board top level through its serial line (link_sim drives rx bit by bit with link.py's encoder, decodes tx),
and the pyserial host driver (host.py) against a board emulated in Python.

The 1 000-sample d = 16 run through Verilator is benchmarks/board_uart_sim.py (hdl/BOARDS.md); here the same
path at d = 4 in the Amaranth simulator (real unit, bit-exact against the integer model, R read back) and one
short Verilator run.
"""

from __future__ import annotations

import numpy as np
import pytest
from tooling import require

from analogdecorr.errors import DataError
from analogdecorr.fixed import model
from analogdecorr.fixed.format import UnitFormat
from analogdecorr.hdl import link
from analogdecorr.hdl.board import LinkTop, LoopbackCore
from analogdecorr.hdl.host import BoardLink
from analogdecorr.hdl.link import FrameDecoder, LinkParams, encode_frame
from analogdecorr.hdl.link_sim import simulate_link, verilate_link
from analogdecorr.hdl.tools import tool_missing
from analogdecorr.hdl.unit import DecorrelationUnit

FMT4 = UnitFormat(size=4, width=16, frac=12, r_width=28, r_frac=20, shift=6)


def _status(frame) -> link.Status:
    assert frame.crc_ok
    return LinkParams.status(frame.payload)


@pytest.fixture(scope="module")
def loopback_run():
    """One simulation of the loopback top: samples, status, R write/read, overflow, clear, reset."""
    top = LinkTop(LoopbackCore(FMT4), divisor=3)
    p = top.params
    rng = np.random.default_rng(1)
    X = rng.integers(-30000, 30000, size=(6, 4))
    X[4, 2] = -(1 << 15)  # the loopback's overflow trigger
    reqs = [p.command(link.STATUS)]
    reqs += [p.sample(X[t], learn=t % 3 != 0) for t in range(6)]
    reqs += [p.command(link.STATUS), p.write_r(5, np.array([-3, 1 << 26])), p.read_r(0, 16),
             p.command(link.CLEAR), p.command(link.RESET), p.read_r(4, 3)]
    run = simulate_link(top, reqs, idle_cycles=32)
    return p, X, run


def test_loopback_echoes_samples_and_counts(loopback_run):
    p, X, run = loopback_run
    assert run.skipped == 0 and all(f.crc_ok for f in run.replies)
    types = [f.ftype for f in run.replies]
    assert types == [0x84] + [0x81] * 6 + [0x84, 0x82, 0x83, 0x85, 0x86, 0x83]
    st0 = _status(run.replies[0])
    assert (st0.size, st0.width, st0.r_width, st0.samples, st0.version) == (4, 16, 28, 0, link.PROTOCOL_VERSION)
    assert st0.fifo_bytes >= 2 * p.sample_frame_bytes
    Z = np.array([p.z(f.payload) for f in run.replies[1:7]])
    assert np.array_equal(Z, X)
    st = _status(run.replies[7])
    assert (st.samples, st.learned) == (6, 4) and st.flags["overflow"] and not st.link_errors


def test_loopback_r_port_clear_and_reset(loopback_run):
    p, _, run = loopback_run
    R = p.r_words_of(run.replies[9].payload)
    expect = np.eye(4, dtype=np.int64).reshape(-1) << 20  # power-on sweep: the identity
    expect[5:7] = [-3, 1 << 26]
    assert np.array_equal(R, expect)
    assert not _status(run.replies[10]).flags["overflow"]  # CLEAR
    st = _status(run.replies[11])  # RESET: counters 0
    assert (st.samples, st.learned) == (0, 0)
    assert np.array_equal(p.r_words_of(run.replies[12].payload), [0, 1 << 20, 0])  # R = I again


def test_link_survives_corrupt_and_unknown_frames():
    """A bad header is dropped (header_error), a bad payload CRC is flagged (crc_error), a well-framed
    request of an unknown type is skipped (length_error); the link keeps answering and CLEAR clears them."""
    top = LinkTop(LoopbackCore(FMT4), divisor=2)
    p = top.params
    bad_header = bytearray(p.command(link.STATUS))
    bad_header[4] ^= 0xFF
    bad_payload = bytearray(p.sample(np.array([1, 2, 3, 4])))
    bad_payload[-1] ^= 0x01
    unknown = encode_frame(0x3C, b"abc")
    # requests that get no reply (dropped/skipped) are sent glued to the next request
    reqs = [bytes(bad_header) + p.command(link.STATUS), bytes(bad_payload), unknown + p.command(link.STATUS),
            p.command(link.CLEAR)]
    run = simulate_link(top, reqs, idle_cycles=32)
    st1, z, st2, cleared = run.replies
    assert _status(st1).link_errors == ["header_error"]
    assert z.ftype == 0x81 and np.array_equal(p.z(z.payload), [1, 2, 3, 4])
    assert set(_status(st2).link_errors) == {"header_error", "crc_error", "length_error"}
    assert _status(cleared).link_errors == []


def _model_z_r(fmt, X, learn):
    res = model.run(fmt, X, learn=learn)
    return res.z, res.R


@pytest.mark.parametrize("lanes", [2, 5])
def test_unit_through_the_uart_is_bit_exact(lanes):
    """The real unit (M < d and M > d) behind the UART: z of every sample and the final R, read back over the
    link, equal the integer model's, with learn switched per sample; counters match."""
    fmt = FMT4
    unit = DecorrelationUnit(fmt, lanes=lanes)
    top = LinkTop(unit, divisor=2)
    p = top.params
    rng = np.random.default_rng(lanes)
    X = np.clip(rng.normal(0, 0.6, size=(14, 4)) @ (np.eye(4) + 0.5) * 4096, -32768, 32767).astype(np.int64)
    learn = np.array([t % 4 != 1 for t in range(14)])
    reqs = [p.command(link.RESET)] + [p.sample(X[t], bool(learn[t])) for t in range(14)]
    reqs += [p.command(link.STATUS), p.read_r(0, 16)]
    run = simulate_link(top, reqs, idle_cycles=unit.init_cycles + 8)
    Z_ref, R_ref = _model_z_r(fmt, X, learn)
    Z = np.array([p.z(f.payload) for f in run.replies[1:15]])
    assert np.array_equal(Z, Z_ref)
    assert np.array_equal(p.r_words_of(run.replies[16].payload).reshape(4, 4), R_ref)
    st = _status(run.replies[15])
    assert (st.samples, st.learned, st.lanes) == (14, int(learn.sum()), unit.multipliers)
    assert not st.link_errors


def test_unit_through_the_uart_in_verilator(tmp_path):
    """The same top level exported to Verilog, its serial line played by a Verilog testbench (60 samples)."""
    require(tool_missing("verilator", "apt-get install verilator"), "verilator")
    fmt = UnitFormat(size=6, width=16, frac=12, r_width=28, r_frac=20, shift=6)
    unit = DecorrelationUnit(fmt, lanes=3)
    top = LinkTop(unit, divisor=2)
    p = top.params
    X = np.clip(np.random.default_rng(3).normal(0, 0.5, size=(60, 6)) * 4096, -32768, 32767).astype(np.int64)
    reqs = [p.sample(X[t]) for t in range(60)] + [p.read_r(0, 36)]
    run = verilate_link(top, reqs, tmp_path / "v", idle_cycles=unit.init_cycles + 8)
    Z_ref, R_ref = _model_z_r(fmt, X, True)
    assert np.array_equal(np.array([p.z(f.payload) for f in run.replies[:60]]), Z_ref)
    assert np.array_equal(p.r_words_of(run.replies[60].payload).reshape(6, 6), R_ref)


# ------------------------------------------------------------------------------------------------ host driver
class EmulatedBoard:
    """A board in Python: link.py framing, the integer model as the unit; ``write``/``read`` like pyserial."""

    def __init__(self, fmt: UnitFormat, *, mute: bool = False, garble: bool = False):
        self.fmt, self.p = fmt, LinkParams.from_format(fmt)
        self.dec = FrameDecoder()
        self.out = bytearray()
        self.state = None
        self.R = model.identity(fmt)
        self.samples = self.learned = 0
        self.mute, self.garble = mute, garble

    def _status(self, ftype: int) -> bytes:
        pl = bytes([0]) + self.samples.to_bytes(4, "little") + self.learned.to_bytes(4, "little") + \
            self.fmt.size.to_bytes(2, "little") + bytes([self.fmt.width, self.fmt.r_width]) + \
            (2).to_bytes(2, "little") + (2 * self.p.sample_frame_bytes).to_bytes(2, "little") + bytes([1])
        return encode_frame(ftype | link.REPLY, pl)

    def write(self, data: bytes) -> int:
        if self.garble:
            self.out += b"\x00\x13\x37"
            return len(data)
        for f in self.dec.feed(data):
            if self.mute:
                continue
            if f.ftype == link.SAMPLE:
                x = self.p.z(f.payload[1:])[None, :]
                res = model.run(self.fmt, x, self.R, learn=bool(f.payload[0] & 1))
                self.R = res.R
                self.samples += 1
                self.learned += f.payload[0] & 1
                self.out += encode_frame(0x81, link._to_bytes(res.z[0], self.p.xb))
            elif f.ftype == link.WRITE_R:
                a = int.from_bytes(f.payload[:3], "little")
                w = self.p.r_words_of(f.payload[3:])
                flat = self.R.reshape(-1).copy()
                flat[a : a + len(w)] = w
                self.R = flat.reshape(self.R.shape)
                self.out += self._status(f.ftype)
            elif f.ftype == link.READ_R:
                a, n = int.from_bytes(f.payload[:3], "little"), int.from_bytes(f.payload[3:5], "little")
                self.out += encode_frame(0x83, link._to_bytes(self.R.reshape(-1)[a : a + n], self.p.rb))
            elif f.ftype == link.RESET:
                self.R, self.samples, self.learned = model.identity(self.fmt), 0, 0
                self.out += self._status(f.ftype)
            else:
                self.out += self._status(f.ftype)
        return len(data)

    def read(self, n: int) -> bytes:
        data, self.out = bytes(self.out[:n]), self.out[n:]
        return data


def test_host_driver_streams_and_loads_r():
    fmt = UnitFormat(size=5, width=16, frac=12, r_width=28, r_frac=20, shift=6)
    board = BoardLink(EmulatedBoard(fmt), timeout=0.5)
    assert (board.params.size, board.params.width, board.params.r_width) == (5, 16, 28)
    X = np.clip(np.random.default_rng(0).normal(0, 0.5, (40, 5)) * 4096, -32768, 32767).astype(np.int64)
    R0 = model.identity(fmt)
    R0[0, 1] = 1 << 17
    board.write_r(R0)
    learn = np.arange(40) % 5 != 0
    Z = board.stream(X, learn)
    ref = model.run(fmt, X, R0, learn=learn)
    assert np.array_equal(Z, ref.z)
    assert np.array_equal(board.read_r(), ref.R)
    st = board.reset()
    assert (st.samples, st.learned) == (0, 0)


def test_host_driver_reports_a_silent_board():
    fmt = UnitFormat(size=4, width=16, frac=12, r_width=28, r_frac=20, shift=6)
    with pytest.raises(DataError, match=r"did not answer STATUS within 0.2 s: sent a5 04 00 00 .*received nothing"):
        BoardLink(EmulatedBoard(fmt, mute=True), timeout=0.2)
    with pytest.raises(DataError, match=r"received 00 13 37"):
        BoardLink(EmulatedBoard(fmt, garble=True), timeout=0.2)


def test_stream_cli_errors(tmp_path, capsys):
    from analogdecorr.hdl.commands import main

    x = tmp_path / "x.npy"
    np.save(x, np.zeros((3, 4), dtype=np.int64))
    assert main(["stream", "--port", str(tmp_path / "ttyNONE"), str(x), "-o", str(tmp_path / "z.npy")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: cannot open serial port") and "\n" not in err
    assert not (tmp_path / "z.npy").exists()


def test_stream_cli_through_an_emulated_board(tmp_path, monkeypatch, capsys):
    from analogdecorr.hdl import host
    from analogdecorr.hdl.commands import main

    fmt = UnitFormat(size=4, width=16, frac=12, r_width=28, r_frac=20, shift=6)
    monkeypatch.setattr(host, "open_serial", lambda port, baud: EmulatedBoard(fmt))
    X = np.clip(np.random.default_rng(5).normal(0, 0.5, (25, 4)), -7.9, 7.9)
    np.save(tmp_path / "x.npy", X)
    code = main(["stream", "--port", "/dev/ttyFAKE", str(tmp_path / "x.npy"), "--frac", "12", "--reset",
                 "-o", str(tmp_path / "z.npy"), "--r-out", str(tmp_path / "r.npy")])
    assert code == 0, capsys.readouterr().err
    from analogdecorr.fixed.format import quantize

    Xq, _ = quantize(X, 16, 12)
    ref = model.run(fmt, Xq)
    assert np.array_equal(np.load(tmp_path / "z.npy"), ref.z)
    assert np.array_equal(np.load(tmp_path / "r.npy"), ref.R)
    assert "25 samples through the board" in capsys.readouterr().out
