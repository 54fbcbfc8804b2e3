"""Error budget (issue 8 item 4): float decorrelation against the FPGA unit's arithmetic at W = 8..16.

The runs are the sweep file ``sims/error_budget.toml`` (108 runs: digits and mnist1d × the float backend,
EcRamPreset and ConstantStep × float decorrelation and the unit at W ∈ {8, 10, 12, 14, 16} × 3 seeds; analog NP +
offdiag at the analog defaults, 50 epochs, a 10 % validation split), run by ``analogdecorr.sweep`` on Ray (finished
runs are skipped, interrupted ones resume). This script narrows the sweep (flags below) and writes into ``--out``:

- ``table.md`` / ``table.csv``: per task, device and numerics: test accuracy at each run's best-validation epoch
  (SPEC §6) and at the last epoch, the unit's z and R distance to its shadow float decorrelator (relative
  Frobenius, last epoch, mean over layers), saturation counts summed over layers and epochs (x, z, v, r), and the
  smallest W whose validation-selected test accuracy (mean over seeds) is within 1 point of float decorrelation;
- ``plots/error_budget.png``: accuracy against W per device (float decorrelation as a dashed line), z distance
  against W below.

    .venv/bin/python sims/error_budget.py                                  # the whole study
    .venv/bin/python sims/error_budget.py --tasks digits --widths 8 16 --seeds 1 --epochs 1 --out /tmp/eb
    .venv/bin/python sims/error_budget.py --table-only                     # rebuild table and plot from disk
"""

from __future__ import annotations

import argparse
import copy
import csv
import io
import math
import statistics
from collections.abc import Sequence
from pathlib import Path

from analogdecorr.config import load_toml
from analogdecorr.results import atomic_write
from analogdecorr.sweep import SweepSpec, Trial, parse_sweep
from analogdecorr.sweep.spec import override_base
from analogdecorr.sweep.study import add_engine_flags, run_study
from analogdecorr.sweep.summary import fmt, load_run

SWEEP_FILE = Path(__file__).with_name("error_budget.toml")
REFERENCE = "float"  # the numerics label every width is compared with
TOLERANCE = 0.01  # "within 1 point of float"
SATURATION = ("x", "z", "v", "r")  # the counts the table shows (of cosim.decorrelator.SATURATION_KEYS)


def width_of(label: str) -> int | None:
    """The data width W of a numerics label ('w12' → 12; the float reference → None)."""
    return int(label[1:]) if label.startswith("w") and label[1:].isdigit() else None


def build_spec(args: argparse.Namespace) -> SweepSpec:
    """sims/error_budget.toml narrowed by the flags (every change goes through the sweep file's checks)."""
    data = copy.deepcopy(load_toml(SWEEP_FILE))
    override_base(data, args.set)
    if args.epochs:
        data["base"]["epochs"] = args.epochs
    if args.seeds:
        data["sweep"]["seeds"] = list(range(args.seeds))
    grid = data["grid"]
    if args.widths:
        unknown = [w for w in args.widths if f"w{w}" not in grid["numerics"]]
        if unknown:
            widths = ", ".join(str(width_of(k)) for k in grid["numerics"] if width_of(k))
            raise SystemExit(f"error: unknown width {unknown[0]}; choose from {widths}")
        grid["numerics"] = {k: v for k, v in grid["numerics"].items()
                            if k == REFERENCE or width_of(k) in args.widths}
    for axis, wanted in (("task", args.tasks), ("hardware", args.hardware)):
        if wanted:
            unknown = [w for w in wanted if w not in grid[axis]]
            if unknown:
                raise SystemExit(f"error: unknown {axis} {unknown[0]!r}; choose from {', '.join(grid[axis])}")
            grid[axis] = {k: v for k, v in grid[axis].items() if k in wanted}
    return parse_sweep(data, source=f"sweep file {SWEEP_FILE}")


# ----------------------------------------------------------------------------------------------- summary
def _finite(values: Sequence[float | None]) -> list[float]:
    return [v for v in values if v is not None and math.isfinite(v)]


def _mean(values: Sequence[float | None]) -> float:
    vals = _finite(values)
    return statistics.fmean(vals) if vals else math.nan


