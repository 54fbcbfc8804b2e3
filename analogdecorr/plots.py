"""PNG plots of results.json files (matplotlib's Agg canvas directly: no pyplot, no global backend change).

Every PNG is written atomically, so an interrupted plot never leaves a truncated image.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .atomic import atomic_write
from .errors import DataError
from .results import read_results

LEARNING_CURVES = "learning_curves.png"
CORRELATION = "correlation.png"
DRIFT = "drift.png"
COSIM = "cosim.png"
CORR_MATRICES = "corr_matrices.png"
DIAGNOSTICS = "diagnostics.png"

METRIC_LABELS = {
    "train_loss": "train loss",
    "test_loss": "test loss",
    "train_acc": "train accuracy",
    "test_acc": "test accuracy",
    "running_train_loss": "running train loss",
    "seconds": "seconds per epoch",
    "lr": "learning rate",
    "update_cosine": "cosine(pulsed update, exact update)",
}
_DPI = 110


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path) -> Path:
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=_DPI)
    return path


def _num(v: Any) -> float:
    """A plotted value: None/non-numbers (e.g. NaN written as null) become NaN, i.e. a gap in the line."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return math.nan
    return float(v)


def _epoch_axis(epochs: Sequence[dict]) -> list[float]:
    return [_num(row.get("epoch", i + 1)) for i, row in enumerate(epochs)]


def _title(data: dict) -> str:
    cfg = data.get("config", {}) or {}
    parts = [run_label(data)]
    if cfg.get("dataset"):
        parts.append(f"on {cfg['dataset']}")
    if cfg.get("backend") == "analog":
        parts.append(f"(analog, {cfg.get('preset', '?')})")
    return " ".join(parts)


def run_label(data: dict) -> str:
    """"rule+decor" of a results dict, e.g. "np+scaled" (used as the legend entry)."""
    cfg = data.get("config", {}) or {}
    return f"{cfg.get('rule', '?')}+{cfg.get('decor', '?')}"


# ---------------------------------------------------------------------------------------- single run
def plot_results(results_path: str | Path, out_dir: str | Path) -> list[Path]:
    """Write the PNGs a run's results support into ``out_dir`` and return their paths.

    learning_curves.png (loss and accuracy vs epoch) and correlation.png (mean |off-diagonal correlation| of
    each layer's input before and after decorrelation) when there are epochs; drift.png when the results hold
    a "drift" section; corr_matrices.png when they hold "corr_matrices"; cosim.png (per layer: distance of the
    unit's R and z from the shadow float decorrelator, saturated words per epoch) for fixed-numerics runs;
    diagnostics.png (per layer: condition number and extreme eigenvalues of ⟨zzᵀ⟩, mean |off-diagonal
    correlation|, NP's cosine with the true gradient) when the epochs hold the spectra ("zz_cond").
    DataError if the file is missing or corrupt.
    """
    data = read_results(results_path)
    out = Path(out_dir)
    written: list[Path] = []
    epochs = [row for row in data["epochs"] if isinstance(row, dict)]
    if epochs:
        written.append(_learning_curves(data, epochs, out / LEARNING_CURVES))
        path = _correlation_panel(data, epochs, out / CORRELATION)
        if path:
            written.append(path)
    drift = data.get("drift")
    if isinstance(drift, list) and drift:
        path = _drift_plot(data, drift, out / DRIFT)
        if path:
            written.append(path)
    if any(isinstance(r.get("zz_cond"), list) for r in epochs):
        written.append(_diagnostics_panel(data, epochs, out / DIAGNOSTICS))
    if any(isinstance(r.get("cosim"), list) for r in epochs):
        written.append(_cosim_panel(data, epochs, out / COSIM))
    mats = data.get("corr_matrices")
    if isinstance(mats, list) and mats:
        path = _corr_matrices(data, mats, out / CORR_MATRICES)
        if path:
            written.append(path)
    return written


