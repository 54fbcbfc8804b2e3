"""A sweep's tables and plot: one row per setting, mean ± std over seeds at each run's selected epoch.

Each run's epoch is its best-validation epoch (``select = "validation"``) or its last; the row gives the sweep's
metric there, the test accuracy there (test accuracy is never used to choose anything) and at the last epoch,
and how far validation accuracy fell from its best epoch to the last (best − last: what a run forgot). Last come
the columns the sweep file chooses ([sweep] diagnostics, :data:`DIAGNOSTICS`; default the condition number of
⟨z zᵀ⟩): a per-layer diagnostic is the first and the last layer's value at the selected epoch, median over the
seeds that recorded it; a per-run figure (seconds per epoch) the run's mean over its epochs, mean ± std over the
seeds; each left out when no run recorded it.
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..atomic import atomic_write
from ..results import run_summary
from .diagnostic_columns import DIAGNOSTIC_BY_KEY, DIAGNOSTICS, Diagnostic, mean_std, number
from .spec import DIVERGED, RESULTS, SweepSpec, Trial


@dataclass
class SettingRow:
    """The figures of one setting over its finished seeds."""

    setting: tuple[tuple[str, str], ...]
    overrides: dict[str, Any]
    seeds: int = 0  # trials of this setting in the sweep
    done: int = 0  # finished (results or diverged)
    diverged: int = 0
    metric: list[float] = field(default_factory=list)  # at the selected epoch, per seed
    val_best: list[float] = field(default_factory=list)  # best val_acc over the epochs, per seed
    val_last: list[float] = field(default_factory=list)  # val_acc at the last epoch, per seed
    test_selected: list[float] = field(default_factory=list)
    test_last: list[float] = field(default_factory=list)
    epoch: list[int] = field(default_factory=list)
    curves: list[list[float]] = field(default_factory=list)  # metric per epoch, per seed
    #: DIAGNOSTICS key → per seed that recorded it, the run's figure (Diagnostic.figure)
    figures: dict[str, list[Any]] = field(default_factory=dict)
    chosen: str | None = None  # a tuned row: its chosen setting (or how far its search is), else None

    @property
    def gap(self) -> list[float]:
        """Per seed, best − last validation accuracy (0 for a run that ends at its best; NaN without one)."""
        return [a - b for a, b in zip(self.val_best, self.val_last, strict=True)]

    def figures_of(self, d: Diagnostic) -> list[Any]:
        """``d``'s figure of each run that recorded it (none: the column is left out unless another row has it)."""
        return self.figures.get(d.key, [])

    @property
    def settings_text(self) -> str:
        return " ".join(f"{k}={_text(v)}" for k, v in self.overrides.items())


