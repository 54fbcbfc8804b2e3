"""Analog co-simulation study (issue 3): learning rules × aihwkit devices × datasets, on the sweep engine.

The runs are the sweep file ``sims/analog.toml`` (372 runs: 2 tasks × 12 hardware rows × 7 methods minus the
excluded combinations, 3 seeds, 50 epochs, ANALOG_DEFAULTS, a 10 % validation split), run by
``analogdecorr.sweep`` on Ray: each run's folder is keyed by the hash of its configuration, finished runs are
skipped and interrupted ones resume from their checkpoint. This script narrows the sweep (flags below) and
writes the study's outputs into ``--out``: ``table.md`` (test accuracy at each run's best-validation epoch and
at the last epoch, best − last gap on validation, PCM drift accuracy at 1 day / 1 year, NP's pulsed-update
cosine, the acceptance checks) and ``plots/<task>_curves.png``, beside the engine's summary.md/.csv/.png.

    .venv/bin/python sims/reproduce_analog.py                       # everything (acceptance rows first)
    .venv/bin/python sims/reproduce_analog.py --acceptance          # only the acceptance rows
    .venv/bin/python sims/reproduce_analog.py --tasks digits --hardware ecram-ideal ecram-noisy
    .venv/bin/python sims/reproduce_analog.py --published --acceptance   # the published protocol (no val split)
    .venv/bin/python sims/reproduce_analog.py --table-only          # rebuild table and plots from disk
    .venv/bin/python sims/reproduce_analog.py --acceptance --set lr=0.03 --out sims/out/analog_lr0.03
"""

from __future__ import annotations

import argparse
import copy
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

SWEEP_FILE = Path(__file__).with_name("analog.toml")
#: The devices the issue's no-collapse criterion names (exact tile and the three pulsed presets, ideal IO).
CORE_DEVICES = ("fp", "idealized-ideal", "constantstep-ideal", "ecram-ideal")
OTHER_PRESETS = ("reram-ideal", "capacitor-ideal", "pcm-ideal", "gokmenvlasov-ideal")
FIDELITY_RULES = ("bp", "np+decor")
FIDELITY_EPOCH = 20
#: Rows the acceptance criteria name, run first: (task, hardware, method).
ACCEPTANCE = (
    ("mnist1d", "fp", "np"),
    ("mnist1d", "fp", "np+decor"),
    ("mnist1d", "fp", "np+centre"),
    ("digits", "ecram-ideal", "np"),
    ("digits", "ecram-ideal", "np+decor"),
    ("mnist1d", "fp", "bp"),
    ("mnist1d", "float", "bp"),
    ("mnist1d", "float", "np+decor"),
)


def row_key(trial: Trial) -> tuple[str, str, str]:
    s = dict(trial.setting)
    return s["task"], s["hardware"], s["method"]


def build_spec(args: argparse.Namespace) -> SweepSpec:
    """sims/analog.toml narrowed/varied by the flags (every change goes through the sweep file's checks)."""
    data = copy.deepcopy(load_toml(SWEEP_FILE))
    if args.published:  # issue 3's protocol: the whole training set, test accuracy best/last
        data["base"]["val_frac"] = 0.0
        data["sweep"].update(select="last", metric="test_acc")
    override_base(data, args.set)
    if args.epochs:
        data["base"]["epochs"] = args.epochs
    if args.seeds:
        data["sweep"]["seeds"] = list(range(args.seeds))
    for axis, wanted in (("task", args.tasks), ("hardware", args.hardware), ("method", args.methods)):
        if wanted:
            unknown = [w for w in wanted if w not in data["grid"][axis]]
            if unknown:
                raise SystemExit(f"error: unknown {axis} {unknown[0]!r}; choose from {', '.join(data['grid'][axis])}")
            data["grid"][axis] = {k: v for k, v in data["grid"][axis].items() if k in wanted}
    # an [[exclude]] naming a value that the narrowing removed would be an error: keep only what still applies
    axes = data["grid"]
    data["exclude"] = [{k: [x for x in (v if isinstance(v, list) else [v]) if x in axes[k]] for k, v in ex.items()}
                       for ex in data.get("exclude", [])]
    data["exclude"] = [ex for ex in data["exclude"] if all(ex.values())]
    return parse_sweep(data, source=f"sweep file {SWEEP_FILE}")


# ----------------------------------------------------------------------------------------------- summary
def _mean(values: list[float]) -> float:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return statistics.fmean(vals) if vals else math.nan