def _layer_series(epochs: list[dict], key: str, layer: int) -> list[float]:
    """Layer ``layer``'s value of the per-layer list ``key`` in every epoch row (NaN where absent)."""
    out = []
    for r in epochs:
        vals = r.get(key) or []
        out.append(_num(vals[layer]) if isinstance(vals, list) and layer < len(vals) else math.nan)
    return out


def _positive(values: list[float]) -> list[float]:
    """Values for a log axis: non-positive ones become gaps."""
    return [v if v > 0 else math.nan for v in values]


def _diagnostics_panel(data: dict, epochs: list[dict], path: Path) -> Path:
    """Per layer and epoch: condition number of ⟨zzᵀ⟩ (log), its top and bottom eigenvalues (log), mean
    |off-diagonal correlation| of z, and NP's cosine with the true gradient next to the pulsed-update cosine."""
    x = _epoch_axis(epochs)
    n_layers = max((len(r.get("zz_cond") or []) for r in epochs), default=0)
    fig = _new_figure(11, 7.5)
    (ax_cond, ax_eig), (ax_corr, ax_cos) = fig.subplots(2, 2)
    for layer in range(n_layers):
        color = f"C{layer % 10}"
        label = f"layer {layer}"
        ax_cond.plot(x, _positive(_layer_series(epochs, "zz_cond", layer)), marker=".", color=color, label=label)
        ax_eig.plot(x, _positive(_layer_series(epochs, "zz_eig_max", layer)), marker=".", color=color,
                    label=f"{label} top")
        ax_eig.plot(x, _positive(_layer_series(epochs, "zz_eig_min", layer)), "--", color=color,
                    label=f"{label} bottom")
        ax_corr.plot(x, _layer_series(epochs, "corr_after", layer), marker=".", color=color, label=label)
        if any(isinstance(r.get("grad_cosine"), list) for r in epochs):
            ax_cos.plot(x, _layer_series(epochs, "grad_cosine", layer), marker=".", color=color,
                        label=f"{label}: cos(NP update, gradient)")
    if any("update_cosine" in r for r in epochs):
        ax_cos.plot(x, [_num(r.get("update_cosine")) for r in epochs], "k--", marker=".",
                    label="cos(pulsed, intended update), all layers")
    ax_cond.set_yscale("log")
    ax_eig.set_yscale("log")
    ax_cond.set(xlabel="epoch", ylabel="λ_max / λ_min", title="condition number of cov(z)")
    ax_eig.set(xlabel="epoch", ylabel="eigenvalue", title="top (solid) / bottom (dashed) eigenvalue of cov(z)")
    ax_corr.set(xlabel="epoch", ylabel="mean |off-diagonal correlation|", title="correlation of z")
    ax_corr.set_ylim(bottom=0)
    ax_cos.set(xlabel="epoch", ylabel="cosine", title="NP update vs true gradient (probe batch)", ylim=(-1.02, 1.02))
    for ax in (ax_cond, ax_eig, ax_corr, ax_cos):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="x-small")
    if not ax_cos.lines:
        ax_cos.text(0.5, 0.5, "no NP cosines in this run", ha="center", va="center", transform=ax_cos.transAxes)
    fig.suptitle(f"{_title(data)}: diagnostics of the decorrelated layer inputs z")
    return _save(fig, path)