def load_run(trial: Trial) -> dict[str, Any] | None:
    """The trial's results.json if it holds every epoch; {"diverged": True} if it diverged; else None."""
    if (trial.out / DIVERGED).exists():
        return {"diverged": True}
    try:
        data = json.loads((trial.out / RESULTS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if len(data.get("epochs", [])) >= trial.config.epochs else None


def selected_epoch(data: dict[str, Any], select: str) -> dict[str, Any]:
    """The epoch row a run is judged at: its best-validation epoch or its last."""
    rows = data["epochs"]
    if select == "validation":
        best = (data.get("summary") or run_summary(rows)).get("best_val_epoch")
        if best is not None:
            return next(r for r in rows if r["epoch"] == best)
    return rows[-1]


def summarise(spec: SweepSpec, trials: Sequence[Trial]) -> list[SettingRow]:
    """One SettingRow per setting, in grid order."""
    rows: dict[tuple, SettingRow] = {}
    for trial in trials:
        add_run(rows.setdefault(trial.setting, SettingRow(trial.setting, dict(trial.overrides))), trial,
                spec.select, spec.metric)
    return list(rows.values())


def add_run(row: SettingRow, trial: Trial, select: str, metric: str) -> None:
    """Count ``trial`` in ``row`` and, if it finished, add its figures at its selected epoch."""
    row.seeds += 1
    data = load_run(trial)
    if data is None:
        return
    row.done += 1
    if data.get("diverged"):
        row.diverged += 1
        return
    chosen = selected_epoch(data, select)
    row.metric.append(number(chosen.get(metric)))
    vals = [number(r.get("val_acc")) for r in data["epochs"]]
    row.val_best.append(max(vals) if vals and all(math.isfinite(v) for v in vals) else math.nan)
    row.val_last.append(vals[-1] if vals else math.nan)
    row.test_selected.append(number(chosen.get("test_acc")))
    row.test_last.append(number(data["epochs"][-1].get("test_acc")))
    row.epoch.append(int(chosen["epoch"]))
    row.curves.append([number(r.get(metric)) for r in data["epochs"]])
    for d in DIAGNOSTICS:
        figure = d.figure(chosen, data["epochs"])
        if figure is not None:
            row.figures.setdefault(d.key, []).append(figure)


def best_row(spec: SweepSpec, rows: Sequence[SettingRow]) -> SettingRow | None:
    """The setting with the best mean metric (over settings with at least one finished, non-diverged seed)."""
    scored = [(mean_std(r.metric)[0], i, r) for i, r in enumerate(rows) if r.metric]
    scored = [s for s in scored if math.isfinite(s[0])]
    if not scored:
        return None
    pick = min if spec.mode == "min" else max
    return pick(scored, key=lambda s: (s[0], -s[1]) if spec.mode == "max" else (s[0], s[1]))[2]


def welch_p(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided Welch t-test p-value of the finite values of ``a`` against ``b`` (unequal variances); NaN with
    fewer than 2 values on a side or no variance on either (the test is undefined there)."""
    a = [v for v in a if math.isfinite(v)]
    b = [v for v in b if math.isfinite(v)]
    if len(a) < 2 or len(b) < 2 or statistics.variance(a) + statistics.variance(b) == 0:
        return math.nan
    from scipy.stats import ttest_ind

    with warnings.catch_warnings():  # zero variance on both sides: scipy warns and returns NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        p = float(ttest_ind(a, b, equal_var=False).pvalue)
    return p if math.isfinite(p) else math.nan


def reference_row(spec: SweepSpec, rows: Sequence[SettingRow], row: SettingRow) -> SettingRow | None:
    """The row ``row`` is tested against: the setting matching [sweep] baseline whose other axes equal the
    row's own, or (no baseline) the best setting."""
    if not spec.baseline:
        return best_row(spec, rows)
    labels = dict(row.setting)
    want = {n: spec.baseline.get(n, labels[n]) for n in spec.axis_names}
    return next((r for r in rows if dict(r.setting) == want), None)


def p_values(spec: SweepSpec, rows: Sequence[SettingRow], figure: str = "metric") -> list[float]:
    """Per row, the Welch p-value of its seeds' ``figure`` (a SettingRow list: the metric, or test_selected)
    against its reference row's (NaN for the reference itself, or too few seeds)."""
    out = []
    for r in rows:
        ref = reference_row(spec, rows, r)
        out.append(math.nan if ref is None or ref is r else welch_p(getattr(r, figure), getattr(ref, figure)))
    return out


def fmt_p(p: float) -> str:
    """A p-value for the table: 3 decimals, 2 significant digits below 0.001, – when undefined."""
    if math.isnan(p):
        return "–"
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def shown_diagnostics(spec: SweepSpec, rows: Sequence[SettingRow]) -> list[Diagnostic]:
    """The sweep file's diagnostics, in its order, that at least one row's runs recorded."""
    return [d for d in (DIAGNOSTIC_BY_KEY[k] for k in spec.diagnostics) if any(r.figures_of(d) for r in rows)]


def diagnostics_legend(shown: Sequence[Diagnostic]) -> str:
    """The legend sentences of the diagnostic columns, one per kind of reduction (per layer, per run) in
    DIAGNOSTICS order ("" for none)."""
    text = ""
    for reduction in dict.fromkeys(d.reduction for d in DIAGNOSTICS):
        kind = [d for d in shown if d.reduction == reduction]
        if kind:
            items = "; ".join(f"`{d.column}`: {d.meaning}" for d in kind) + ("; each" if len(kind) > 1 else "")
            keys = ", ".join(d.key for d in kind)
            text += f" {items}{reduction.format(keys=keys)} (– where the runs did not record it)."
    return text


def fmt(values: Sequence[float], digits: int = 3) -> str:
    m, s = mean_std(values)
    if math.isnan(m):
        return "–"
    if len([v for v in values if math.isfinite(v)]) == 1:
        return f"{m:.{digits}f}"
    return f"{m:.{digits}f} ± {s:.{digits}f}"


def markdown(spec: SweepSpec, rows: Sequence[SettingRow], note: str = "") -> str:
    """The summary table as Markdown (best setting on the metric marked with *; a `chosen` column for tuned
    rows; ``note`` is a paragraph under the title)."""
    best = best_row(spec, rows)
    ps = p_values(spec, rows)
    sel = "best-validation epoch" if spec.select == "validation" else "last epoch"
    if spec.baseline:
        ref = " ".join(f"{k}={v}" for k, v in spec.baseline.items())
        against = f"the baseline {ref}" + (" with the row's other settings" if
                                           len(spec.baseline) < len(spec.axis_names) else "")
    else:
        against = "the best setting (*)"
    lines = [
        f"# Sweep {spec.name}: {spec.metric} at each run's {sel}, mean ± std over seeds",
        "",
        f"Seeds {spec.seeds}. `test acc @ sel.`: test accuracy at the selected epoch; `epoch`: mean selected "
        f"epoch; `*`: best setting on {spec.metric} ({'lowest' if spec.mode == 'min' else 'highest'} mean); "
        f"`p`: two-sided Welch t-test of the row's seeds' {spec.metric} against {against} (– for the "
        "reference itself or fewer than 2 seeds a side). `val best − last`: per seed, the best validation "
        "accuracy over the epochs minus the last epoch's (a run that ends where it peaked has 0).",
        "",
    ]
    tuned = any(r.chosen is not None for r in rows)
    if tuned:  # nothing is chosen from this table any more: the reported figure gets its own test
        lines[-2] += " `p test`: the same test on test accuracy at the selected epoch."
    shown = shown_diagnostics(spec, rows)
    lines[-2] += diagnostics_legend(shown)
    if note:
        lines += [note, ""]
    names = spec.axis_names
    p_test = p_values(spec, rows, "test_selected") if tuned else []
    head = [*names, *(["chosen"] if tuned else []), "seeds", spec.metric, "p", "test acc @ sel.",
            *(["p test"] if tuned else []), "epoch", "test acc (last)", "val best − last", "settings",
            *(d.column for d in shown)]
    lines += ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for i, (r, p) in enumerate(zip(rows, ps, strict=True)):
        labels = dict(r.setting)
        seeds = f"{r.done}/{r.seeds}" + (f" ({r.diverged} diverged)" if r.diverged else "")
        ep = f"{statistics.fmean(r.epoch):.1f}" if r.epoch else "–"
        mark = " *" if r is best else ""
        cells = [labels[n] for n in names] + ([r.chosen or "–"] if tuned else []) + [
            seeds, fmt(r.metric) + mark, fmt_p(p), fmt(r.test_selected), *([fmt_p(p_test[i])] if tuned else []),
            ep, fmt(r.test_last), fmt(r.gap), f"`{r.settings_text}`", *(d.cell(r.figures_of(d)) for d in shown)]
        lines.append("| " + " | ".join(cells) + " |")
    if best is not None:
        lines += ["", f"Best setting: {' '.join(f'{k}={v}' for k, v in best.setting)} ({best.settings_text}): "
                      f"{spec.metric} {fmt(best.metric)}, test accuracy at the selected epoch "
                      f"{fmt(best.test_selected)}."]
    return "\n".join(lines) + "\n"


def csv_text(spec: SweepSpec, rows: Sequence[SettingRow]) -> str:
    """The summary table as CSV (one row per setting; means, sample stds and the settings)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    tuned = any(r.chosen is not None for r in rows)
    shown = shown_diagnostics(spec, rows)
    w.writerow([*spec.axis_names, *(["chosen"] if tuned else []), "seeds", "done", "diverged",
                f"{spec.metric}_mean", f"{spec.metric}_std", "p",
                "test_acc_selected_mean", "test_acc_selected_std", *(["p_test"] if tuned else []), "epoch_mean",
                "test_acc_last_mean", "test_acc_last_std", "val_best_minus_last_mean", "val_best_minus_last_std",
                "settings", *(name for d in shown for name in d.csv_names)])
    p_test = p_values(spec, rows, "test_selected") if tuned else [math.nan] * len(rows)
    for r, p, pt in zip(rows, p_values(spec, rows), p_test, strict=True):
        labels = dict(r.setting)
        m, s = mean_std(r.metric)
        tm, ts = mean_std(r.test_selected)
        lm, ls = mean_std(r.test_last)
        gm, gs = mean_std(r.gap)
        ep = statistics.fmean(r.epoch) if r.epoch else math.nan
        w.writerow([*(labels[n] for n in spec.axis_names), *([r.chosen or ""] if tuned else []), r.seeds,
                    r.done, r.diverged,
                    *(_cell(v) for v in (m, s, p, tm, ts, *([pt] if tuned else []), ep, lm, ls, gm, gs)),
                    r.settings_text, *(_cell(v) for d in shown for v in d.over_seeds(r.figures_of(d)))])
    return buf.getvalue()


def plot(spec: SweepSpec, rows: Sequence[SettingRow], path: Path) -> Path | None:
    """The metric against the swept numeric key (one line per combination of the other axes), or else each
    setting's learning curve (metric per epoch, mean over seeds). None if nothing has finished."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = [r for r in rows if r.metric]
    if not rows:
        return None
    fig = Figure(figsize=(7.5, 4.8), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    key = spec.plot or next((n for n in spec.axis_names
                             if n != "sample" and all(_is_number(v) for v in _axis_values(spec, n))), None)
    if key is not None and key in spec.axis_names:
        others = [n for n in spec.axis_names if n != key]
        lines: dict[tuple, list[tuple[float, float, float]]] = {}
        for r in rows:
            labels = dict(r.setting)
            m, s = mean_std(r.metric)
            lines.setdefault(tuple(labels[n] for n in others), []).append((float(labels[key]), m, s))
        for i, (name, pts) in enumerate(sorted(lines.items())):
            pts.sort()
            xs, ms, ss = zip(*pts, strict=True)
            ax.errorbar(xs, ms, yerr=ss, marker="o", capsize=3, color=f"C{i % 10}",
                        label=" ".join(f"{n}={v}" for n, v in zip(others, name, strict=True)) or spec.metric)
        numeric = [float(v) for v in _axis_values(spec, key)]
        if min(numeric) > 0 and max(numeric) / min(numeric) >= 10:
            ax.set_xscale("log")
        ax.set(xlabel=key, ylabel=f"{spec.metric} (mean ± std over seeds)")
    else:
        seeds = {len(r.curves) for r in rows}
        for i, r in enumerate(rows):
            n = min(len(c) for c in r.curves)
            epochs = range(1, n + 1)
            band = [mean_std([c[e] for c in r.curves]) for e in range(n)]
            mean = [m for m, _ in band]
            label = " ".join(v if len(r.setting) == 1 else f"{k}={v}" for k, v in r.setting)
            ax.plot(epochs, mean, marker=".", color=f"C{i % 10}", label=label)
            if len(r.curves) > 1:
                ax.fill_between(epochs, [m - s for m, s in band], [m + s for m, s in band], color=f"C{i % 10}",
                                alpha=0.2, linewidth=0)
        over = f"{seeds.pop()} seeds" if len(seeds) == 1 else "seeds"
        ax.set(xlabel="epoch", ylabel=f"{spec.metric} (mean ± std over {over})")
    ax.set_title(spec.title or f"sweep {spec.name}")
    ax.grid(alpha=0.3)
    if len(ax.get_legend_handles_labels()[0]) <= 20:
        ax.legend(fontsize="small")
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=110)
    return path


def write_summary(spec: SweepSpec, trials: Sequence[Trial], out: str | Path) -> list[Path]:
    """summary.md, summary.csv and summary.png in ``out`` (each written atomically); returns the paths.

    One row per setting of ``trials``; a tuned sweep's table (one row per tuned row, with search.md and
    chosen.toml) is :func:`analogdecorr.sweep.tune.write_tuned_summary`."""
    return write_tables(spec, summarise(spec, trials), Path(out))


def write_tables(spec: SweepSpec, rows: Sequence[SettingRow], out: Path, note: str = "") -> list[Path]:
    """summary.md, summary.csv and summary.png of ``rows`` in ``out``; returns the paths."""
    paths = []
    for name, text in (("summary.md", markdown(spec, rows, note)), ("summary.csv", csv_text(spec, rows))):
        with atomic_write(out / name) as f:
            f.write(text)
        paths.append(out / name)
    png = plot(spec, rows, out / "summary.png")
    if png is not None:
        paths.append(png)
    return paths


def _axis_values(spec: SweepSpec, name: str) -> list[str]:
    return next(labels for n, labels in ((n, [lab for lab, _ in opts]) for n, opts in spec.axes) if n == name)


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _cell(v: float) -> str:
    return "" if math.isnan(v) else f"{v:.6g}"


def _text(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return ",".join(_text(x) for x in v)
    if isinstance(v, dict):
        return "{" + ",".join(f"{k}={_text(x)}" for k, x in v.items()) + "}"
    return str(v)