def summarise(trials: Sequence[Trial], validation: bool) -> dict[tuple[str, str, str], dict]:
    """(task, hardware, method) -> figures over the seeds that have finished."""
    out: dict[tuple, dict] = {}
    for t in trials:
        rec = out.setdefault(row_key(t), {"seeds": 0, "diverged": 0, "sel": [], "sel_epoch": [], "last": [],
                                          "gap": [], "acc20": [], "day": [], "year": [], "cos": [],
                                          "curves": [], "seconds": [], "corr": []})
        data = load_run(t)
        if data is None:
            continue
        rec["seeds"] += 1
        if data.get("diverged"):
            rec["diverged"] += 1
            continue
        rows = data["epochs"]
        acc = [math.nan if r.get("test_acc") is None else r["test_acc"] for r in rows]
        if validation:  # selection and the collapse gap on validation; test read at the chosen epoch
            s = data["summary"]
            rec["sel"].append(s["test_acc_at_best_val"])
            rec["sel_epoch"].append(s["best_val_epoch"])
            rec["gap"].append(s["best_val_acc"] - s["val_acc_last"])
        else:  # the published protocol: best and last test accuracy
            rec["sel"].append(max(acc))
            rec["sel_epoch"].append(acc.index(max(acc)) + 1)
            rec["gap"].append(max(acc) - acc[-1])
        rec["last"].append(acc[-1])
        if len(acc) >= FIDELITY_EPOCH:
            rec["acc20"].append(acc[FIDELITY_EPOCH - 1])
        rec["curves"].append(acc)
        rec["seconds"].append(sum(r.get("seconds") or 0.0 for r in rows) / len(rows))
        drift = {(d["t_seconds"], d["compensated"]): d["acc"] for d in data.get("drift", [])}
        rec["day"].append(drift.get((86400, True), math.nan))
        rec["year"].append(drift.get((31536000, True), math.nan))
        if rows[-1].get("corr_after"):
            rec["corr"].append(statistics.fmean(rows[-1]["corr_after"]))
        cos = [r["update_cosine"] for r in rows if r.get("update_cosine") is not None]
        if cos:
            rec["cos"].append(statistics.fmean(cos))
    return out