def _cosim_panel(data: dict, epochs: list[dict], path: Path) -> Path:
    """Fixed-numerics runs: relative distance of each layer's R and z from float, and its saturation counts."""
    x = _epoch_axis(epochs)
    layers = sorted({c["layer"] for r in epochs for c in r.get("cosim") or [] if isinstance(c, dict)})
    fig = _new_figure(10, 4)
    ax_dist, ax_sat = fig.subplots(1, 2)

    def series(layer: int, get: Any) -> list[float]:
        out = []
        for r in epochs:
            row = next((c for c in r.get("cosim") or [] if c.get("layer") == layer), None)
            out.append(_num(get(row)) if row else float("nan"))
        return out

    for layer in layers:
        line = ax_dist.plot(x, series(layer, lambda c: c.get("r_rel_dist")), marker=".", label=f"layer {layer} R")
        ax_dist.plot(x, series(layer, lambda c: c.get("z_rel_dist")), "--", color=line[0].get_color(),
                     label=f"layer {layer} z")
        ax_sat.plot(x, series(layer, lambda c: sum((c.get("saturation") or {}).values())), marker=".",
                    label=f"layer {layer}")
    ax_dist.set(xlabel="epoch", ylabel="‖fixed − float‖ / ‖float‖", title="distance from float decorrelation")
    ax_sat.set(xlabel="epoch", ylabel="saturated words per epoch", title="saturation (all quantities)")
    for ax in (ax_dist, ax_sat):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.suptitle(_title(data))
    return _save(fig, path)


def _learning_curves(data: dict, epochs: list[dict], path: Path) -> Path:
    x = _epoch_axis(epochs)
    fig = _new_figure(10, 4)
    ax_loss, ax_acc = fig.subplots(1, 2)
    for split, style in (("train", "-"), ("test", "--")):
        ax_loss.plot(x, [_num(r.get(f"{split}_loss")) for r in epochs], style, marker=".", label=split)
        ax_acc.plot(x, [_num(r.get(f"{split}_acc")) for r in epochs], style, marker=".", label=split)
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy", ylim=(0, 1.02))
    for ax in (ax_loss, ax_acc):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(_title(data))
    return _save(fig, path)


def _correlation_panel(data: dict, epochs: list[dict], path: Path) -> Path | None:
    n_layers = max((len(r.get("corr_before") or []) for r in epochs), default=0)
    n_layers = max(n_layers, max((len(r.get("corr_after") or []) for r in epochs), default=0))
    if n_layers == 0:
        return None
    x = _epoch_axis(epochs)
    fig = _new_figure(9, 4.5)
    ax = fig.subplots()
    colors = [f"C{i % 10}" for i in range(n_layers)]

    def series(key: str, layer: int) -> list[float]:
        out = []
        for r in epochs:
            vals = r.get(key) or []
            out.append(_num(vals[layer]) if layer < len(vals) else math.nan)
        return out

    for layer in range(n_layers):
        ax.plot(x, series("corr_before", layer), "--", color=colors[layer], label=f"layer {layer} input")
        ax.plot(x, series("corr_after", layer), "-", marker=".", color=colors[layer],
                label=f"layer {layer} decorrelated")
    ax.set(xlabel="epoch", ylabel="mean |off-diagonal correlation|",
           title=f"{_title(data)}: before (dashed) / after (solid) decorrelation")
    ax.set_ylim(bottom=0)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(fig, path)


def _drift_plot(data: dict, drift: list, path: Path) -> Path | None:
    groups: dict[bool, list[tuple[float, float]]] = {}
    for row in drift:
        if not isinstance(row, dict):
            continue
        t, acc = _num(row.get("t_seconds")), _num(row.get("acc"))
        if math.isfinite(t) and t > 0 and math.isfinite(acc):
            groups.setdefault(bool(row.get("compensated", False)), []).append((t, acc))
    if not groups:
        return None
    fig = _new_figure(7, 4.5)
    ax = fig.subplots()
    for comp in sorted(groups, reverse=True):
        pts = sorted(groups[comp])
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "-" if comp else "--", marker="o",
                label="with drift compensation" if comp else "without compensation")
    ax.set_xscale("log")
    for t, name in ((1, "1 s"), (3600, "1 h"), (86400, "1 d"), (2592000, "30 d"), (31536000, "1 y")):
        ax.axvline(t, color="0.85", lw=0.8, zorder=0)
        ax.annotate(name, (t, 1.0), xycoords=("data", "axes fraction"), fontsize="x-small", color="0.5",
                    ha="left", va="top")
    ax.set(xlabel="time after programming (s)", ylabel="test accuracy", title=f"{_title(data)}: drift",
           ylim=(0, 1.02))
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)


