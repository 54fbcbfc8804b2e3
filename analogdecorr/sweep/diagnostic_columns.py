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


@dataclass(frozen=True)
class Diagnostic:
    """A figure of results.json's epoch rows the summary can show. Per layer (the row's key is a list, one value
    per layer): the first and the last layer's value at the selected epoch, median over the seeds. Per run
    (``per_layer`` False, the key is one number per epoch): the run's mean over its epochs, mean ± std over the
    seeds."""

    key: str  # the epoch row's key; also the [sweep] diagnostics name and summary.csv's columns
    #          <key>_first_median, <key>_last_median (per layer) or <key>_mean, <key>_std (per run)
    column: str  # summary.md's header
    formatter: Callable[[float], str]  # one value in summary.md
    meaning: str  # what the column holds, in the legend sentence under the title
    per_layer: bool = True

    def cell(self, pair: tuple[float, float]) -> str:
        """A first / last layer pair for summary.md; – for a layer (or both) not recorded."""
        return "–" if all(math.isnan(v) for v in pair) else " / ".join(
            "–" if math.isnan(v) else self.formatter(v) for v in pair)

    def run_value(self, epochs: Sequence[dict]) -> float:
        """A per-run figure of one run: the mean of its epochs' finite values (NaN: none recorded)."""
        values = [float(v) for v in (e.get(self.key) for e in epochs)
                  if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)]
        return statistics.fmean(values) if values else math.nan

    def runs_cell(self, values: Sequence[float]) -> str:
        """A per-run figure over the seeds for summary.md: mean ± std (the value alone for one seed, – for none)."""
        vals = [v for v in values if math.isfinite(v)]
        if not vals:
            return "–"
        mean = self.formatter(statistics.fmean(vals))
        return mean if len(vals) == 1 else f"{mean} ± {self.formatter(statistics.stdev(vals))}"


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
    Diagnostic("seconds", "s/epoch", fmt_dec2,
               "seconds per epoch of training (its batches, not its evaluation)", per_layer=False),
)
DIAGNOSTIC_BY_KEY = {d.key: d for d in DIAGNOSTICS}
