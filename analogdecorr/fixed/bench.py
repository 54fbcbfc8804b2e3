"""Cost of the integer model at training sizes: ``python -m analogdecorr.fixed.bench [--reps N] [--json]``.

A training batch of 64 rows with sample_frac 0.1 has k = 7 learning rows and 57 forward-only rows (121 more
forward rows for node perturbation's perturbed pass). Each case is timed as the minimum CPU time
(``time.process_time``, so other jobs on a shared machine inflate it less) over ``reps`` repeats, from a warmed
state: one run of 64 learning rows (per learning sample), one batch (7 learning rows then 57 forward rows, one
``run`` call with a learn vector), and one call of 121 forward rows.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import numpy as np

from .format import UnitFormat, quantize
from .model import run

SIZES = (64, 100)
ROUNDINGS = ("half_even", "stochastic")
RULES = ("offdiag", "whiten")


def _best(f: Callable[[], object], reps: int) -> float:
    times = []
    for _ in range(reps):
        t0 = time.process_time()
        f()
        times.append(time.process_time() - t0)
    return min(times)


def measure(d: int, rounding: str, rule: str, centre_shift: int = 6, reps: int = 40) -> dict[str, float]:
    """µs per learning sample, per batch (64 rows, 7 learning) and per 121 forward rows, for one format."""
    fmt = UnitFormat(d, 16, 12, 24, 20, 18, rounding=rounding, rule=rule, centre_shift=centre_shift)
    X, _ = quantize(np.random.default_rng(0).normal(0, 1, (128, d)), 16, 12)
    learn = np.zeros(64, dtype=bool)
    learn[:7] = True
    warm = run(fmt, X[:64]).state
    return {
        "d": d,
        "rounding": rounding,
        "rule": rule,
        "centre_shift": centre_shift,
        "us_per_learning_sample": _best(lambda: run(fmt, X[:64], state=warm), reps) / 64 * 1e6,
        "us_per_batch": _best(lambda: run(fmt, X[64:], learn=learn, state=warm), reps) * 1e6,
        "us_per_121_forward_rows": _best(lambda: run(fmt, X[:121], learn=False, state=warm), reps) * 1e6,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=40, help="repeats per case (the minimum is reported)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    rows = [measure(d, r, rule, reps=args.reps) for d in SIZES for r in ROUNDINGS for rule in RULES]
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    print(
        "| d | rounding | rule | µs / learning sample | µs / batch (64 rows, 7 learn) | µs / 121 forward rows |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print(
            f"| {row['d']} | {row['rounding']} | {row['rule']} | {row['us_per_learning_sample']:.0f} | "
            f"{row['us_per_batch']:.0f} | {row['us_per_121_forward_rows']:.0f} |"
        )


if __name__ == "__main__":
    main()