def write_table(spec: SweepSpec, trials: Sequence[Trial], out: Path) -> str:
    validation = trials[0].config.val_frac > 0
    summ = summarise(trials, validation)
    axes = {name: [lab for lab, _ in opts] for name, opts in spec.axes}
    c = trials[0].config
    sel = "test acc @ best val" if validation else "best acc"
    gap = "val gap" if validation else "gap"
    lines = ["# Analog co-simulation: rules × devices", "",
             f"From `sims/analog.toml`: {c.optimizer} lr {c.lr:g} ({c.lr_schedule}), weight decay "
             f"{c.weight_decay:g}, σ {c.sigma:g}, decor lr {c.decor_lr:g}, {c.epochs} epochs, batch {c.batch_size}, "
             f"seeds {spec.seeds}, validation split {c.val_frac:g}. "
             + (f"`{sel}`: test accuracy at each run's best-validation epoch (`epoch`); `{gap}`: best − last "
                "validation accuracy. " if validation else
                "`best acc`: the highest test accuracy over the epochs (`epoch`); `gap`: best − last. ")
             + "Mean ± std over the seeds finished. Drift: PCM inference tiles, global drift compensation, 1 day / "
             "1 year after programming. cos: mean cosine between the intended update −lr·G and the tile's weight "
             "change (first fidelity_steps steps of every epoch).", ""]
    for task in axes["task"]:
        lines += [f"## {task}", "",
                  f"| hardware | method | seeds | {sel} | epoch | last acc | {gap} | 1 day | 1 year | cos | z corr "
                  "| s/epoch |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for hw in axes["hardware"]:
            for method in axes["method"]:
                rec = summ.get((task, hw, method))
                if rec is None or rec["seeds"] == 0:
                    continue
                seeds = f"{rec['seeds']}" + (f" ({rec['diverged']} diverged)" if rec["diverged"] else "")
                cos = fmt(rec["cos"]) if method.startswith("np") else ""
                lines.append(
                    f"| {hw} | {method} | {seeds} | {fmt(rec['sel'])} | {_mean(rec['sel_epoch']):.0f} | "
                    f"{fmt(rec['last'])} | {_mean(rec['gap']):.3f} | {fmt(rec['day'])} | {fmt(rec['year'])} | "
                    f"{cos} | {_mean(rec['corr']):.3f} | {_mean(rec['seconds']):.2f} |")
        lines.append("")
    lines += acceptance_lines(summ)
    text = "\n".join(lines) + "\n"
    with atomic_write(out / "table.md") as f:
        f.write(text)
    return text


def acceptance_lines(summ: dict) -> list[str]:
    def get(task: str, hw: str, method: str, what: str) -> float:
        rec = summ.get((task, hw, method))
        return _mean(rec[what]) if rec and rec[what] else math.nan

    lines = ["## Acceptance checks", "", "| check | measured | target | pass |", "| --- | --- | --- | --- |"]

    def row(name: str, measured: str, target: str, ok: bool | None) -> None:
        lines.append(f"| {name} | {measured} | {target} | {'–' if ok is None else ('yes' if ok else 'NO')} |")

    for (task, hw), target in ((("mnist1d", "fp"), 0.10), (("digits", "ecram-ideal"), 0.0)):
        a, b = get(task, hw, "np+decor", "last"), get(task, hw, "np", "last")
        ok = None if math.isnan(a) or math.isnan(b) else a >= b + target
        row(f"{task} {hw}: NP+decor − NP (last epoch)", f"{a:.3f} − {b:.3f} = {a - b:+.3f}", f"≥ +{target:.2f}", ok)
    for method in FIDELITY_RULES:
        a, b = get("mnist1d", "fp", method, "acc20"), get("mnist1d", "float", method, "acc20")
        ok = None if math.isnan(a) or math.isnan(b) else abs(a - b) <= 0.02
        row(f"mnist1d {method}: analog fp vs float backend, epoch {FIDELITY_EPOCH}",
            f"{a:.3f} vs {b:.3f} (Δ {a - b:+.3f})", "\\|Δ\\| ≤ 0.02", ok)
    a, b = get("mnist1d", "fp", "np+decor", "last"), get("mnist1d", "fp", "np+centre", "last")
    if not (math.isnan(a) or math.isnan(b)):
        row("mnist1d fp: NP+decor − NP+centre (what decorrelation adds to centring)",
            f"{a:.3f} − {b:.3f} = {a - b:+.3f}", "(reported)", None)
    for label, keep in (("fp + ideal-IO Idealized/ConstantStep/EcRAM", lambda hw: hw in CORE_DEVICES),
                        ("noisy IO", lambda hw: hw.endswith("-noisy")),
                        ("other presets (reported)", lambda hw: hw in OTHER_PRESETS)):
        for methods, what in ((("np", "np+centre", "np+decor"), "NP rows at the defaults"),
                              (("np+scaled",), "NP + scaled rule")):
            worst = [(_mean(rec["gap"]), f"{t}/{hw}/{m}") for (t, hw, m), rec in sorted(summ.items())
                     if m in methods and hw != "float" and keep(hw) and rec["gap"]]
            if worst:
                g, name = max(worst)
                row(f"{what}, {label}: largest best − last gap (mean over seeds)", f"{g:.3f} ({name})",
                    "≤ 0.03", g <= 0.03)
    return [*lines, ""]


def plot(spec: SweepSpec, trials: Sequence[Trial], out: Path) -> list[Path]:
    """plots/<task>_curves.png: test accuracy per epoch, one panel per hardware row, one line per method."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    summ = summarise(trials, validation=False)
    axes = {name: [lab for lab, _ in opts] for name, opts in spec.axes}
    paths = []
    for task in axes["task"]:
        hws = [hw for hw in axes["hardware"] if any(summ.get((task, hw, m), {}).get("curves")
                                                     for m in axes["method"])]
        if not hws:
            continue
        cols = min(4, len(hws))
        rows_n = math.ceil(len(hws) / cols)
        fig = Figure(figsize=(4 * cols, 3.2 * rows_n), layout="constrained")
        FigureCanvasAgg(fig)
        grid = fig.subplots(rows_n, cols, squeeze=False, sharey=True)
        for ax, hw in zip(grid.flat, hws, strict=False):
            for i, method in enumerate(axes["method"]):
                rec = summ.get((task, hw, method))
                if not rec or not rec["curves"]:
                    continue
                n = min(len(c) for c in rec["curves"])
                per_epoch = [[c[e] for c in rec["curves"]] for e in range(n)]
                x = range(1, n + 1)
                ax.plot(x, [statistics.fmean(v) for v in per_epoch], label=method, color=f"C{i}")
                ax.fill_between(x, [min(v) for v in per_epoch], [max(v) for v in per_epoch], alpha=0.2,
                                color=f"C{i}")
            ax.set(title=hw, xlabel="epoch", ylim=(0, 1))
            ax.grid(alpha=0.3)
            ax.legend(fontsize="small")
        for ax in grid.flat[len(hws):]:
            ax.axis("off")
        grid[0][0].set_ylabel("test accuracy")
        fig.suptitle(f"{task}: test accuracy (mean over seeds, band = min..max)")
        path = out / "plots" / f"{task}_curves.png"
        with atomic_write(path, "wb") as f:
            fig.savefig(f, format="png", dpi=110)
        paths.append(path)
    return paths


# --------------------------------------------------------------------------------------------------- main
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", nargs="+", help="task rows (default: all in the sweep file)")
    p.add_argument("--hardware", nargs="+", help="hardware rows (default: all)")
    p.add_argument("--methods", nargs="+", help="method rows (default: all)")
    p.add_argument("--seeds", type=int, help="number of seeds 0..n-1 (default: the sweep file's 3)")
    p.add_argument("--epochs", type=int, help="epochs per run (default: the sweep file's 50)")
    p.add_argument("--acceptance", action="store_true", help="run only the rows the acceptance criteria name")
    p.add_argument("--published", action="store_true",
                   help="the published protocol: no validation split, best/last test accuracy")
    add_engine_flags(p, "sims/out/analog")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    order = {key: i for i, key in enumerate(ACCEPTANCE)}

    def select(trials: list[Trial]) -> list[Trial]:  # the acceptance rows first (or only, with --acceptance)
        chosen = [t for t in trials if not args.acceptance or row_key(t) in order]
        return sorted(chosen, key=lambda t: (row_key(t) not in order, t.seed, order.get(row_key(t), 0)))

    code, _ = run_study(args, build_spec, write_table, plot, train=not args.table_only, dry_run=args.dry_run,
                        select=select)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