def collect(trials: Sequence[Trial]) -> dict[tuple[str, str, str], dict]:
    """(task, hardware, numerics) → per-seed figures of the finished runs."""
    out: dict[tuple[str, str, str], dict] = {}
    for t in trials:
        s = dict(t.setting)
        rec = out.setdefault((s["task"], s["hardware"], s["numerics"]),
                             {"seeds": 0, "diverged": 0, "sel": [], "last": [], "z": [], "r": [],
                              "sat": {k: [] for k in SATURATION}, "samples": []})
        data = load_run(t)
        if data is None:
            continue
        rec["seeds"] += 1
        if data.get("diverged"):
            rec["diverged"] += 1
            continue
        rows = data["epochs"]
        summary = data.get("summary") or {}
        rec["sel"].append(summary.get("test_acc_at_best_val"))
        rec["last"].append(rows[-1].get("test_acc"))
        layers = rows[-1].get("cosim") or []
        if layers:
            rec["z"].append(_mean([c.get("z_rel_dist") for c in layers]))
            rec["r"].append(_mean([c.get("r_rel_dist") for c in layers]))
            for k in SATURATION:
                rec["sat"][k].append(sum(c["saturation"].get(k, 0) for r in rows for c in r.get("cosim") or []))
            rec["samples"].append(sum(c.get("samples", 0) for r in rows for c in r.get("cosim") or []))
    return out


def smallest_width(recs: dict, task: str, hw: str, widths: Sequence[str], what: str = "sel") -> int | None:
    """The smallest W such that it and every wider W tried have a mean accuracy (``what``) within TOLERANCE of
    float decorrelation's; None if the widest is not (or float decorrelation has not finished)."""
    ref = _mean(recs.get((task, hw, REFERENCE), {}).get(what, []))
    if math.isnan(ref):
        return None
    smallest = None
    for w in sorted((width_of(n) for n in widths if width_of(n)), reverse=True):  # down from the widest:
        if not _mean(recs.get((task, hw, f"w{w}"), {}).get(what, [])) >= ref - TOLERANCE:  # every W from the
            break  # answer up stays within 1 point (a narrow width that is lucky alone does not count)
        smallest = w
    return smallest


def write_table(spec: SweepSpec, trials: Sequence[Trial], out: Path) -> str:
    """table.md and table.csv in ``out`` (atomically); returns the Markdown."""
    recs = collect(trials)
    axes = {name: [lab for lab, _ in opts] for name, opts in spec.axes}
    c = trials[0].config
    md = ["# Error budget: float decorrelation against the unit's arithmetic", "",
          f"From `sims/error_budget.toml`: {c.rule} + {c.decor}, {c.optimizer} lr {c.lr:g} ({c.lr_schedule}), "
          f"decor lr {c.decor_lr:g}, {c.epochs} epochs, batch {c.batch_size}, validation split {c.val_frac:g}, "
          f"seeds {spec.seeds}. `test @ best val`: test accuracy at each run's best-validation epoch (SPEC §6); "
          "`last`: at the last epoch; mean ± std over the seeds finished. `z dist` / `R dist`: the unit's z (over "
          "the last epoch) and R (at its end) against its shadow float decorrelator, relative Frobenius, mean over "
          "layers. Saturation: words clipped, summed over layers and epochs (mean over seeds; x input, z output, "
          "v = Rᵀz, r the R update). Unit format per W: F = W − 4, R's format from the shift (cosim defaults).",
          ""]
    header = ["task", "hardware", "numerics", "W", "seeds", "diverged", "test_at_best_val_mean",
              "test_at_best_val_std", "last_mean", "last_std", "z_rel_dist", "r_rel_dist",
              *[f"sat_{k}" for k in SATURATION], "samples"]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    smallest = []
    for task in axes["task"]:
        md += [f"## {task}", "",
               "| hardware | numerics | seeds | test @ best val | last | z dist | R dist | "
               + " | ".join(f"sat {k}" for k in SATURATION) + " |",
               "| --- | --- | --- | --- | --- | --- | --- | " + " | ".join("---" for _ in SATURATION) + " |"]
        for hw in axes["hardware"]:
            for num in axes["numerics"]:
                rec = recs.get((task, hw, num))
                if rec is None or rec["seeds"] == 0:
                    continue
                seeds = f"{rec['seeds']}" + (f" ({rec['diverged']} diverged)" if rec["diverged"] else "")
                sat = [_mean(rec["sat"][k]) for k in SATURATION]
                z, r = _mean(rec["z"]), _mean(rec["r"])
                md.append(f"| {hw} | {num} | {seeds} | {fmt(_finite(rec['sel']))} | {fmt(_finite(rec['last']))} | "
                          + (f"{z:.3f}" if math.isfinite(z) else "–") + " | "
                          + (f"{r:.3f}" if math.isfinite(r) else "–") + " | "
                          + " | ".join("–" if math.isnan(v) else f"{v:.0f}" for v in sat) + " |")
                sel, last = _finite(rec["sel"]), _finite(rec["last"])
                writer.writerow([task, hw, num, width_of(num) or "", rec["seeds"], rec["diverged"],
                                 *_ms(sel), *_ms(last), _num(z), _num(r), *(_num(v) for v in sat),
                                 _num(_mean(rec["samples"]))])
            w_sel = smallest_width(recs, task, hw, axes["numerics"], "sel")
            w_last = smallest_width(recs, task, hw, axes["numerics"], "last")
            smallest.append((task, hw, w_sel, w_last))
        md.append("")
    md += ["## Smallest W within 1 point of float decorrelation", "",
           "Mean over seeds; `>` means no width tried gets within 1 point, `–` that float decorrelation has not "
           "finished.", "", "| task | hardware | test @ best val | last |", "| --- | --- | --- | --- |"]
    tried = [width_of(n) for n in axes["numerics"] if width_of(n)]
    for task, hw, w_sel, w_last in smallest:
        have_ref = bool(recs.get((task, hw, REFERENCE), {}).get("sel"))
        cells = [("–" if not have_ref else (f"{w}" if w else f"> {max(tried, default=0)}")) for w in (w_sel, w_last)]
        md.append(f"| {task} | {hw} | {cells[0]} | {cells[1]} |")
    text = "\n".join(md) + "\n"
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(out / "table.md") as f:
        f.write(text)
    with atomic_write(out / "table.csv") as f:
        f.write(buf.getvalue())
    return text


