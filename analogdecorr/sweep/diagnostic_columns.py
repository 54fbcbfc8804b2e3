"""The per-layer diagnostics a sweep summary can show ([sweep] diagnostics): one declaration, read by the sweep
file's checks (spec) and by the summary's tables (summary)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass


def fmt_sig3(v: float) -> str:
    """3 significant digits, scientific when large or small (condition numbers, eigenvalues)."""
    return f"{v:.3g}"


def fmt_dec3(v: float) -> str:
    """3 decimals (correlations, cosines)."""
    return f"{v:.3f}"


def fmt_int(v: float) -> str:
    """A count (a median of two counts may end in .5)."""
    return f"{v:g}"


@dataclass(frozen=True)
class Diagnostic:
    """A per-layer figure of results.json's epoch rows the summary can show: the first and the last layer's value
    at the selected epoch, median over the seeds."""

    key: str  # the epoch row's key (a list, one value per layer); also the [sweep] diagnostics name and
    #          summary.csv's columns <key>_first_median, <key>_last_median
    column: str  # summary.md's header
    formatter: Callable[[float], str]  # one value in summary.md
    meaning: str  # what the column holds, in the legend sentence under the title

    def cell(self, pair: tuple[float, float]) -> str:
        """A first / last layer pair for summary.md; – for a layer (or both) not recorded."""
        return "–" if all(math.isnan(v) for v in pair) else " / ".join(
            "–" if math.isnan(v) else self.formatter(v) for v in pair)


_ZZ = "the centred ⟨z zᵀ⟩ of the first and the last layer's decorrelated input"
#: Every per-layer figure a sweep file may list in [sweep] diagnostics (schema: analogdecorr/results.py).
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
)
DIAGNOSTIC_BY_KEY = {d.key: d for d in DIAGNOSTICS}
