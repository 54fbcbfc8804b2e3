"""The ``analogdecorr cosim`` commands (``check``); registered by the main CLI, imports nothing heavy."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cosim", help="co-simulation of training with the FPGA unit: check a run against the RTL")
    csub = p.add_subparsers(dest="cosim_command", required=True)
    c = csub.add_parser(
        "check",
        help="replay the stream a layer's unit saw in training through the exported Verilog (Verilator)",
        description="Replay the first K samples that layer L's fixed-point decorrelator saw in a training run "
        "through the unit's Verilog and report bit-identity or the first differing sample and word.",
    )
    c.add_argument("source", type=Path, metavar="RUN_DIR_OR_CONFIG",
                   help="a run folder trained with --decor-numerics fixed, or a TOML config (trained until K "
                   "samples are recorded)")
    c.add_argument("--layer", type=int, default=0, help="layer index (default 0)")
    c.add_argument("--steps", type=int, default=10_000, help="samples to replay, K (default 10000)")
    c.add_argument("--lanes", type=int, default=None, help="multipliers of the exported unit (default: export's)")
    c.add_argument("--out", type=Path, default=None, help="export folder (default RUN/cosim/check_layerL)")
    c.add_argument("--json", action="store_true", help="print the verdict as JSON")
    c.set_defaults(func=cmd_check)


def cmd_check(args: argparse.Namespace) -> int:
    from .replay import check, format_report

    rep = check(args.source, layer=args.layer, steps=args.steps, lanes=args.lanes, out_dir=args.out)
    print(json.dumps(rep, indent=1) if args.json else format_report(rep))
    return 0 if rep["bit_exact"] else 1
