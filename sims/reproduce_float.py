"""Float reference study (issue 2, item 6): BP, FA, NP, each with and without decorrelation, on the sweep engine.

The runs are the sweep file ``sims/float.toml`` (4 × 1000 LeakyReLU, Adam lr 1e-4, ``scaled`` decorrelation lr
1e-4, batch 64, 10 epochs, NP σ 1e-3, seeds 0, 1, 2, a 10 % validation split), run by ``analogdecorr.sweep`` on
Ray: finished runs are skipped, interrupted ones resume. This script only narrows or varies the sweep (flags
below) and writes the study's own outputs into ``--out``: ``table.md`` (test accuracy mean ± std over seeds at
epochs 2, 4, 10 and at each run's best-validation epoch, plus the issue's acceptance checks on digits),
``<dataset>_test_acc.png`` (mean ± std bands) and ``<dataset>_seed<k>.png`` (plot_comparison of the first seed),
beside the engine's summary.md/.csv/.png.

    .venv/bin/python sims/reproduce_float.py                               # digits + mnist1d, seeds 0,1,2
    .venv/bin/python sims/reproduce_float.py --published                   # the published rows (no validation split)
    .venv/bin/python sims/reproduce_float.py --datasets digits --seeds 0 --variants NP,NP+decor
    .venv/bin/python sims/reproduce_float.py --report-only                 # tables/plots from finished runs
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

from analogdecorr.config import load_toml
from analogdecorr.errors import AnalogDecorrError
from analogdecorr.results import atomic_write
from analogdecorr.sweep import SweepSpec, Trial, parse_sweep
from analogdecorr.sweep.engine import run_trials
from analogdecorr.sweep.summary import fmt, load_run, write_summary

SWEEP_FILE = Path(__file__).with_name("float.toml")
REPORT_EPOCHS = (2, 4, 10)


def build_spec(args: argparse.Namespace) -> SweepSpec:
    """sims/float.toml narrowed/varied by the flags (every change goes through the sweep file's checks)."""
    data = copy.deepcopy(load_toml(SWEEP_FILE))
    if args.published:  # issue 2's protocol: the whole training set, test accuracy at fixed epochs
        data["base"]["val_frac"] = 0.0
        data["sweep"].update(select="last", metric="test_acc")
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"error: --set expects KEY=VALUE, got {item!r}")
        data["base"][key.strip()] = value.strip()
    if args.decor_rule != "scaled":
        for v in data["grid"]["variant"].values():
            v["decor"] = args.decor_rule if v["decor"] == "scaled" else v["decor"]
    if args.datasets:
        data["grid"]["dataset"] = args.datasets.split(",")
    if args.variants:
        wanted = args.variants.split(",")
        unknown = [v for v in wanted if v not in data["grid"]["variant"]]
        if unknown:
            raise SystemExit(f"error: unknown variant {unknown[0]!r}; choose from "
                             f"{', '.join(data['grid']['variant'])}")
        data["grid"]["variant"] = {k: v for k, v in data["grid"]["variant"].items() if k in wanted}
    if args.seeds:
        data["sweep"]["seeds"] = [int(s) for s in args.seeds.split(",")]
    return parse_sweep(data, source=f"sweep file {SWEEP_FILE}")


# ------------------------------------------------------------------------------------------------ tables
def curves(trials: Sequence[Trial], dataset: str, variant: str) -> list[dict]:
    """The finished results of one (dataset, variant), one per seed."""
    out = []
    for t in trials:
        s = dict(t.setting)
        if s["dataset"] == dataset and s["variant"] == variant:
            data = load_run(t)
            if data and not data.get("diverged"):
                out.append(data)
    return out


def at_epoch(runs: list[dict], epoch: int) -> list[float]:
    return [r["epochs"][epoch - 1]["test_acc"] for r in runs if len(r["epochs"]) >= epoch]


