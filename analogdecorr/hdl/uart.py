"""UART receiver and transmitter (8 data bits, no parity, 1 stop bit) with a parameterised clock divisor.

``divisor`` = clock cycles per bit (clock / baud, rounded); anything >= 2 works, so simulations can run the
serial line at 2-4 cycles per bit while a board at 12 MHz uses e.g. 12 (1 Mbaud). The receiver has a
two-flop synchroniser, finds the start bit's falling edge, samples each bit in its middle and checks the stop
bit; its byte stream cannot be stalled (``always_ready``): the consumer (a FIFO) must take every byte.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

from ..errors import ConfigError


def uart_divisor(clock_hz: float, baud: float, tolerance: float = 0.02) -> int:
    """Clock cycles per bit for ``baud`` at ``clock_hz``; ConfigError if the rounding error exceeds 2 %."""
    div = round(clock_hz / baud)
    if div < 2:
        raise ConfigError(f"baud {baud:g} is too fast for a {clock_hz / 1e6:g} MHz clock (needs >= 2 cycles "
                          f"per bit); use baud <= {clock_hz / 2:g}")
    err = abs(clock_hz / div - baud) / baud
    if err > tolerance:
        raise ConfigError(f"baud {baud:g} at {clock_hz / 1e6:g} MHz is off by {err:.1%} (divisor {div}); pick a "
                          f"baud near {clock_hz / div:g} or {clock_hz / (div + 1):g}")
    return div


class UartRx(wiring.Component):
    """Serial line ``rx`` in, bytes out on ``data`` (one-cycle valid); ``frame_error`` pulses on a bad stop bit."""

    def __init__(self, divisor: int):
        if divisor < 2:
            raise ConfigError(f"UART divisor {divisor} < 2 cycles per bit")
        self.divisor = divisor
        super().__init__({
            "rx": In(1, init=1),
            "data": Out(stream.Signature(8, always_ready=True)),
            "frame_error": Out(1),
        })

    def elaborate(self, platform: object) -> Module:
        m = Module()
        div = self.divisor
        line = Signal(init=1)
        m.submodules.sync_rx = FFSynchronizer(self.rx, line, init=1)
        timer = Signal(range(div + 1))
        bit = Signal(range(10))
        shreg = Signal(8)
        m.d.sync += [self.data.valid.eq(0), self.frame_error.eq(0)]
        with m.FSM():
            with m.State("IDLE"):
                with m.If(~line):
                    m.d.sync += [timer.eq(div // 2 - 1 if div >= 2 else 0), bit.eq(0)]
                    m.next = "START"
            with m.State("START"):  # wait to the middle of the start bit, check it is still low
                with m.If(timer == 0):
                    with m.If(line):
                        m.next = "IDLE"  # a glitch, not a start bit
                    with m.Else():
                        m.d.sync += timer.eq(div - 1)
                        m.next = "DATA"
                with m.Else():
                    m.d.sync += timer.eq(timer - 1)
            with m.State("DATA"):
                with m.If(timer == 0):
                    m.d.sync += [shreg.eq((line << 7) | (shreg >> 1)), bit.eq(bit + 1), timer.eq(div - 1)]
                    with m.If(bit == 7):
                        m.next = "STOP"
                with m.Else():
                    m.d.sync += timer.eq(timer - 1)
            with m.State("STOP"):
                with m.If(timer == 0):
                    with m.If(line):
                        m.d.sync += [self.data.payload.eq(shreg), self.data.valid.eq(1)]
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += self.frame_error.eq(1)
                        m.next = "BREAK"
                with m.Else():
                    m.d.sync += timer.eq(timer - 1)
            with m.State("BREAK"):  # wait for the line to return high before hunting for a start bit
                with m.If(line):
                    m.next = "IDLE"
        return m


class UartTx(wiring.Component):
    """Bytes in on ``data`` (valid/ready), serial line ``tx`` out (idle high)."""

    def __init__(self, divisor: int):
        if divisor < 2:
            raise ConfigError(f"UART divisor {divisor} < 2 cycles per bit")
        self.divisor = divisor
        super().__init__({"data": In(stream.Signature(8)), "tx": Out(1, init=1)})

    def elaborate(self, platform: object) -> Module:
        m = Module()
        div = self.divisor
        timer = Signal(range(div))
        bits = Signal(range(11))
        shreg = Signal(10, init=0x3FF)  # stop, 8 data LSB first, start: shifted out LSB first
        m.d.comb += [self.tx.eq(shreg[0]), self.data.ready.eq(bits == 0)]
        with m.If(bits == 0):
            with m.If(self.data.valid):
                m.d.sync += [shreg.eq((1 << 9) | (self.data.payload << 1)), bits.eq(10), timer.eq(div - 1)]
        with m.Elif(timer == 0):
            m.d.sync += [shreg.eq((1 << 9) | (shreg >> 1)), bits.eq(bits - 1), timer.eq(div - 1)]
        with m.Else():
            m.d.sync += timer.eq(timer - 1)
        return m
