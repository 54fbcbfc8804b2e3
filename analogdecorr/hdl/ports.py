"""The decorrelation unit's port contract (plan/UNIT_V2.md "Ports"): stream payloads and the control signature.

``DecorrelationUnit(fmt, lanes=M)`` has exactly three interface members; everything a testbench or a board top
level needs to connect to it is defined here, so they can be built without elaborating the unit.

- ``x``: ``In(stream.Signature(XPayload(W)))``: one element of a sample per beat, element j = 0..d−1;
  ``last`` marks element d−1; ``learn`` is sampled on element 0 (1: update R and mu after this sample).
- ``z``: ``Out(stream.Signature(ZPayload(W)))``: element i = 0..d−1 of z per beat, ``last`` on i = d−1.
- ``ctl``: ``In(Control.Signature(fmt))``. ``Control.Signature`` (and ``RPort.Signature`` inside it) is written
  from the host's view (the host drives ``addr``/``we``/``re``/``reset``...), so the unit takes it ``In``.

R port protocol: one command per cycle, sampled while ``busy`` = 0 (ignored while busy). Index a = i·d + j;
a ≥ d² is ignored. A write lands a few cycles later (before any later sample starts); a read returns
``rdata`` with ``rvalid`` = 1 exactly ``DecorrelationUnit.r_read_latency`` cycles after the command, in command
order, and ``rdata`` holds until the next read returns. ``reset`` (one-cycle pulse) restores R = I, mu = 0,
LFSR = seed and clears overflow, frame_error and the counters via the init sweep (``busy`` = 1 meanwhile).

Flattened Verilog ports of ``amaranth.back.verilog.convert(unit, name="decor_unit", emit_src=False)``
(tests/test_hdl_sim.py asserts this table against the converted text; W = data width, W_R = R width,
A = ⌈log₂ d²⌉):

=====================  =========  ==========  ==========================================================
Verilog port           direction  bits        meaning
=====================  =========  ==========  ==========================================================
``clk``, ``rst``       input      1           clock; synchronous reset (same effect as ``ctl__reset``)
``x__payload``         input      W + 2       [W−1:0] data (signed), [W] last, [W+1] learn
``x__valid``           input      1
``x__ready``           output     1
``z__payload``         output     W + 1       [W−1:0] data (signed), [W] last
``z__valid``           output     1
``z__ready``           input      1
``ctl__r__addr``       input      A           R index i·d + j
``ctl__r__we``         input      1           write ``ctl__r__wdata`` to R[i, j] (while busy = 0)
``ctl__r__wdata``      input      W_R         signed R word (F_R fraction bits)
``ctl__r__re``         input      1           read R[i, j] (while busy = 0)
``ctl__r__rdata``      output     W_R         signed R word, valid with ``ctl__r__rvalid``
``ctl__r__rvalid``     output     1           one cycle per read, r_read_latency cycles after ``re``
``ctl__reset``         input      1           pulse: R = I, mu = 0, LFSR = seed, flags and counters 0
``ctl__clear_overflow`` input     1           pulse: clear the sticky overflow flag
``ctl__busy``          output     1           init sweep, or x elements taken whose sample is not finished
``ctl__overflow``      output     1           sticky: some word saturated (xc, rw, z, p, v, e or r)
``ctl__frame_error``   output     1           sticky: an x ``last`` disagreed with the unit's element count
``ctl__samples``       output     32          samples completed since reset (wraps)
``ctl__learned``       output     32          of those, samples with learn = 1
=====================  =========  ==========  ==========================================================
"""

from __future__ import annotations

from amaranth.hdl import signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

#: Bits of the ``samples`` / ``learned`` counters.
COUNTER_BITS = 32


def XPayload(width: int) -> data.StructLayout:  # noqa: N802 (a layout constructor, named like a type)
    """x element: ``data`` signed(W) in the low bits, then ``last``, then ``learn``."""
    return data.StructLayout({"data": signed(width), "last": 1, "learn": 1})


def ZPayload(width: int) -> data.StructLayout:  # noqa: N802
    """z element: ``data`` signed(W) in the low bits, then ``last``."""
    return data.StructLayout({"data": signed(width), "last": 1})