def at_best_val(runs: list[dict]) -> list[float]:
    vals = [r["summary"]["test_acc_at_best_val"] for r in runs if r.get("summary")]
    return [v for v in vals if v is not None]


def pct(values: Sequence[float]) -> str:
    return fmt([100 * v for v in values], 1) if values else "–"


def write_table(spec: SweepSpec, trials: Sequence[Trial], out: Path) -> str:
    datasets = [lab for lab, _ in dict(spec.axes)["dataset"]]
    variants = [lab for lab, _ in dict(spec.axes)["variant"]]
    c = trials[0].config  # the settings every run shares
    epochs = c.epochs
    cols = [e for e in REPORT_EPOCHS if e <= epochs] or [epochs]
    validation = c.val_frac > 0
    lines = ["# Float reference: test accuracy (%), mean ± std over seeds", "",
             f"{len(c.hidden)} hidden layers × {c.hidden[0]} {c.activation}, {c.optimizer} lr {c.lr:g}, "
             f"decorrelation lr {c.decor_lr:g}, batch {c.batch_size}, NP σ = {c.sigma:g}, {epochs} epochs, seeds "
             f"{spec.seeds}, validation split {c.val_frac:g} of the training set. Std is the sample std "
             "(ddof = 1). Generated by `sims/reproduce_float.py` from `sims/float.toml`."]
    extra = ["test @ best val (epoch)"] if validation else []
    for ds in datasets:
        lines += ["", f"## {ds}", "",
                  "| rule | seeds | " + " | ".join([f"epoch {e}" for e in cols] + extra) + " |",
                  "| --- | --- | " + " | ".join("---" for _ in cols + extra) + " |"]
        for variant in variants:
            runs = curves(trials, ds, variant)
            if not runs:
                continue
            cells = [pct(at_epoch(runs, e)) for e in cols]
            if validation:
                ep = [r["summary"]["best_val_epoch"] for r in runs if r["summary"]["best_val_epoch"]]
                cells.append(f"{pct(at_best_val(runs))} ({statistics.fmean(ep):.1f})" if ep else "–")
            lines.append(f"| {variant} | {len(runs)} | " + " | ".join(cells) + " |")
    checks = acceptance_checks(trials, variants)
    if checks and epochs >= 10 and "digits" in datasets:
        lines += ["", "## Acceptance checks (digits, means over seeds)", "", "| check | result | measured |",
                  "| --- | --- | --- |"]
        lines += [f"| {d} | {v} | {m} |" for d, v, m in checks]
    text = "\n".join(lines) + "\n"
    with atomic_write(out / "table.md") as f:
        f.write(text)
    return text


def acceptance_checks(trials: Sequence[Trial], variants: Sequence[str]) -> list[tuple[str, str, str]]:
    """Issue 2's checks on digits (test accuracy means over seeds at fixed epochs): (check, PASS/FAIL, measured)."""

    def mean_at(variant: str, epoch: int) -> float:
        vals = at_epoch(curves(trials, "digits", variant), epoch) if variant in variants else []
        return statistics.fmean(vals) if vals else math.nan

    rows = [
        ("digits: NP test acc at epoch 10 <= 30%", lambda: (mean_at("NP", 10),), lambda a: a <= 0.30),
        ("digits: NP+decor test acc at epoch 10 >= 80%", lambda: (mean_at("NP+decor", 10),), lambda a: a >= 0.80),
        ("digits: BP+decor >= BP at epoch 2", lambda: (mean_at("BP+decor", 2), mean_at("BP", 2)),
         lambda a, b: a >= b),
        ("digits: BP+decor test acc at epoch 10 >= 97%", lambda: (mean_at("BP+decor", 10),), lambda a: a >= 0.97),
        ("digits: FA+decor >= FA at epoch 4", lambda: (mean_at("FA+decor", 4), mean_at("FA", 4)),
         lambda a, b: a >= b),
    ]
    out = []
    for desc, measure, test in rows:
        vals = measure()
        if any(math.isnan(v) for v in vals):
            continue
        out.append((desc, "PASS" if test(*vals) else "FAIL", " vs ".join(f"{100 * v:.1f}%" for v in vals)))
    return out


