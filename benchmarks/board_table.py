"""Board table: per board and d, the UART top level + unit built into a bitstream (hdl/BOARDS.md).

For every (board, d, M) it runs ``analogdecorr.hdl.build.build_board`` (Yosys + nextpnr + pack through the
YoWASP tools; a build whose plan is unchanged is reused from ``--out``) and prints one Markdown row: LUT/FF/DSP/
RAM use, Fmax at the board clock, cycles per sample, samples/s, the ratio to the limit Fmax·M/(3d²) and to the
UART's limit. Then, per board, the largest d: the memory estimate's answer, checked by building it (stepping
down by ``--step`` while the build does not fit).

    python benchmarks/board_table.py                                   # the default table (long: builds)
    python benchmarks/board_table.py --boards icebreaker --sizes 8,16 --lanes 4 --no-search
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analogdecorr.errors import AnalogDecorrError  # noqa: E402
from analogdecorr.fixed.format import UnitFormat  # noqa: E402
from analogdecorr.hdl.build import build_board, get_board, largest_fitting_size  # noqa: E402

DEFAULT_SIZES = {"icebreaker": "16,32", "ulx3s-85f": "64,256"}
DEFAULT_LANES = {"icebreaker": 2, "ulx3s-85f": 16}
HEADER = ("| board | d | M | LUT (LC) | FF | DSP | BRAM | SPRAM | clock MHz | Fmax MHz | timing | cycles/sample | "
          "samples/s | samples/s at Fmax | / limit Fmax·M/(3d²) | UART samples/s | unit / UART | build s |")


def row(r: dict) -> str:
    u = r["utilisation"]
    lut = f"{u['luts']} ({u['lcs']})" if "lcs" in u else str(u["luts"])
    return (f"| {r['board']} | {r['size']} | {r['multipliers']} | {lut} | {u['ffs']} | {u['dsp']}/{u['dsp_available']} "
            f"| {u['bram']}/{u['bram_available']} | {u.get('spram', '-')} | {r['clock_mhz']:g} | {r['fmax_mhz']:.1f} | "
            f"{'met' if r['meets_timing'] else 'FAIL'} | {r['cycles_per_sample']} | {r['samples_per_second']:.0f} | "
            f"{r['samples_per_second_at_fmax']:.0f} | {r['ratio_to_limit']:.2f} | "
            f"{r['uart_samples_per_second']:.0f} | {r['ratio_to_uart']:.1f} | "
            f"{r['seconds']:.0f}{' (cached)' if r['cached'] else ''} |")


def fmt_for(args: argparse.Namespace, d: int) -> UnitFormat:
    return UnitFormat(size=d, width=args.width, frac=args.frac, r_width=args.r_width, r_frac=args.r_frac,
                      shift=args.shift)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--boards", default="icebreaker,ulx3s-85f")
    ap.add_argument("--sizes", default=None, help="comma-separated d for every board (default per board)")
    ap.add_argument("--lanes", type=int, default=None, help="M for every board (default per board)")
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--frac", type=int, default=12)
    ap.add_argument("--r-width", type=int, default=28)
    ap.add_argument("--r-frac", type=int, default=20)
    ap.add_argument("--shift", type=int, default=10)
    ap.add_argument("--no-search", action="store_true", help="skip the largest-d builds")
    ap.add_argument("--step", type=int, default=4, help="d step of the largest-d search (default 4)")
    ap.add_argument("--out", type=Path, default=Path("build/boards"), help="build directories (cache)")
    ap.add_argument("--json", type=Path, default=None, help="also write every result to this JSON file")
    args = ap.parse_args()

    results = []
    print(HEADER)
    print("|" + " --- |" * (HEADER.count("|") - 1))

    def build(board: str, d: int, lanes: int) -> dict | None:
        out = args.out / f"{board}_d{d}_m{lanes}_w{args.width}_r{args.r_width}"
        t0 = time.perf_counter()
        try:
            r = build_board(board, fmt_for(args, d), lanes, out)
        except AnalogDecorrError as e:
            print(f"| {board} | {d} | {lanes} | did not build ({time.perf_counter() - t0:.0f} s): {e} |", flush=True)
            results.append({"board": board, "size": d, "lanes": lanes, "error": str(e)})
            return None
        print(row(r), flush=True)
        results.append(r)
        return r

    largest = {}
    for board in args.boards.split(","):
        get_board(board)
        lanes = args.lanes or DEFAULT_LANES.get(board, 4)
        for d in [int(s) for s in (args.sizes or DEFAULT_SIZES.get(board, "8,16")).split(",")]:
            build(board, d, lanes)
        if args.no_search:
            continue
        est = largest_fitting_size(get_board(board), fmt_for(args, 8), lanes)
        d = est
        while d >= 2:
            if build(board, d, lanes) is not None:
                break
            d -= args.step
        largest[board] = {"estimate": est, "built": d if d >= 2 else None, "lanes": lanes}
    for board, v in largest.items():
        print(f"\nlargest d on {board} (M = {v['lanes']}, W = {args.width}, W_R = {args.r_width}): estimate "
              f"{v['estimate']}, built {v['built']}")
    if args.json:
        args.json.write_text(json.dumps({"results": results, "largest": largest}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