def r_addr_width(size: int) -> int:
    """Bits of the R index i·d + j: ⌈log₂ d²⌉ (at least 1)."""
    return max(1, (size * size - 1).bit_length())


class RPort:
    """Namespace of the R load/readback port's signature (host's view)."""

    class Signature(wiring.Signature):
        """R load/readback from the host's view: ``addr``, ``we``, ``wdata``, ``re`` out; ``rdata``, ``rvalid`` in."""

        def __init__(self, *, addr_width: int, data_width: int):
            if addr_width < 1 or data_width < 1:
                raise ValueError(f"RPort needs positive widths, got addr_width={addr_width}, "
                                 f"data_width={data_width}")
            self._addr_width = addr_width
            self._data_width = data_width
            super().__init__({
                "addr": Out(addr_width),
                "we": Out(1),
                "wdata": Out(signed(data_width)),
                "re": Out(1),
                "rdata": In(signed(data_width)),
                "rvalid": In(1),
            })

        @property
        def addr_width(self) -> int:
            return self._addr_width

        @property
        def data_width(self) -> int:
            return self._data_width

        def __eq__(self, other: object) -> bool:
            return (type(self) is type(other) and self.addr_width == other.addr_width
                    and self.data_width == other.data_width)

        def __repr__(self) -> str:
            return f"RPort.Signature(addr_width={self.addr_width}, data_width={self.data_width})"


class Control:
    """Namespace of the unit's control signature (host's view)."""

    class Signature(wiring.Signature):
        """R port, reset and clear_overflow pulses out; busy, overflow, frame_error and counters in.

        Built from a ``UnitFormat`` (only ``size`` and ``r_width`` matter) or from ``size=``/``r_width=``.
        """

        def __init__(self, fmt: object = None, *, size: int | None = None, r_width: int | None = None):
            if fmt is not None:
                size, r_width = fmt.size, fmt.r_width
            if size is None or r_width is None:
                raise TypeError("Control.Signature needs a UnitFormat or size= and r_width=")
            self._size = int(size)
            self._r_width = int(r_width)
            super().__init__({
                "r": Out(RPort.Signature(addr_width=r_addr_width(self._size), data_width=self._r_width)),
                "reset": Out(1),
                "clear_overflow": Out(1),
                "busy": In(1),
                "overflow": In(1),
                "frame_error": In(1),
                "samples": In(COUNTER_BITS),
                "learned": In(COUNTER_BITS),
            })

        @property
        def size(self) -> int:
            return self._size

        @property
        def r_width(self) -> int:
            return self._r_width

        def __eq__(self, other: object) -> bool:
            return type(self) is type(other) and self.size == other.size and self.r_width == other.r_width

        def __repr__(self) -> str:
            return f"Control.Signature(size={self.size}, r_width={self.r_width})"


def verilog_ports(width: int, r_width: int, size: int) -> dict[str, tuple[str, int]]:
    """The table above as data: Verilog port name → (direction, bits)."""
    a = r_addr_width(size)
    return {
        "clk": ("input", 1), "rst": ("input", 1),
        "x__payload": ("input", width + 2), "x__valid": ("input", 1), "x__ready": ("output", 1),
        "z__payload": ("output", width + 1), "z__valid": ("output", 1), "z__ready": ("input", 1),
        "ctl__r__addr": ("input", a), "ctl__r__we": ("input", 1), "ctl__r__wdata": ("input", r_width),
        "ctl__r__re": ("input", 1), "ctl__r__rdata": ("output", r_width), "ctl__r__rvalid": ("output", 1),
        "ctl__reset": ("input", 1), "ctl__clear_overflow": ("input", 1),
        "ctl__busy": ("output", 1), "ctl__overflow": ("output", 1), "ctl__frame_error": ("output", 1),
        "ctl__samples": ("output", COUNTER_BITS), "ctl__learned": ("output", COUNTER_BITS),
    }


def unit_signature(fmt: object) -> wiring.Signature:
    """The unit's signature: x in, z out, ctl (the host's control signature, taken In)."""
    return wiring.Signature({
        "x": In(stream.Signature(XPayload(fmt.width))),
        "z": Out(stream.Signature(ZPayload(fmt.width))),
        "ctl": In(Control.Signature(fmt)),
    })

