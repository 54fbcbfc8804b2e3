"""Host driver for a board running the UART top level (``board.py``): pyserial + the framing of ``link.py``.

``BoardLink(port)`` opens the serial port (or takes any object with ``write(bytes)`` and ``read(n)``), asks the
board for its status (which carries d, W, W_R, the lane count and its RX FIFO size, so the host needs no format
flags), and offers ``status``, ``reset``, ``clear``, ``write_r``, ``read_r`` and ``stream``. ``stream`` keeps as
many samples in flight as the board's FIFO holds (two), collecting z as it comes. Every wait has a deadline; a
board that does not answer is a DataError saying what was sent and what came back.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import DataError
from . import link
from .link import Frame, FrameDecoder, LinkParams, Status

DEFAULT_BAUD = 1_000_000


def _hex(data: bytes, limit: int = 24) -> str:
    if not data:
        return "nothing"
    s = " ".join(f"{b:02x}" for b in data[:limit])
    return s + (f" ... ({len(data)} bytes)" if len(data) > limit else "")


def open_serial(port: str, baud: float = DEFAULT_BAUD) -> Any:
    """A pyserial port with a short read timeout; DataError naming the port and how to find one."""
    try:
        import serial
    except ImportError:
        raise DataError("pyserial is not installed; install it with: pip install pyserial") from None
    try:
        return serial.Serial(port, int(baud), timeout=0.05, write_timeout=5)
    except (serial.SerialException, OSError, ValueError) as exc:
        raise DataError(f"cannot open serial port {port!r} ({exc}); is the board plugged in? list ports with: "
                        "python -m serial.tools.list_ports") from None


class BoardLink:
    """A connection to a board; ``transport`` is a port name or an object with write(bytes) and read(n)."""

    def __init__(self, transport: str | Any, *, baud: float = DEFAULT_BAUD, timeout: float = 2.0):
        self.io = open_serial(transport, baud) if isinstance(transport, str) else transport
        self.timeout = timeout
        self.decoder = FrameDecoder()
        self.received = bytearray()  # raw bytes of the current wait, for error messages
        self.frames: list[Frame] = []
        st = self._request(link.encode_frame(link.STATUS), link.STATUS | link.REPLY, "STATUS")
        self.info: Status = LinkParams.status(st.payload)
        if self.info.size < 2 or not 8 <= self.info.width <= 18:
            raise DataError(f"the board's status makes no sense (d = {self.info.size}, W = {self.info.width}); "
                            "is this the analogdecorr board top level at the right baud rate?")
        self.params = LinkParams(self.info.size, self.info.width, self.info.r_width)

    # ---------------------------------------------------------------- framing
    def _poll(self) -> None:
        data = self.io.read(4096)
        if data:
            self.received += data
            self.frames += self.decoder.feed(bytes(data))

    def _next_frame(self, what: str, sent: bytes, deadline: float) -> Frame:
        while not self.frames:
            if time.monotonic() > deadline:
                raise DataError(f"the board did not answer {what} within {self.timeout:g} s: sent {_hex(sent)}; "
                                f"received {_hex(bytes(self.received))}; check the port, the baud rate and "
                                "that the bitstream is loaded")
            self._poll()
        return self.frames.pop(0)

    def _expect(self, frame: Frame, ftype: int, what: str, sent: bytes) -> Frame:
        if not frame.crc_ok:
            raise DataError(f"{what}: the board's reply failed its CRC (sent {_hex(sent)}; received "
                            f"{_hex(bytes(self.received))}); the serial line is unreliable at this baud rate")
        if frame.ftype != ftype:
            detail = ""
            if frame.ftype == link.STATUS | link.REPLY and len(frame.payload) == link.STATUS_LEN:
                detail = f" (link errors: {', '.join(LinkParams.status(frame.payload).link_errors) or 'none'})"
            raise DataError(f"{what}: expected reply type {ftype:#04x}, got {frame.ftype:#04x}{detail}; sent "
                            f"{_hex(sent)}")
        return frame

    def _request(self, frame: bytes, ftype: int, what: str) -> Frame:
        self.received.clear()
        self.io.write(frame)
        return self._expect(self._next_frame(what, frame, time.monotonic() + self.timeout), ftype, what, frame)

    def _status_reply(self, ftype: int, what: str) -> Status:
        st = LinkParams.status(self._request(link.encode_frame(ftype), ftype | link.REPLY, what).payload)
        self._check_link(st, what)
        return st

    @staticmethod
    def _check_link(st: Status, what: str) -> None:
        if st.link_errors:
            raise DataError(f"{what}: the board reports link errors {', '.join(st.link_errors)}; send CLEAR "
                            "(analogdecorr hdl stream --reset) and retry at a lower baud rate")

    # ---------------------------------------------------------------- commands
    def status(self) -> Status:
        return self._status_reply(link.STATUS, "STATUS")

    def reset(self) -> Status:
        """R = I, mu = 0, LFSR = seed, counters and flags 0."""
        return self._status_reply(link.RESET, "RESET")

    def clear(self) -> Status:
        """Clear overflow and the link's sticky error flags."""
        return self._status_reply(link.CLEAR, "CLEAR")

    def write_r(self, R: np.ndarray) -> Status:
        """Load R (d × d W_R-bit integers)."""
        p = self.params
        words = np.asarray(R, dtype=np.int64).reshape(-1)
        if words.shape[0] != p.r_words:
            raise DataError(f"R must be {p.size} × {p.size} for this board, got {np.asarray(R).shape}")
        st = None
        for a in range(0, p.r_words, p.max_words_per_frame):
            chunk = words[a : a + p.max_words_per_frame]
            st = LinkParams.status(self._request(p.write_r(a, chunk), link.WRITE_R | link.REPLY, "WRITE_R").payload)
            self._check_link(st, "WRITE_R")
        assert st is not None
        return st

    def read_r(self) -> np.ndarray:
        """R as a d × d int64 array."""
        p = self.params
        out = []
        for a in range(0, p.r_words, p.max_words_per_frame):
            n = min(p.max_words_per_frame, p.r_words - a)
            out.append(p.r_words_of(self._request(p.read_r(a, n), link.READ_R | link.REPLY, "READ_R").payload))
        return np.concatenate(out).reshape(p.size, p.size)

    def stream(self, X: np.ndarray, learn: np.ndarray | bool = True,
               progress: Callable[[int], None] | None = None) -> np.ndarray:
        """z for every row of X (n, d) W-bit ints, ``learn`` a bool or one per row; two samples in flight."""
        p = self.params
        X = np.asarray(X, dtype=np.int64)
        if X.ndim != 2 or X.shape[1] != p.size:
            raise DataError(f"x must be (n, {p.size}) for this board (d = {p.size}), got shape {X.shape}")
        flags = np.broadcast_to(np.asarray(learn, dtype=bool), (X.shape[0],))
        window = max(1, self.info.fifo_bytes // p.sample_frame_bytes)
        Z = np.empty_like(X)
        sent = got = 0
        self.received.clear()
        last_sent = b""
        deadline = time.monotonic() + self.timeout
        while got < X.shape[0]:
            while sent < X.shape[0] and sent - got < window:
                last_sent = p.sample(X[sent], bool(flags[sent]))
                self.io.write(last_sent)
                sent += 1
            if not self.frames:
                self._poll()
            if self.frames:
                f = self._expect(self.frames.pop(0), link.SAMPLE | link.REPLY, f"sample {got}", last_sent)
                Z[got] = p.z(f.payload)
                got += 1
                self.received.clear()
                deadline = time.monotonic() + self.timeout
                if progress:
                    progress(got)
            elif time.monotonic() > deadline:
                raise DataError(f"the board stopped answering at sample {got} of {X.shape[0]} (no z within "
                                f"{self.timeout:g} s): last sent {_hex(last_sent)}; received "
                                f"{_hex(bytes(self.received))}")
        self._check_link(self.status(), "stream")
        return Z
