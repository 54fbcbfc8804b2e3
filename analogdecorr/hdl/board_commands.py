"""``analogdecorr hdl build`` (a bitstream for a board) and ``analogdecorr hdl stream`` (x.npy through a board).

Registered into the ``hdl`` group by ``commands.register`` through ``add_board_commands``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_write
from ..errors import DataError


def _fmt(v: Any, digits: int = 4) -> str:
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return "-" if v is None else str(v)


def cmd_build(args: argparse.Namespace) -> int:
    from .build import build_board
    from .format_flags import format_from_args

    fmt = format_from_args(args)
    lanes = args.lanes if args.lanes is not None else min(fmt.size, 8)
    res = build_board(args.board, fmt, lanes, args.out, baud=args.baud, core=args.core, seed=args.seed)
    if args.json:
        print(json.dumps(res, default=str))
        return 0
    u = res["utilisation"]
    print(f"{res['board']} ({res['device']}): d={res['size']}, W={res['width']}, W_R={res['r_width']}, "
          f"M={res['lanes']} lanes ({res['multipliers']} multipliers), core {res['core']} -> "
          f"{Path(args.out) / res['bitstream']}{' (cached)' if res['cached'] else ''}")
    if res["family"] == "ice40":
        used = (f"LCs {u['lcs']}/{u['lcs_available']} (LUTs {u['luts']}, FFs {u['ffs']}), DSPs {u['dsp']}/"
                f"{u['dsp_available']}, EBR {u['bram']}/{u['bram_available']}, SPRAM {u['spram']}/"
                f"{u['spram_available']}")
    else:
        used = (f"LUT4 {u['luts']}/{u['luts_available']}, FFs {u['ffs']}/{u['ffs_available']}, MULT18 "
                f"{u['dsp']}/{u['dsp_available']}, DP16KD {u['bram']}/{u['bram_available']}, LUTRAM "
                f"{u['lutram']}")
    print(f"  used: {used}")
    print(f"  clock {res['clock_mhz']:g} MHz, Fmax {_fmt(res['fmax_mhz'])} MHz "
          f"({'meets' if res['meets_timing'] else 'FAILS'} timing), {res['cycles_per_sample']} cycles/sample")
    print(f"  samples/s {_fmt(res['samples_per_second'])} at the board clock, "
          f"{_fmt(res['samples_per_second_at_fmax'])} at Fmax = {_fmt(res['ratio_to_limit'], 3)} x the limit "
          f"Fmax*M/(3d^2) = {_fmt(res['limit_samples_per_second'])}")
    print(f"  UART {res['baud']:g} baud: {_fmt(res['uart_samples_per_second'])} samples/s; the unit runs "
          f"{_fmt(res['ratio_to_uart'], 3)} x faster than the link can feed it")
    print(f"  {res['seconds']:.0f} s of Yosys + nextpnr")
    return 0


def _load_x(path: Path, width: int, frac: int | None) -> np.ndarray:
    try:
        X = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {path} as a .npy array ({exc})") from None
    if X.ndim != 2:
        raise DataError(f"{path}: x must be a 2-D array (samples, d), got shape {X.shape}")
    if np.issubdtype(X.dtype, np.floating):
        if frac is None:
            raise DataError(f"{path} holds floats: give --frac F to quantise them to W-bit integers with F "
                            "fraction bits, or pass integers")
        from ..fixed.format import quantize

        X, _ = quantize(X, width, frac)
    elif not np.issubdtype(X.dtype, np.integer):
        raise DataError(f"{path}: x must hold integers or floats, got {X.dtype}")
    return np.asarray(X, dtype=np.int64)


def _save(path: Path, arr: np.ndarray) -> None:
    """np.save to ``path`` atomically (nothing half-written)."""
    with atomic_write(path, "wb") as f:
        np.save(f, arr)


def cmd_stream(args: argparse.Namespace) -> int:
    from .host import BoardLink

    board = BoardLink(args.port, baud=args.baud, timeout=args.timeout)
    p = board.params
    X = _load_x(args.x, p.width, args.frac)
    if X.shape[1] != p.size:
        raise DataError(f"{args.x}: x has {X.shape[1]} columns but the board's unit has d = {p.size}")
    learn: np.ndarray | bool = not args.no_learn
    if args.learn is not None:
        learn = np.load(args.learn, allow_pickle=False).astype(bool).reshape(-1)
        if learn.shape[0] != X.shape[0]:
            raise DataError(f"{args.learn}: {learn.shape[0]} learn flags for {X.shape[0]} samples")
    if args.reset:
        board.reset()
    if args.r0 is not None:
        board.write_r(np.load(args.r0, allow_pickle=False))
    Z = board.stream(X, learn)
    _save(args.out, Z)
    st = board.status()
    if args.r_out is not None:
        _save(args.r_out, board.read_r())
    print(f"{X.shape[0]} samples through the board (d={p.size}, W={p.width}) -> {args.out}; "
          f"samples {st.samples}, learned {st.learned}, overflow {int(st.flags['overflow'])}")
    return 0


def add_board_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``build`` and ``stream`` to the ``hdl`` subcommands."""
    from .build import BOARDS, DEFAULT_BAUD
    from .format_flags import add_format_flags

    p = sub.add_parser("build", help="bitstream for a board (amaranth-boards + YoWASP): UART top level + unit")
    p.add_argument("--board", required=True, help=f"board: {', '.join(BOARDS)}")
    add_format_flags(p)
    p.add_argument("--lanes", type=int, default=None, metavar="M", help="multipliers M (default min(d, 8))")
    p.add_argument("--baud", type=float, default=DEFAULT_BAUD, help=f"UART baud rate (default {DEFAULT_BAUD})")
    p.add_argument("--core", default="unit", choices=("unit", "loopback"),
                   help="unit (default) or loopback: a link-only bitstream (z = x) to bring up the UART")
    p.add_argument("--seed", type=int, default=1, help="nextpnr placer seed (default 1)")
    p.add_argument("-o", "--out", type=Path, required=True, help="output directory (an earlier build is replaced)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("stream", help="stream x.npy through a board over its USB UART, write z.npy")
    p.add_argument("x", type=Path, help="input samples (n, d): W-bit integers, or floats with --frac")
    p.add_argument("-o", "--out", type=Path, required=True, help="output z.npy (int64, W-bit integers)")
    p.add_argument("--port", required=True, help="serial port, e.g. /dev/ttyUSB0")
    p.add_argument("--baud", type=float, default=DEFAULT_BAUD, help=f"baud rate (default {DEFAULT_BAUD})")
    p.add_argument("--frac", type=int, default=None, help="fraction bits F to quantise float input")
    p.add_argument("--no-learn", action="store_true", help="forward only: no R updates")
    p.add_argument("--learn", type=Path, default=None, help=".npy of one learn flag per sample")
    p.add_argument("--reset", action="store_true", help="reset the unit first (R = I, counters 0)")
    p.add_argument("--r0", type=Path, default=None, help=".npy of the d x d W_R-bit R to load first")
    p.add_argument("--r-out", type=Path, default=None, help="write the final R (.npy) read back from the board")
    p.add_argument("--timeout", type=float, default=2.0, help="seconds to wait for each reply (default 2)")
    p.set_defaults(func=cmd_stream)