def _ms(values: list[float]) -> tuple[str, str]:
    if not values:
        return "", ""
    return _num(statistics.fmean(values)), _num(statistics.stdev(values) if len(values) > 1 else 0.0)


def _num(v: float) -> str:
    return "" if math.isnan(v) else f"{v:.6g}"


def plot(spec: SweepSpec, trials: Sequence[Trial], out: Path) -> Path | None:
    """plots/error_budget.png: per task, accuracy (validation-selected) against W per device with float
    decorrelation as a dashed line of the same colour, and the z distance against W below."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    recs = collect(trials)
    axes = {name: [lab for lab, _ in opts] for name, opts in spec.axes}
    widths = [n for n in axes["numerics"] if width_of(n)]
    if not any(rec["sel"] for rec in recs.values()):
        return None
    tasks = axes["task"]
    fig = Figure(figsize=(max(6.0, 4.5 * len(tasks)), 6.8), layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.subplots(2, len(tasks), squeeze=False, sharex=True)
    for col, task in enumerate(tasks):
        acc_ax, z_ax = grid[0][col], grid[1][col]
        for i, hw in enumerate(axes["hardware"]):
            color = f"C{i}"
            ref = _finite(recs.get((task, hw, REFERENCE), {}).get("sel", []))
            if ref:
                acc_ax.axhline(statistics.fmean(ref), color=color, ls="--", lw=1, alpha=0.8)
            pts = [(width_of(n), recs.get((task, hw, n), {})) for n in widths]
            xs = [w for w, r in pts if _finite(r.get("sel", []))]
            if xs:
                vals = [_finite(r["sel"]) for w, r in pts if _finite(r.get("sel", []))]
                acc_ax.errorbar(xs, [statistics.fmean(v) for v in vals],
                                yerr=[statistics.stdev(v) if len(v) > 1 else 0 for v in vals],
                                marker="o", color=color, capsize=3, label=hw)
            zs = [(w, _mean(r.get("z", []))) for w, r in pts]
            zs = [(w, z) for w, z in zs if math.isfinite(z) and z > 0]
            if zs:
                z_ax.plot([w for w, _ in zs], [z for _, z in zs], marker="o", color=color, label=hw)
        acc_ax.set(title=task, ylabel="test acc @ best-val epoch")
        z_ax.set(xlabel="data width W (bits)", ylabel="z distance to float (rel.)", yscale="log")
        for ax in (acc_ax, z_ax):
            ax.grid(alpha=0.3)
            ax.set_xticks([width_of(n) for n in widths])
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize="small")
    fig.suptitle("Error budget: the unit's arithmetic at width W (mean ± std over seeds)\n"
                 "dashed: the same device with float decorrelation")
    path = out / "plots" / "error_budget.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=110)
    return path


# --------------------------------------------------------------------------------------------------- main
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", nargs="+", help="task rows (default: digits mnist1d)")
    p.add_argument("--hardware", nargs="+", help="device rows (default: float ecram constantstep)")
    p.add_argument("--widths", nargs="+", type=int, help="unit widths W (default: 8 10 12 14 16; float always)")
    p.add_argument("--seeds", type=int, help="number of seeds 0..n-1 (default: the sweep file's 3)")
    p.add_argument("--epochs", type=int, help="epochs per run (default: the sweep file's 50)")
    add_engine_flags(p, "sims/out/error_budget")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    code, _ = run_study(args, build_spec, write_table, plot, train=not args.table_only, dry_run=args.dry_run)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
