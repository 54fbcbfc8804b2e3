"""The board top level (UART + link decoder/encoder + unit) in simulation, bit-exact against the integer model.

A Verilog testbench plays the host's byte stream (link.py frames: RESET, n SAMPLE frames with learn switched
per sample, STATUS, READ_R of all of R) bit by bit on the top level's ``rx`` line, at most two requests in
flight, and decodes ``tx``; the replies' z vectors and the R read back must equal ``fixed.model.run``.
Verilator runs the exported top (the Amaranth simulator manages ~3 k cycles/s; this needs ~10⁶).

    python benchmarks/board_uart_sim.py                       # d = 16, M = 4, 1000 samples (hdl/BOARDS.md)
    python benchmarks/board_uart_sim.py --size 8 --lanes 3 --samples 200 --divisor 3
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analogdecorr.fixed import model  # noqa: E402
from analogdecorr.fixed.compare import correlated_input  # noqa: E402
from analogdecorr.fixed.format import UnitFormat  # noqa: E402
from analogdecorr.hdl import link  # noqa: E402
from analogdecorr.hdl.board import LinkTop  # noqa: E402
from analogdecorr.hdl.link_sim import verilate_link  # noqa: E402
from analogdecorr.hdl.unit import DecorrelationUnit  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=16)
    ap.add_argument("--lanes", type=int, default=4)
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--divisor", type=int, default=2, help="clock cycles per UART bit (default 2)")
    ap.add_argument("--shift", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=None, help="Verilator work directory (default: a temp dir)")
    args = ap.parse_args()

    d, n = args.size, args.samples
    fmt = UnitFormat(size=d, width=16, frac=12, r_width=28, r_frac=20, shift=args.shift)
    unit = DecorrelationUnit(fmt, lanes=args.lanes)
    top = LinkTop(unit, divisor=args.divisor)
    p = top.params
    X = np.asarray(correlated_input(fmt, n, rho=0.3, seed=args.seed), dtype=np.int64)
    learn = np.random.default_rng(args.seed).random(n) > 0.1  # ~10 % forward-only samples
    reqs = [p.command(link.RESET)] + [p.sample(X[t], bool(learn[t])) for t in range(n)]
    reqs += [p.command(link.STATUS)]
    reqs += [p.read_r(a, min(p.max_words_per_frame, p.r_words - a)) for a in range(0, p.r_words,
                                                                                   p.max_words_per_frame)]
    with tempfile.TemporaryDirectory() as tmp:
        run = verilate_link(top, reqs, args.work or Path(tmp), idle_cycles=unit.init_cycles + 16)
    ref = model.run(fmt, X, learn=learn)
    Z = np.array([p.z(f.payload) for f in run.replies[1 : n + 1]])
    st = link.LinkParams.status(run.replies[n + 1].payload)
    R = np.concatenate([p.r_words_of(f.payload) for f in run.replies[n + 2 :]]).reshape(d, d)
    z_ok = bool(np.array_equal(Z, ref.z))
    r_ok = bool(np.array_equal(R, ref.R))
    crc_ok = all(f.crc_ok for f in run.replies)
    print(f"d={d} M={args.lanes} ({unit.multipliers} multipliers), {n} samples ({int(learn.sum())} learning), "
          f"UART divisor {args.divisor}: {run.cycles} cycles, {run.seconds:.0f} s (Verilator build + run)")
    print(f"z bit-exact: {z_ok}; R bit-exact: {r_ok}; reply CRCs ok: {crc_ok}; bytes skipped: {run.skipped}; "
          f"board counters samples={st.samples} learned={st.learned}; link errors: {st.link_errors or 'none'}; "
          f"overflow model={ref.overflow} board={st.flags['overflow']}")
    ok = z_ok and r_ok and crc_ok and st.samples == n and st.learned == int(learn.sum()) and not st.link_errors
    print("RESULT", "bit_exact=1" if ok else "bit_exact=0")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
