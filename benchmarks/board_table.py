"""Board table: per board, format and d, the UART top level + unit built into a bitstream (hdl/BOARDS.md).

For every row (board, d, M, W_R, F_R) it runs ``analogdecorr.hdl.build.build_board`` (Yosys + nextpnr + pack
through the YoWASP tools, one build at a time; a build whose plan is unchanged is reused from ``--out``) and
writes one Markdown row: LUT/FF/DSP/RAM use, Fmax at the board clock, cycles per sample, samples/s, the ratio to
the limit Fmax·M/(3d²) and to the UART's limit. Then, per board and search format, the largest d: the fit
check's answer (``largest_fitting_size``) built to confirm it (stepping down by ``--step`` while the build does
not fit or route), and the fit check's refusal of the next d up (its one-line error, naming what runs out).

The table (Markdown, pasted verbatim into hdl/BOARDS.md) and every result (JSON) are rewritten after each
build into ``--md`` and ``--json`` (default ``<out>/board_table.md`` / ``.json``).

    python benchmarks/board_table.py                       # the published table (long: 11 builds, cached)
    python benchmarks/board_table.py --fit-only            # only the fit check's largest d (no tools, seconds)
    python benchmarks/board_table.py --cached-only         # the table from the builds already in --out
    python benchmarks/board_table.py --boards icebreaker --sizes 8,16 --lanes 4 --no-search
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from analogdecorr.errors import AnalogDecorrError, ConfigError  # noqa: E402
from analogdecorr.fixed.format import UnitFormat  # noqa: E402
from analogdecorr.hdl.build import (  # noqa: E402
    build_board,
    check_fit,
    get_board,
    largest_fitting_size,
    memory_estimate,
)


@dataclass(frozen=True)
class Spec:
    """One build: d, M lanes and the R word (W_R, F_R); W, F and s are the script's flags."""

    size: int
    lanes: int
    r_width: int
    r_frac: int


#: The published rows per board: the sizes a researcher asks for, in the R format that lets d = 64 fit.
ROWS: dict[str, list[Spec]] = {
    "icebreaker": [Spec(16, 4, 20, 16), Spec(32, 4, 20, 16), Spec(64, 4, 20, 16), Spec(64, 2, 24, 20),
                   Spec(16, 2, 28, 20), Spec(32, 2, 28, 20)],
    "ulx3s-85f": [Spec(64, 16, 28, 20)],
}
#: Largest-d searches per board: (M, W_R, F_R); d comes from the fit check.
SEARCHES: dict[str, list[tuple[int, int, int]]] = {
    "icebreaker": [(4, 20, 16), (2, 20, 16), (1, 20, 16), (2, 24, 20), (2, 28, 20)],
    "ulx3s-85f": [(16, 28, 20)],
}
DEFAULT_LANES = {"icebreaker": 4, "ulx3s-85f": 16}
HEADER = ("| board | d | M | W_R | LUT (LC) | FF | DSP | BRAM | SPRAM | clock MHz | Fmax MHz | timing | "
          "cycles/sample | samples/s | samples/s at Fmax | / limit Fmax·M/(3d²) | UART samples/s | unit / UART | "
          "build s |")


def row(r: dict) -> str:
    """One Markdown row of the table from a ``build_board`` result."""
    u = r["utilisation"]
    lut = f"{u['luts']} ({u['lcs']})" if "lcs" in u else str(u["luts"])
    spram = f"{u['spram']}/{u['spram_available']}" if "spram" in u else "-"
    return (f"| {r['board']} | {r['size']} | {r['multipliers']} | {r.get('r_width', '-')} | {lut} | {u['ffs']} | "
            f"{u['dsp']}/{u['dsp_available']} | {u['bram']}/{u['bram_available']} | {spram} | "
            f"{r['clock_mhz']:g} | {r['fmax_mhz']:.1f} | {'met' if r['meets_timing'] else 'FAIL'} | "
            f"{r['cycles_per_sample']} | {r['samples_per_second']:.0f} | {r['samples_per_second_at_fmax']:.0f} | "
            f"{r['ratio_to_limit']:.2f} | {r['uart_samples_per_second']:.0f} | {r['ratio_to_uart']:.1f} | "
            f"{r['seconds']:.0f}{' (cached)' if r['cached'] else ''} |")


