"""The driver the study scripts in sims/ share: run a narrowed sweep on the engine, then write the engine's
summary and the study's own table and plots, with one-line errors and a list of failed runs."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from ..errors import AnalogDecorrError
from .spec import SweepSpec, Trial
from .summary import write_summary

Writer = Callable[[SweepSpec, list[Trial], Path], object]


def add_engine_flags(p: argparse.ArgumentParser, out_default: str) -> None:
    """The flags every study script takes: --set (a [base] key for every run, read by ``override_base``) and,
    for the engine, --out, --jobs, --address, --table-only, --dry-run."""
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a [base] key for every run, e.g. decor_lr=1e-3 or epochs=4; repeatable")
    p.add_argument("--out", type=Path, help=f"sweep folder (default: the sweep file's {out_default})")
    p.add_argument("--jobs", type=int, help="runs at a time (default: every CPU)")
    p.add_argument("--address", help="join the Ray cluster at this address instead of starting a local one")
    p.add_argument("--table-only", "--report-only", dest="table_only", action="store_true",
                   help="do not train; rebuild the tables and plots from what is on disk")
    p.add_argument("--dry-run", action="store_true", help="list the runs still to do and exit")


def run_study(
    args: argparse.Namespace,
    build_spec: Callable[[argparse.Namespace], SweepSpec],
    write_table: Callable[[SweepSpec, list[Trial], Path], str],
    plot: Writer,
    *,
    train: bool = True,
    dry_run: bool = False,
    select: Callable[[list[Trial]], list[Trial]] | None = None,
) -> tuple[int, str]:
    """Build the study's sweep from ``args`` (``args.out``, ``args.address``, ``args.jobs``), run the trials
    ``select`` picks (all by default; none with ``train=False``), then write summary, table and plots of every
    trial on disk. ``dry_run`` only lists the runs still to do. Returns (exit code, table text): 2 on a bad input
    (printed as ``error: ...``), 1 if a run failed, else 0."""
    from .engine import finished_status, run_trials

    failed = []
    try:
        spec = build_spec(args)
        out = args.out or Path(spec.out)
        trials = spec.trials(out)
        chosen = select(trials) if select is not None else trials
        if dry_run:
            todo = [t for t in chosen if not finished_status(t)]
            print(f"{len(chosen)} runs, {len(chosen) - len(todo)} finished, {len(todo)} to do")
            for t in todo:
                print(t.label, t.out)
            return 0, ""
        if train:
            failed = run_trials(chosen, address=args.address, jobs=args.jobs).failed
        if spec.tune:  # a tuned sweep's table is per tuned row (its final runs follow from the search on disk)
            from .tune import write_tuned_summary

            write_tuned_summary(spec, out)
        else:
            write_summary(spec, trials, out)
    except AnalogDecorrError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2, ""
    text = write_table(spec, trials, out)
    plot(spec, trials, out)
    print(text)
    for o in failed:
        print(f"failed: {o.trial.label}: {o.error.splitlines()[0]}", file=sys.stderr)
    return (1 if failed else 0), text
