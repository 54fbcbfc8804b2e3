"""The UART gateware (rx/tx at several divisors, stop-bit errors) and the host link's framing (link.py)."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.sim import Simulator

from analogdecorr.errors import ConfigError, DataError
from analogdecorr.hdl import link
from analogdecorr.hdl.link import FrameDecoder, LinkParams, crc8, encode_frame
from analogdecorr.hdl.uart import UartRx, UartTx, uart_divisor


# ------------------------------------------------------------------------------------------------ framing
def test_crc8_is_the_standard_crc8():
    assert crc8(b"123456789") == 0xF4  # CRC-8 (poly 0x07, init 0) check value
    assert crc8(b"") == 0
    assert crc8(b"6789", crc8(b"12345")) == 0xF4  # continuable


def test_decoder_resynchronises_after_garbage_and_a_corrupt_header():
    good1 = encode_frame(0x81, bytes([1, 2, 0xA5, 4]))  # a sync byte inside the payload
    bad = bytearray(encode_frame(0x84, b"xyz"))
    bad[2] ^= 0x01  # length corrupted: the header CRC fails
    good2 = encode_frame(0x83, b"")
    dec = FrameDecoder()
    frames = []
    stream = b"\x00\xa5\x13" + good1 + bytes(bad) + good2
    for k in range(0, len(stream), 3):  # arrives in pieces
        frames += dec.feed(stream[k : k + 3])
    assert [(f.ftype, f.payload, f.crc_ok) for f in frames] == [(0x81, bytes([1, 2, 0xA5, 4]), True),
                                                                (0x83, b"", True)]
    assert dec.skipped > 0


def test_decoder_flags_a_payload_crc_error():
    frame = bytearray(encode_frame(0x81, b"\x10\x20"))
    frame[5] ^= 0x40
    (f,) = FrameDecoder().feed(bytes(frame))
    assert f.ftype == 0x81 and not f.crc_ok


@pytest.mark.parametrize("width", [8, 16, 18])
def test_sample_and_z_encoding_roundtrip(width):
    p = LinkParams(5, width, 28)
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    x = np.array([lo, -1, 0, 1, hi])
    (f,) = FrameDecoder().feed(p.sample(x, learn=False))
    assert f.ftype == link.SAMPLE and f.payload[0] == 0 and len(f.payload) == p.sample_payload
    assert np.array_equal(p.z(f.payload[1:]), x)
    words = np.array([-(1 << 27), -5, 0, (1 << 27) - 1])
    (f,) = FrameDecoder().feed(p.write_r(3, words))
    assert int.from_bytes(f.payload[:3], "little") == 3
    assert np.array_equal(p.r_words_of(f.payload[3:]), words)


def test_link_params_reject_bad_input():
    p = LinkParams(4, 16, 28)
    with pytest.raises(DataError, match="signed 16-bit"):
        p.sample(np.array([0, 0, 0, 1 << 15]))
    with pytest.raises(DataError, match="4 elements"):
        p.sample(np.zeros(3))
    with pytest.raises(DataError, match="outside 0..15"):
        p.write_r(14, np.zeros(3))
    assert p.uart_samples_per_second(1e6) == pytest.approx(1e5 / (1 + 8 + 6))


def test_status_decoding():
    payload = bytes([0b1000_0010]) + (7).to_bytes(4, "little") + (5).to_bytes(4, "little") + \
        (64).to_bytes(2, "little") + bytes([16, 28]) + (8).to_bytes(2, "little") + (512).to_bytes(2, "little") \
        + bytes([1])
    st = LinkParams.status(payload)
    assert st.flags["overflow"] and st.flags["uart_error"] and not st.flags["busy"]
    assert (st.samples, st.learned, st.size, st.width, st.r_width, st.lanes, st.fifo_bytes) == \
        (7, 5, 64, 16, 28, 8, 512)
    assert st.link_errors == ["uart_error"]


# ------------------------------------------------------------------------------------------------ UART
def test_uart_divisor():
    assert uart_divisor(12e6, 1e6) == 12
    assert uart_divisor(25e6, 115200) == 217
    with pytest.raises(ConfigError, match="too fast"):
        uart_divisor(12e6, 10e6)
    with pytest.raises(ConfigError, match="off by"):
        uart_divisor(12e6, 2.5e6)  # 12/2.5 = 4.8 -> 5: 4 % off


@pytest.mark.parametrize("divisor", [2, 3, 5])
def test_uart_tx_to_rx_loopback(divisor):
    """Bytes through UartTx's line into UartRx arrive unchanged, back to back, at any divisor >= 2."""
    m = Module()
    m.submodules.tx = tx = UartTx(divisor)
    m.submodules.rx = rx = UartRx(divisor)
    m.d.comb += rx.rx.eq(tx.tx)
    data = [0x00, 0xFF, 0xA5, 0x5A, 0x01, 0x80] + list(np.random.default_rng(divisor).integers(0, 256, 20))
    got: list[int] = []
    errors: list[int] = []

    async def send(ctx):
        for b in data:
            ctx.set(tx.data.payload, int(b))
            ctx.set(tx.data.valid, 1)
            await ctx.tick().until(tx.data.ready)
        ctx.set(tx.data.valid, 0)
        await ctx.tick().repeat(12 * divisor)

    async def receive(ctx):
        async for _clk, _rst, valid, payload, ferr in ctx.tick().sample(rx.data.valid, rx.data.payload,
                                                                          rx.frame_error):
            if valid:
                got.append(payload)
            if ferr:
                errors.append(1)

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(send)
    sim.add_testbench(receive, background=True)
    sim.run()
    assert got == [int(b) for b in data]
    assert not errors


def test_uart_rx_reports_a_missing_stop_bit_and_recovers():
    divisor = 4
    rx = UartRx(divisor)
    events: list[tuple[str, int]] = []

    async def drive(ctx):
        ctx.set(rx.rx, 1)
        await ctx.tick().repeat(8)
        for bits in ([0, 1, 0, 1, 0, 1, 0, 1, 0, 0], [0, 1, 1, 0, 0, 0, 0, 1, 0, 1]):  # bad stop, then 0x43
            for level in bits:
                ctx.set(rx.rx, level)
                await ctx.tick().repeat(divisor)
            ctx.set(rx.rx, 1)
            await ctx.tick().repeat(3 * divisor)

    async def watch(ctx):
        async for _clk, _rst, valid, payload, ferr in ctx.tick().sample(rx.data.valid, rx.data.payload,
                                                                          rx.frame_error):
            if valid:
                events.append(("byte", payload))
            if ferr:
                events.append(("frame_error", 0))

    sim = Simulator(rx)
    sim.add_clock(1e-6)
    sim.add_testbench(drive)
    sim.add_testbench(watch, background=True)
    sim.run()
    assert events == [("frame_error", 0), ("byte", 0x43)]