def failed_row(board: str, spec: Spec, seconds: float, error: str) -> str:
    """A row for a build that did not fit, route or run, with the tools' error."""
    cells = [board, str(spec.size), str(spec.lanes), str(spec.r_width), f"did not build ({seconds:.0f} s): {error}"]
    return "| " + " | ".join(cells) + " |" * (HEADER.count("|") - len(cells))


def _write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temp file + os.replace (never half-written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class Table:
    """The rows, searches and results so far; rewrites the Markdown and JSON files after every change."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.lines: list[str] = [HEADER, "|" + " --- |" * (HEADER.count("|") - 1)]
        self.results: list[dict] = []
        self.largest: list[dict] = []
        self.done: dict[tuple[str, Spec], dict | None] = {}

    def fmt(self, spec: Spec) -> UnitFormat:
        a = self.args
        return UnitFormat(size=spec.size, width=a.width, frac=a.frac, r_width=spec.r_width, r_frac=spec.r_frac,
                          shift=a.shift)

    def build(self, board: str, spec: Spec) -> dict | None:
        """Build (or reuse) one row; None if it did not fit/route. Each (board, spec) is built once per run."""
        if (board, spec) in self.done:
            return self.done[board, spec]
        out = self.args.out / f"{board}_d{spec.size}_m{spec.lanes}_w{self.args.width}_r{spec.r_width}_rf{spec.r_frac}"
        t0 = time.perf_counter()
        try:
            r: dict | None = build_board(board, self.fmt(spec), spec.lanes, out, cached_only=self.args.cached_only)
        except AnalogDecorrError as e:
            line = failed_row(board, spec, time.perf_counter() - t0, str(e))
            self.results.append({"board": board, "size": spec.size, "lanes": spec.lanes, "r_width": spec.r_width,
                                 "r_frac": spec.r_frac, "error": str(e)})
            r = None
        else:
            line = row(r)
            self.results.append(r)
        print(line, flush=True)
        self.lines.append(line)
        self.done[board, spec] = r
        self.save()
        return r

    def search(self, board: str, lanes: int, r_width: int, r_frac: int) -> None:
        """The fit check's largest d, built (stepping down while it fails), and the refusal of the next d up."""
        b = get_board(board)
        fmt = self.fmt(Spec(8, lanes, r_width, r_frac))
        est = largest_fitting_size(b, fmt, lanes)
        try:
            check_fit(b, replace(fmt, size=est + 1), lanes)
            refusal = f"d = {est + 1} accepted (?)"
        except ConfigError as e:
            refusal = f"error: {e}"
        over = memory_estimate(b, replace(fmt, size=est + 1), lanes)
        built = None
        if not self.args.fit_only:
            d = est
            while d >= 2 and (d == est or not self.args.cached_only):
                if self.build(board, Spec(d, lanes, r_width, r_frac)) is not None:
                    built = d
                    break
                d -= self.args.step
        self.largest.append({"board": board, "lanes": lanes, "width": self.args.width, "r_width": r_width,
                             "r_frac": r_frac, "fit_check": est, "built": built, "next_refused": refusal,
                             "next_estimate": over, "at_fit_check": memory_estimate(b, replace(fmt, size=est),
                                                                                     lanes)})
        self.save()

    def markdown(self) -> str:
        a = self.args
        head = f"W = {a.width}, F = {a.frac}, s = {a.shift}, offdiag, half_even; columns as in hdl/BOARDS.md."
        return "\n".join([head, "", *self.lines, "", *self.largest_lines()]) + "\n"

    def largest_lines(self) -> list[str]:
        """One Markdown bullet per search: the fit check's d, what was built, the refusal of d + 1."""
        a = self.args
        text = []
        for v in self.largest:
            e = v["at_fit_check"]
            spram = f", {e['spram_used']}/{e['spram_blocks']} SPRAM" if e["spram_blocks"] else ""
            built = ("not built (--fit-only)" if a.fit_only else
                     f"built: d = {v['built']}" if v["built"] == v["fit_check"] else
                     f"built only d = {v['built']} (the fit check's d did not build)")
            text.append(
                f"- largest d on {v['board']} (M = {v['lanes']}, W = {v['width']}, W_R = {v['r_width']}, "
                f"F_R = {v['r_frac']}): fit check {v['fit_check']} ({e['bram_used']}/{e['bram_blocks']} block "
                f"RAMs{spram}); {built}; d = {v['fit_check'] + 1}: "
                f"`{v['next_refused']}`")
        return text

    def save(self) -> None:
        _write(self.args.md, self.markdown())
        _write(self.args.json, json.dumps({"results": self.results, "largest": self.largest}, indent=1,
                                          default=str) + "\n")


def _specs(args: argparse.Namespace, board: str) -> list[Spec]:
    """The default rows, or --sizes × --lanes × --r-width/--r-frac when --sizes is given."""
    if args.sizes is None:
        return ROWS.get(board, [])
    lanes = args.lanes or DEFAULT_LANES.get(board, 4)
    return [Spec(int(d), lanes, args.r_width, args.r_frac) for d in args.sizes.split(",")]


def _searches(args: argparse.Namespace, board: str) -> list[tuple[int, int, int]]:
    if args.sizes is None and args.lanes is None:
        return SEARCHES.get(board, [(DEFAULT_LANES.get(board, 4), args.r_width, args.r_frac)])
    return [(args.lanes or DEFAULT_LANES.get(board, 4), args.r_width, args.r_frac)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--boards", default="icebreaker,ulx3s-85f")
    ap.add_argument("--sizes", default=None, help="comma-separated d (with --lanes, --r-width, --r-frac) instead "
                                                  "of the published rows")
    ap.add_argument("--lanes", type=int, default=None, help="M for --sizes and the search (default per board)")
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--frac", type=int, default=12)
    ap.add_argument("--r-width", type=int, default=28, help="W_R for --sizes and the search (default 28)")
    ap.add_argument("--r-frac", type=int, default=20, help="F_R for --sizes and the search (default 20)")
    ap.add_argument("--shift", type=int, default=10)
    ap.add_argument("--no-search", action="store_true", help="skip the largest-d search")
    ap.add_argument("--fit-only", action="store_true", help="no builds: only the fit check's largest d")
    ap.add_argument("--cached-only", action="store_true",
                    help="no tool runs: rows from the builds in --out, the others marked as not built")
    ap.add_argument("--step", type=int, default=2, help="d step down while the search's build fails (default 2)")
    ap.add_argument("--out", type=Path, default=ROOT / "build" / "boards", help="build directories (cache)")
    ap.add_argument("--md", type=Path, default=None, help="Markdown table (default <out>/board_table.md)")
    ap.add_argument("--json", type=Path, default=None, help="every result (default <out>/board_table.json)")
    args = ap.parse_args()
    args.md = args.md or args.out / "board_table.md"
    args.json = args.json or args.out / "board_table.json"
    boards = args.boards.split(",")
    try:
        for board in boards:
            get_board(board)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    table = Table(args)
    print(table.lines[0])
    print(table.lines[1])
    for board in boards:
        if not args.fit_only:
            for spec in _specs(args, board):
                table.build(board, spec)
        if not args.no_search:
            for lanes, r_width, r_frac in _searches(args, board):
                table.search(board, lanes, r_width, r_frac)
    print("\n".join(["", *table.largest_lines(), "", f"wrote {args.md} and {args.json}"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
