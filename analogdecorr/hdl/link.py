"""The host link's framing: bytes on the board's USB UART, shared by the host driver and the simulation tests.

Pure Python (no Amaranth, no pyserial), so the host driver (``host.py``), the gateware's decoder tests and the
board top level (``board.py``, which takes its constants from here) all speak one definition.

Every frame, in both directions::

    0xA5 | type | len_lo | len_hi | hcrc | payload (len bytes) | pcrc

``hcrc`` = CRC-8 (polynomial 0x07, init 0) of the three bytes type, len_lo, len_hi; ``pcrc`` = CRC-8 of the
payload. A frame whose header check fails is dropped by the receiver before it acts on it (a desynchronised
link hunts for the next 0xA5 whose header checks); a payload CRC failure is counted in the sticky status flags
(the board acts on payload bytes as they arrive, so a bad sample has been processed: the host sees the flag).

Host → board requests (board replies with ``type | 0x80``):

| type | request | payload | reply payload |
| --- | --- | --- | --- |
| 0x01 | SAMPLE | flags (bit 0 learn), d elements x_j (``xb`` bytes each) | d elements z_i (``xb`` bytes each) |
| 0x02 | WRITE_R | start address (3 bytes), then words (``rb`` bytes each) at consecutive addresses | status |
| 0x03 | READ_R | start address (3 bytes), count (2 bytes) | count words (``rb`` bytes each) |
| 0x04 | STATUS | none | status |
| 0x05 | CLEAR | none: clears overflow and the link's sticky error flags | status |
| 0x06 | RESET | none: R = I, mu = 0, LFSR = seed, counters = 0 (waits for the init sweep) | status |

Numbers are little-endian two's complement; R address = i·d + j. Non-SAMPLE requests wait until every earlier
sample's z has been sent, so replies arrive in request order. The status payload is ``STATUS_LEN`` bytes:
flags, samples (u32), learned (u32), d (u16), W, W_R, lanes (u16), rx FIFO bytes (u16), protocol version.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import DataError

SYNC = 0xA5
PROTOCOL_VERSION = 1
REPLY = 0x80

SAMPLE, WRITE_R, READ_R, STATUS, CLEAR, RESET = 0x01, 0x02, 0x03, 0x04, 0x05, 0x06
REQUEST_NAMES = {SAMPLE: "SAMPLE", WRITE_R: "WRITE_R", READ_R: "READ_R", STATUS: "STATUS", CLEAR: "CLEAR",
                 RESET: "RESET"}
ADDR_BYTES = 3
COUNT_BYTES = 2
MAX_PAYLOAD = 0xFFFF

#: Status flag bits (byte 0 of the status payload).
FLAG_BITS = ("busy", "overflow", "frame_error", "crc_error", "header_error", "rx_overrun", "length_error",
             "uart_error")
STATUS_LEN = 18


def crc8(data: bytes | bytearray | list[int], crc: int = 0) -> int:
    """CRC-8, polynomial x⁸ + x² + x + 1 (0x07), MSB first, no reflection, no final XOR; ``crc`` continues one."""
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def encode_frame(ftype: int, payload: bytes = b"") -> bytes:
    """One frame: sync, type, length, header CRC, payload, payload CRC."""
    if not 0 <= ftype <= 0xFF:
        raise ValueError(f"frame type {ftype} is not a byte")
    if len(payload) > MAX_PAYLOAD:
        raise DataError(f"frame payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}; split it")
    head = bytes([ftype, len(payload) & 0xFF, len(payload) >> 8])
    return bytes([SYNC]) + head + bytes([crc8(head)]) + bytes(payload) + bytes([crc8(payload)])


@dataclass
class Frame:
    """A received frame; ``crc_ok`` is False when the payload CRC failed (the header CRC always passed)."""

    ftype: int
    payload: bytes
    crc_ok: bool = True


class FrameDecoder:
    """Incremental receiver: ``feed(bytes)`` returns the complete frames; garbage and bad headers are skipped.

    ``skipped`` counts bytes dropped while hunting for a header that checks (desynchronisation evidence).
    """

    def __init__(self) -> None:
        self.buf = bytearray()
        self.skipped = 0

    def feed(self, data: bytes) -> list[Frame]:
        self.buf += data
        out: list[Frame] = []
        while True:
            start = self.buf.find(SYNC)
            if start < 0:
                self.skipped += len(self.buf)
                self.buf.clear()
                return out
            if start:
                self.skipped += start
                del self.buf[:start]
            if len(self.buf) < 5:
                return out
            head = bytes(self.buf[1:4])
            if crc8(head) != self.buf[4]:
                self.skipped += 1
                del self.buf[:1]
                continue
            n = head[1] | head[2] << 8
            if len(self.buf) < 6 + n:
                return out
            payload = bytes(self.buf[5 : 5 + n])
            out.append(Frame(head[0], payload, crc8(payload) == self.buf[5 + n]))
            del self.buf[: 6 + n]


@dataclass(frozen=True)
class Status:
    """The board's status reply."""

    flags: dict[str, bool]
    samples: int
    learned: int
    size: int
    width: int
    r_width: int
    lanes: int
    fifo_bytes: int
    version: int

    @property
    def link_errors(self) -> list[str]:
        """Names of the sticky link error flags that are set."""
        return [k for k in FLAG_BITS[3:] if self.flags[k]]


def _to_bytes(values: np.ndarray, nbytes: int) -> bytes:
    """Little-endian two's complement, ``nbytes`` per value."""
    v = np.asarray(values, dtype=np.int64) & ((1 << (8 * nbytes)) - 1)
    cols = [((v >> (8 * b)) & 0xFF).astype(np.uint8) for b in range(nbytes)]
    return np.stack(cols, axis=-1).tobytes()


