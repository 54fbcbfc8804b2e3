"""The ``analogdecorr hdl`` command group: export, verify, report, compare.

Each subcommand prints a readable table, or with ``--json`` exactly one JSON object on stdout. Errors are
AnalogDecorrError subclasses; the top-level CLI prints them as one ``error: ...`` line (``main`` here does the
same for testing the group on its own).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..errors import AnalogDecorrError
from .format_flags import add_format_flags, format_from_args


def _json(obj: Any) -> None:
    print(json.dumps(obj, indent=None, sort_keys=False, default=str))


def _table(rows: list[list[Any]], header: list[str] | None = None) -> str:
    cells = [[str(c) for c in r] for r in ([header] if header else []) + rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(cells[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    if header:
        lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt_num(v: Any, digits: int = 4) -> str:
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return "-" if v is None else str(v)


# ------------------------------------------------------------------------------------------------ subcommands
def cmd_export(args: argparse.Namespace) -> int:
    from .export import export

    fmt = format_from_args(args)
    man = export(fmt, args.lanes, args.out, samples=args.samples, seed=args.seed)
    if args.json:
        _json({"out": str(args.out), **man})
        return 0
    f = man["format"]
    centre = f", centring 2^-{f['centre_shift']}" if f.get("centre_shift") else ""
    print(
        f"exported {man['module']} (d={f['size']}, M={man['lanes']} lanes, W={f['width']}, F={f['frac']}, "
        f"W_R={f['r_width']}, F_R={f['r_frac']}, s={f['shift']}, {f['rounding']}, {f.get('rule', 'offdiag')}"
        f"{centre}) to {args.out}"
    )
    v = man["vectors"]
    frozen = man.get("cycles_per_frozen_sample")
    print(
        _table(
            [
                ["multipliers M", man["multipliers"]],
                ["multiplies per sample 3d²", man["multiplies_per_sample"]],
                ["cycles per sample (learning)", man["cycles_per_sample"]],
                ["ideal 3d²/M", _fmt_num(man["ideal_cycles_per_sample"])],
                ["utilisation 3d²/(M·cycles)", _fmt_num(man["utilisation"])],
                *([["cycles per frozen sample", frozen]] if frozen is not None else []),
                ["latency (cycles)", man["latency"]],
                ["init sweep (cycles)", _fmt_num(man.get("init_cycles"))],
                ["storage (bits)", _fmt_num(man.get("storage_bits"))],
                [
                    "vectors",
                    f"{v['samples']} samples ({v['learning_samples']} learning), seed {args.seed}, "
                    f"{man['segments']['count']} checkpoints, expected overflow {int(v['overflow'])}",
                ],
            ]
        )
    )
    print(f"next: analogdecorr hdl verify {args.out}; analogdecorr hdl report {args.out}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from .verify import verify

    res = verify(args.dir, args.sim, jobs=args.jobs)
    if args.json:
        _json(res)
        return 0 if res["bit_exact"] else 1
    rows = []
    for sim, r in res["simulators"].items():
        fm = r["first_mismatch"]
        first = (
            "-"
            if fm is None
            else (
                f"{fm['kind']} sample {fm['sample']} word {fm['word']}: expected "
                f"{fm['expected']} got {fm['got']}"
            )
        )
        if r["timeout"]:
            first = "timeout (the unit stopped responding)"
        rows.append(
            [
                sim,
                "yes" if r["bit_exact"] else "NO",
                r.get("parts", 1),
                r["z_checked"],
                f"{r['r_checked']}/{r['r_expected']}",
                r["mismatches"],
                r.get("latency", "-"),
                _fmt_num(r.get("cycles_per_sample")),
                r["cycles"],
                f"{r['build_seconds']:.1f}{' (cached)' if r['cached_build'] else ''}",
                f"{r['run_seconds']:.1f}",
                first,
            ]
        )
    print(f"{res['export_dir']}: M={res['lanes']} lanes, {res['samples']} samples")
    print(
        _table(
            rows,
            [
                "simulator",
                "bit-exact",
                "parts",
                "z samples",
                "R words",
                "mismatches",
                "latency",
                "cycles/sample",
                "cycles",
                "build s",
                "run s",
                "first mismatch",
            ],
        )
    )
    return 0 if res["bit_exact"] else 1


def cmd_report(args: argparse.Namespace) -> int:
    from .report import report

    res = report(args.dir, args.families, pnr=not args.no_pnr, freq=args.freq).to_dict()
    if args.json:
        _json(res)
        return 0
    print(
        f"{res['export_dir']}: M={res['lanes']} lanes, d={res['format']['size']}, W={res['format']['width']}; "
        f"M={res['multipliers']} multipliers, 3d²={res['multiplies_per_sample']} multiplies/sample, "
        f"{_fmt_num(res['cycles_per_sample'])} cycles/sample, utilisation {_fmt_num(res['utilisation'])}"
    )
    rows = []
    for fam, r in res["families"].items():
        rows.append(
            [
                fam,
                r["luts"],
                r["ffs"],
                r["carry"],
                r["dsp"],
                "yes" if r["dsp_matches_multipliers"] else "NO",
                r["bram"],
                r.get("spram", 0),
                r["lutram"],
                f"{r['seconds']:.1f}{' (cached)' if r['cached'] else ''}",
            ]
        )
    print(_table(rows, ["family", "LUTs", "FFs", "carry", "DSPs", "DSPs = M", "BRAMs", "SPRAMs", "LUTRAM", "yosys s"]))
    _print_pnr(res)
    return 0


def _print_pnr(res: dict[str, Any]) -> None:
    """The place-and-route table (families that were placed and routed), or nothing."""
    pnr = {fam: r["pnr"] for fam, r in res["families"].items() if r.get("pnr")}
    if not pnr:
        return
    rows = []
    for fam, p in pnr.items():
        secs = f"{p['seconds']:.1f}{' (cached)' if p['cached'] else ''}"
        if not p["routed"]:
            rows.append([fam, f"{p['lcs']}/{p['lcs_available']}", f"{p['dsp']}/{p['dsp_available']}",
                         f"{p['bram']}/{p['bram_available']}", "-", "-", "-", secs, p["error"]])
            continue
        h = p.get("harness") or {}
        rows.append(
            [
                fam,
                f"{p['lcs']}/{p['lcs_available']}",
                f"{p['dsp']}/{p['dsp_available']}",
                f"{p['bram']}/{p['bram_available']}",
                f"{p['fmax_mhz']:.2f}",
                f"{p['samples_per_second'] / 1e6:.3g}" if p["samples_per_second"] else "-",
                f"{'yes' if p['meets_target'] else 'no'} ({p['target_mhz']:g} MHz)",
                secs,
                f"incl. I/O harness: {h.get('ffs', '?')} FFs, {h.get('luts', '?')} LUTs",
            ]
        )
    first = next(iter(pnr.values()))
    print(f"place and route: {res['nextpnr']}, {first['device']}")
    print(
        _table(
            rows,
            ["family", "LCs", "DSPs", "BRAMs", "Fmax MHz", "Msamples/s", "target met", "nextpnr s", "note"],
        )
    )


def cmd_compare(args: argparse.Namespace) -> int:
    from ..fixed.compare import compare

    res = compare(format_from_args(args), samples=args.samples, rho=args.rho, seed=args.seed)
    if args.json:
        _json(res)
        return 0
    keys = [
        "samples",
        "rho",
        "input_std",
        "input_corr",
        "residual_corr_float",
        "residual_corr_int",
        "max_abs_R_error",
        "max_abs_R_error_lsb",
        "max_abs_z_error_lsb",
        "R_float_diag_mean",
        "R_int_diag_mean",
        "overflow",
        "diverged",
    ]
    rows = [[k, _fmt_num(res[k])] for k in keys if k in res]
    if res.get("diverged_reasons"):
        rows.append(["diverged because", "; ".join(res["diverged_reasons"])])
    print(_table(rows, ["quantity", "value"]))
    return 0


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``hdl`` command group; each leaf sets ``func(args) -> exit code``."""
    hdl = subparsers.add_parser(
        "hdl",
        help="fixed-point decorrelation unit: export Verilog, verify, synthesize",
        description="Generate, verify and synthesize the fixed-point decorrelation unit.",
    )
    sub = hdl.add_subparsers(dest="hdl_command", required=True, metavar="{export,verify,report,compare}")

    p = sub.add_parser("export", help="write Verilog, test vectors, testbench and manifest to a directory")
    add_format_flags(p)
    p.add_argument(
        "--lanes",
        type=int,
        default=None,
        metavar="M",
        help="multipliers M (lanes; each handles one row of R per pass); default min(d, 8)",
    )
    p.add_argument("--samples", type=int, default=10_000, help="number of test vectors (default 10000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the test input stream (default 0)")
    p.add_argument(
        "-o",
        "--out",
        type=Path,
        default=Path("build/decor"),
        help="export directory (default build/decor); an earlier export there is replaced",
    )
    p.add_argument("--json", action="store_true", help="print the manifest as one JSON object")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser(
        "verify", help="run the exported testbench in Icarus Verilog and Verilator (bit-exact?)"
    )
    p.add_argument("dir", type=Path, help="export directory")
    p.add_argument(
        "--sim",
        default="iverilog,verilator",
        help="comma-separated simulators (default iverilog,verilator)",
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="simulator processes at once (default: CPU count; 1 = one continuous Icarus run)",
    )
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser(
        "report",
        help="Yosys resource counts (LUT, FF, DSP, BRAM) per FPGA family; nextpnr Fmax and throughput on iCE40",
    )
    p.add_argument("dir", type=Path, help="export directory")
    p.add_argument(
        "--families",
        default="ice40,ecp5,xilinx",
        help="comma-separated FPGA families (default ice40,ecp5,xilinx)",
    )
    p.add_argument(
        "--no-pnr",
        action="store_true",
        help="skip nextpnr-ice40 place and route (Fmax, throughput) of the iCE40 result",
    )
    p.add_argument(
        "--freq",
        type=float,
        default=48.0,
        help="nextpnr target clock in MHz; the achieved Fmax is reported either way (default 48)",
    )
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("compare", help="integer model against float on a correlated stream")
    add_format_flags(p)
    p.add_argument("--samples", type=int, default=40_000, help="stream length (default 40000)")
    p.add_argument("--rho", type=float, default=0.3, help="pairwise input correlation (default 0.3)")
    p.add_argument("--seed", type=int, default=0, help="seed of the input stream (default 0)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.set_defaults(func=cmd_compare)
    from .board_commands import add_board_commands  # hdl build / hdl stream (board builds, host link)
    add_board_commands(sub)
    return hdl


def main(argv: list[str] | None = None) -> int:
    """Run the ``hdl`` group alone (``argv`` with or without a leading ``hdl``); errors: one line, exit 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] != ["hdl"]:
        argv = ["hdl", *argv]
    parser = argparse.ArgumentParser(prog="analogdecorr")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except AnalogDecorrError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