def _as_matrix(m: Any) -> list[list[float]] | None:
    if not isinstance(m, list) or not m or not all(isinstance(r, list) and r for r in m):
        return None
    if len({len(r) for r in m}) != 1:
        return None
    return [[_num(v) for v in r] for r in m]


def _mean_abs_offdiag(m: list[list[float]]) -> float:
    d = len(m)
    vals = [abs(m[i][j]) for i in range(d) for j in range(len(m[i])) if i != j and math.isfinite(m[i][j])]
    return sum(vals) / len(vals) if vals else math.nan


def _corr_matrices(data: dict, mats: list, path: Path) -> Path | None:
    rows = []
    for i, entry in enumerate(mats):
        if not isinstance(entry, dict):
            continue
        before, after = _as_matrix(entry.get("before")), _as_matrix(entry.get("after"))
        if before is not None and after is not None:
            rows.append((entry.get("layer", i), before, after))
    if not rows:
        return None
    fig = _new_figure(9, 4.2 * len(rows))
    axes = fig.subplots(len(rows), 2, squeeze=False)
    image = None
    for (layer, before, after), (ax_b, ax_a) in zip(rows, axes, strict=True):
        for ax, m, name in ((ax_b, before, "before"), (ax_a, after, "after")):
            image = ax.imshow(m, vmin=-1, vmax=1, cmap="RdBu_r", interpolation="nearest")
            ax.set_title(f"layer {layer} {name} decorrelation\nmean |off-diag| = {_mean_abs_offdiag(m):.3f}",
                         fontsize="medium")
            ax.set(xlabel="feature", ylabel="feature")
    fig.colorbar(image, ax=axes, shrink=0.8, label="correlation")
    fig.suptitle(_title(data))
    return _save(fig, path)


# ---------------------------------------------------------------------------------------- several runs
def plot_comparison(
    results_paths: Iterable[str | Path], out_png: str | Path, metric: str = "test_acc"
) -> Path:
    """Overlay ``metric`` vs epoch of several runs in one PNG (legend: rule+decor, plus the run folder when
    two runs share a label). DataError if a file is missing/corrupt or no run has ``metric``."""
    paths = [Path(p) for p in results_paths]
    if not paths:
        raise DataError("plot_comparison needs at least one results.json")
    runs = [(p, read_results(p)) for p in paths]
    available = sorted({k for _, d in runs for r in d["epochs"] if isinstance(r, dict) for k in r
                        if k != "epoch" and isinstance(r[k], (int, float)) and not isinstance(r[k], bool)})
    if metric not in available:
        raise DataError(
            f"no run has the metric {metric!r}; choose one of {', '.join(available) or '(no epochs yet)'}"
        )
    labels = [run_label(d) for _, d in runs]
    labels = [f"{lab} ({p.name if p.is_dir() else p.parent.name})" if labels.count(lab) > 1 else lab
              for (p, _), lab in zip(runs, labels, strict=True)]
    labels = [f"{lab} [{i + 1}]" if labels.count(lab) > 1 else lab for i, lab in enumerate(labels)]
    fig = _new_figure(8, 5)
    ax = fig.subplots()
    for (_, d), label in zip(runs, labels, strict=True):
        epochs = [r for r in d["epochs"] if isinstance(r, dict)]
        ax.plot(_epoch_axis(epochs), [_num(r.get(metric)) for r in epochs], marker=".", label=label)
    name = METRIC_LABELS.get(metric, metric)
    ax.set(xlabel="epoch", ylabel=name, title=f"{name} per epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if metric.endswith("_acc"):
        ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return _save(fig, Path(out_png))