def plot(spec: SweepSpec, trials: Sequence[Trial], out: Path) -> list[Path]:
    """<dataset>_test_acc.png (mean ± std over seeds per variant) and <dataset>_seed<k>.png (first seed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from analogdecorr.plots import plot_comparison

    written = []
    variants = [lab for lab, _ in dict(spec.axes)["variant"]]
    for ds in [lab for lab, _ in dict(spec.axes)["dataset"]]:
        fig = Figure(figsize=(8, 5), layout="constrained")
        FigureCanvasAgg(fig)
        ax = fig.subplots()
        for i, variant in enumerate(variants):
            runs = curves(trials, ds, variant)
            if not runs:
                continue
            n = min(len(r["epochs"]) for r in runs)
            xs = list(range(1, n + 1))
            stats = [(statistics.fmean(v), statistics.stdev(v) if len(v) > 1 else 0.0)
                     for v in (at_epoch(runs, e) for e in xs)]
            ms = [m for m, _ in stats]
            color, style = f"C{i // 2}", "-" if "decor" in variant else "--"
            ax.plot(xs, ms, style, marker=".", color=color, label=f"{variant} (n={len(runs)})")
            ax.fill_between(xs, [m - s for m, s in stats], [m + s for m, s in stats], color=color, alpha=0.15)
        if not ax.lines:
            continue
        ax.set(xlabel="epoch", ylabel="test accuracy", ylim=(0, 1.02),
               title=f"{ds}: test accuracy, mean ± std over seeds (dashed: no decorrelation)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
        with atomic_write(out / f"{ds}_test_acc.png", "wb") as f:
            fig.savefig(f, format="png", dpi=110)
        written.append(out / f"{ds}_test_acc.png")
        first = [t.out / "results.json" for t in trials
                 if t.seed == spec.seeds[0] and dict(t.setting)["dataset"] == ds and load_run(t)
                 and not load_run(t).get("diverged")]
        if first:
            written.append(plot_comparison(first, out / f"{ds}_seed{spec.seeds[0]}.png", metric="test_acc"))
    return written


# -------------------------------------------------------------------------------------------------- main
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", help="comma-separated datasets (default: the sweep file's digits,mnist1d)")
    p.add_argument("--seeds", help="comma-separated seeds (default: the sweep file's 0,1,2)")
    p.add_argument("--variants", help="comma-separated variants, e.g. NP,NP+decor (default: all six)")
    p.add_argument("--decor-rule", default="scaled", help="decorrelation rule of the +decor variants")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a [base] key for every run, e.g. decor_lr=1e-3 or epochs=4; repeatable")
    p.add_argument("--published", action="store_true",
                   help="the published protocol: no validation split (val_frac 0), test accuracy at fixed epochs")
    p.add_argument("--out", type=Path, help="sweep folder (default: the sweep file's sims/out/float)")
    p.add_argument("--jobs", type=int, help="runs at a time (default: every CPU)")
    p.add_argument("--address", help="join the Ray cluster at this address instead of starting a local one")
    p.add_argument("--report-only", action="store_true", help="only write the tables and plots")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        spec = build_spec(args)
        out = args.out or Path(spec.out)
        trials = spec.trials(out)
        failed = []
        if not args.report_only:
            report = run_trials(trials, address=args.address, jobs=args.jobs)
            failed = report.failed
        write_summary(spec, trials, out)
    except AnalogDecorrError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    table = write_table(spec, trials, out)
    plot(spec, trials, out)
    print(table)
    for o in failed:
        print(f"failed: {o.trial.label}: {o.error.splitlines()[0]}", file=sys.stderr)
    print(f"wrote {out / 'table.md'}, {out / 'summary.md'} and plots in {out}")
    return 1 if failed or "| FAIL |" in table else 0


if __name__ == "__main__":
    sys.exit(main())
