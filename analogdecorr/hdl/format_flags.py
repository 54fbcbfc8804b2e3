"""The unit-format flags of the ``analogdecorr hdl`` subcommands, shared by commands.py and board_commands.py."""

from __future__ import annotations

import argparse
from typing import Any

# Defaults of the format flags: the README's d = 8, W = 16 unit.
FORMAT_DEFAULTS: dict[str, Any] = {
    "size": 8,
    "width": 16,
    "frac": 12,
    "r_width": 28,
    "r_frac": 20,
    "shift": 10,
    "rounding": "half_even",
    "rule": "offdiag",
    "centre_shift": 0,
}


def add_format_flags(p: argparse.ArgumentParser) -> None:
    """The unit-format flags (--size, --width, ... --centre-shift) shared by every hdl subcommand."""
    g = p.add_argument_group("fixed-point format (hdl/NUMERICS.md)")
    d = FORMAT_DEFAULTS
    g.add_argument("--size", type=int, default=d["size"], help=f"vector length d (default {d['size']})")
    g.add_argument(
        "--width", type=int, default=d["width"], help=f"data word bits W, 8..18 (default {d['width']})"
    )
    g.add_argument("--frac", type=int, default=d["frac"], help=f"data fraction bits F (default {d['frac']})")
    g.add_argument(
        "--r-width", type=int, default=d["r_width"], help=f"R master word bits W_R (default {d['r_width']})"
    )
    g.add_argument(
        "--r-frac", type=int, default=d["r_frac"], help=f"R fraction bits F_R (default {d['r_frac']})"
    )
    g.add_argument(
        "--shift", type=int, default=d["shift"], help=f"learning rate η = 2^-shift (default {d['shift']})"
    )
    g.add_argument(
        "--rounding",
        default=d["rounding"],
        help=f"trunc, half_up, half_even or stochastic (default {d['rounding']})",
    )
    g.add_argument(
        "--rule",
        default=d["rule"],
        help=f"update rule: offdiag (dR = -eta z (v - p)) or whiten (dR = -eta (z v^T - R)) (default {d['rule']})",
    )
    g.add_argument(
        "--centre-shift",
        type=int,
        default=d["centre_shift"],
        metavar="M",
        help="centring: subtract a running mean with momentum 2^-M before R (0 = off, 1..16; default 0)",
    )


def format_from_args(args: argparse.Namespace) -> Any:
    """The UnitFormat the format flags describe (FormatError naming a bad value)."""
    from ..fixed.format import UnitFormat

    return UnitFormat(
        size=args.size,
        width=args.width,
        frac=args.frac,
        r_width=args.r_width,
        r_frac=args.r_frac,
        shift=args.shift,
        rounding=args.rounding,
        rule=args.rule,
        centre_shift=args.centre_shift,
    )