def _from_bytes(data: bytes, nbytes: int) -> np.ndarray:
    """Inverse of ``_to_bytes`` (sign-extended from 8·nbytes bits)."""
    a = np.frombuffer(data, dtype=np.uint8).reshape(-1, nbytes).astype(np.int64)
    v = np.zeros(a.shape[0], dtype=np.int64)
    for b in range(nbytes):
        v |= a[:, b] << (8 * b)
    sign = 1 << (8 * nbytes - 1)
    return (v ^ sign) - sign


@dataclass(frozen=True)
class LinkParams:
    """The sizes the link needs from the unit's format: d, W, W_R, and the derived byte counts."""

    size: int
    width: int
    r_width: int

    @classmethod
    def from_format(cls, fmt: object) -> LinkParams:
        return cls(fmt.size, fmt.width, fmt.r_width)  # type: ignore[attr-defined]

    @property
    def xb(self) -> int:
        """Bytes per data element (x and z)."""
        return math.ceil(self.width / 8)

    @property
    def rb(self) -> int:
        """Bytes per R word."""
        return math.ceil(self.r_width / 8)

    @property
    def r_words(self) -> int:
        return self.size * self.size

    @property
    def sample_payload(self) -> int:
        return 1 + self.size * self.xb

    @property
    def z_payload(self) -> int:
        return self.size * self.xb

    @property
    def sample_frame_bytes(self) -> int:
        """Bytes on the wire per sample, host → board (6 bytes of framing)."""
        return self.sample_payload + 6

    @property
    def z_frame_bytes(self) -> int:
        """Bytes on the wire per sample, board → host."""
        return self.z_payload + 6

    @property
    def max_words_per_frame(self) -> int:
        """R words one WRITE_R or READ_R frame can carry."""
        return (MAX_PAYLOAD - ADDR_BYTES) // self.rb

    def uart_samples_per_second(self, baud: float) -> float:
        """The link's limit: baud/10 bytes/s (8N1) over the larger of the two directions' bytes per sample."""
        return baud / 10 / max(self.sample_frame_bytes, self.z_frame_bytes)

    # ---------------------------------------------------------------- requests
    def sample(self, x: np.ndarray, learn: bool = True) -> bytes:
        """SAMPLE frame for one input vector of d W-bit integers."""
        x = np.asarray(x, dtype=np.int64).reshape(-1)
        if x.shape[0] != self.size:
            raise DataError(f"a sample has {self.size} elements, got {x.shape[0]}")
        lo, hi = -(1 << (self.width - 1)), (1 << (self.width - 1)) - 1
        if x.min() < lo or x.max() > hi:
            raise DataError(f"x holds values outside signed {self.width}-bit [{lo}, {hi}]")
        return encode_frame(SAMPLE, bytes([1 if learn else 0]) + _to_bytes(x, self.xb))

    def samples(self, X: np.ndarray, learn: np.ndarray | bool = True) -> bytes:
        """SAMPLE frames for every row of X (n, d), learn a bool or a bool per row."""
        X = np.asarray(X, dtype=np.int64)
        flags = np.broadcast_to(np.asarray(learn, dtype=bool), (X.shape[0],))
        return b"".join(self.sample(X[t], bool(flags[t])) for t in range(X.shape[0]))

    def write_r(self, addr: int, words: np.ndarray) -> bytes:
        """WRITE_R frame: ``words`` (W_R-bit ints) at addresses addr, addr+1, ..."""
        words = np.asarray(words, dtype=np.int64).reshape(-1)
        if addr < 0 or addr + len(words) > self.r_words:
            raise DataError(f"R addresses {addr}..{addr + len(words) - 1} are outside 0..{self.r_words - 1}")
        return encode_frame(WRITE_R, addr.to_bytes(ADDR_BYTES, "little") + _to_bytes(words, self.rb))

    def read_r(self, addr: int, count: int) -> bytes:
        """READ_R frame for ``count`` words from ``addr``."""
        if addr < 0 or count < 1 or addr + count > self.r_words or count > self.max_words_per_frame:
            raise DataError(f"cannot read {count} R words from address {addr} (R has {self.r_words})")
        return encode_frame(READ_R, addr.to_bytes(ADDR_BYTES, "little") + count.to_bytes(COUNT_BYTES, "little"))

    @staticmethod
    def command(ftype: int) -> bytes:
        """STATUS, CLEAR or RESET frame (no payload)."""
        return encode_frame(ftype)

    # ---------------------------------------------------------------- replies
    def z(self, payload: bytes) -> np.ndarray:
        """The d z elements of a SAMPLE reply."""
        if len(payload) != self.z_payload:
            raise DataError(f"z reply has {len(payload)} bytes, expected {self.z_payload}")
        return _from_bytes(payload, self.xb)

    def r_words_of(self, payload: bytes) -> np.ndarray:
        """The words of a READ_R reply."""
        if len(payload) % self.rb:
            raise DataError(f"R reply of {len(payload)} bytes is not a whole number of {self.rb}-byte words")
        return _from_bytes(payload, self.rb)

    @staticmethod
    def status(payload: bytes) -> Status:
        """Decode a status payload."""
        if len(payload) != STATUS_LEN:
            raise DataError(f"status reply has {len(payload)} bytes, expected {STATUS_LEN}")
        flags = {name: bool(payload[0] >> bit & 1) for bit, name in enumerate(FLAG_BITS)}
        u = lambda a, b: int.from_bytes(payload[a:b], "little")  # noqa: E731
        return Status(flags, u(1, 5), u(5, 9), u(9, 11), payload[11], payload[12], u(13, 15), u(15, 17),
                      payload[17])
