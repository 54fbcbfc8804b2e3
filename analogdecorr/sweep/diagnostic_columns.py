"""The optional columns a sweep summary can show ([sweep] diagnostics): per-layer diagnostics and run-level
figures such as seconds per epoch; one declaration, read by the sweep file's checks (spec) and by the summary's
tables (summary)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass


def fmt_sig3(v: float) -> str:
    """3 significant digits, scientific when large or small (condition numbers, eigenvalues)."""
    return f"{v:.3g}"


def fmt_dec3(v: float) -> str:
    """3 decimals (correlations, cosines)."""
    return f"{v:.3f}"


def fmt_dec2(v: float) -> str:
    """2 decimals (seconds)."""
    return f"{v:.2f}"


def fmt_int(v: float) -> str:
    """A count (a median of two counts may end in .5)."""
    return f"{v:g}"


def number(v: object) -> float:
    """A results.json value as a float (NaN for anything that is not a number, e.g. a missing key's None)."""
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan


def _finite(values: Sequence[float]) -> list[float]:
    return [v for v in values if math.isfinite(v)]


def _median(values: Sequence[float]) -> float:
    vals = _finite(values)
    return statistics.median(vals) if vals else math.nan


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample std (ddof 1; 0 for one value) of the finite values; NaN for none. How a run figure, and
    every accuracy column of the summary, is reduced over the seeds."""
    vals = _finite(values)
    if not vals:
        return math.nan, math.nan
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0)


@dataclass(frozen=True)
class Diagnostic:
    """A per-layer figure of results.json's epoch rows (the row's key is a list, one value per layer): a run's
    figure is the first and the last layer's value at the selected epoch; over the seeds, the median of each.
    :class:`RunFigure` is the per-run kind; the summary reads both through the same methods."""

    key: str  # the epoch row's key; also the [sweep] diagnostics name and the prefix of summary.csv's columns
    column: str  # summary.md's header
    formatter: Callable[[float], str]  # one value in summary.md
    meaning: str  # what the column holds, in the legend sentence under the title
    #: how the legend says a column of this kind was reduced (it follows the columns' meanings)
    reduction = " at the selected epoch (results.json's {keys}), median over the seeds"

    @property
    def csv_names(self) -> tuple[str, str]:
        """summary.csv's two columns."""
        return f"{self.key}_first_median", f"{self.key}_last_median"

    def figure(self, selected: dict, epochs: Sequence[dict]) -> tuple[float, float] | None:
        """One run's figure (None if it did not record it): the first and the last layer at ``selected``."""
        layers = selected.get(self.key)
        return (number(layers[0]), number(layers[-1])) if isinstance(layers, list) and layers else None

    def over_seeds(self, figures: Sequence[tuple[float, float]]) -> tuple[float, float]:
        """summary.csv's two values: the median over the seeds of the first and of the last layer (NaN: none)."""
        return _median([f[0] for f in figures]), _median([f[1] for f in figures])

    def cell(self, figures: Sequence[tuple[float, float]]) -> str:
        """summary.md's cell: first / last layer; – for a layer (or both) not recorded."""
        pair = self.over_seeds(figures)
        return "–" if all(math.isnan(v) for v in pair) else " / ".join(
            "–" if math.isnan(v) else self.formatter(v) for v in pair)


@dataclass(frozen=True)
class RunFigure(Diagnostic):
    """A per-run figure (the epoch row's key is one number per epoch, e.g. seconds): a run's figure is the mean of
    its epochs' finite values; over the seeds, mean ± std."""

    reduction = ", mean over each run's epochs (results.json's {keys}), then mean ± std over the seeds"

    @property
    def csv_names(self) -> tuple[str, str]:
        return f"{self.key}_mean", f"{self.key}_std"

    def figure(self, selected: dict, epochs: Sequence[dict]) -> float | None:  # type: ignore[override]
        values = _finite([number(e.get(self.key)) for e in epochs])
        return statistics.fmean(values) if values else None

    def over_seeds(self, figures: Sequence[float]) -> tuple[float, float]:  # type: ignore[override]
        """Mean and sample std (0 for one seed; NaN for none)."""
        return mean_std(figures)

    def cell(self, figures: Sequence[float]) -> str:  # type: ignore[override]
        """mean ± std (the value alone for one seed, – for none)."""
        mean, std = mean_std(figures)
        if math.isnan(mean):
            return "–"
        return self.formatter(mean) if len(_finite(figures)) == 1 else f"{self.formatter(mean)} ± {self.formatter(std)}"


_ZZ = "the centred ⟨z zᵀ⟩ of the first and the last layer's decorrelated input"
#: Every figure a sweep file may list in [sweep] diagnostics (schema: analogdecorr/results.py).
DIAGNOSTICS: tuple[Diagnostic, ...] = (
    Diagnostic("zz_cond", "cond ⟨zzᵀ⟩ L0 / last", fmt_sig3, f"the condition number of {_ZZ}"),
    Diagnostic("zz_eig_max", "λ_max ⟨zzᵀ⟩ L0 / last", fmt_sig3, f"the largest eigenvalue of {_ZZ}"),
    Diagnostic("zz_eig_min", "λ_min ⟨zzᵀ⟩ L0 / last", fmt_sig3, f"the smallest eigenvalue of {_ZZ}"),
    Diagnostic("zz_rank", "rank ⟨zzᵀ⟩ L0 / last", fmt_int,
               f"the rank (eigenvalues above 1e-10·λ_max) of {_ZZ}"),
    Diagnostic("corr_after", "corr after L0 / last", fmt_dec3,
               "the mean absolute off-diagonal correlation of the first and the last layer's decorrelated input"),
    Diagnostic("corr_before", "corr before L0 / last", fmt_dec3,
               "the mean absolute off-diagonal correlation of the first and the last layer's input before "
               "decorrelation"),
    Diagnostic("grad_cosine", "cos(NP, ∇) L0 / last", fmt_dec3,
               "the cosine of NP's weight update with the true gradient of the first and the last layer (NP runs "
               "with probe_size > 0 only)"),
    RunFigure("seconds", "s/epoch", fmt_dec2, "seconds per epoch of training (its batches, not its evaluation)"),
)
DIAGNOSTIC_BY_KEY = {d.key: d for d in DIAGNOSTICS}
