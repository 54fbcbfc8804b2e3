"""Tuned sweeps ([tune] in the sweep file): each row picks its own setting on validation, then runs its final
seeds there.

A row is one combination of the [tune] ``rows`` axes. Its search runs are every search setting (the other axes
and [tune.search], [[exclude]] applied) × the tune seeds. When all of them have finished, the row's choice is the
search setting with the best mean tune metric (each run read at its selected epoch, as the summary reads it):

- a setting is eligible only if every one of its search seeds finished without diverging;
- on equal means (to 10 decimals) the earlier setting in search order wins, so a sweep file lists values in the
  order it prefers on a tie (the grid order: later axes vary fastest);
- test figures of the search runs are shown in search.md for audit and never read by the choice.

The final runs are the chosen setting × the [sweep] seeds. Every run's folder is its configuration hash, so a
stopped tune resumes where it stopped, and a final seed that equals a search seed reuses that run. Everything
here is recomputed from the run folders, never from state kept elsewhere.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from ..results import atomic_write
from .diagnostic_columns import mean_std
from .spec import SweepSpec, Trial, adopt_moved_runs
from .summary import SettingRow, add_run, fmt, write_tables

CHOSEN_FILE = "chosen.toml"
SEARCH_FILES = ("search.md", "search.csv")


@dataclass
class Candidate:
    """One search setting of a row and the figures of its search runs (on the tune metric)."""

    setting: tuple[tuple[str, str], ...]  # every axis: the row's and the searched ones
    overrides: dict[str, Any]
    trials: list[Trial] = field(default_factory=list)
    figures: SettingRow | None = None

    def eligible(self) -> bool:
        f = self.figures
        return (f is not None and f.done == f.seeds == len(self.trials) and f.diverged == 0
                and len(f.metric) == f.seeds and all(math.isfinite(v) for v in f.metric))


@dataclass
class TunedRow:
    """One row of a tuned sweep: its search candidates (search order) and, once they all finished, its choice."""

    row: tuple[tuple[str, str], ...]  # the row axes' labels
    candidates: list[Candidate] = field(default_factory=list)
    chosen: Candidate | None = None

    @property
    def trials(self) -> list[Trial]:
        return [t for c in self.candidates for t in c.trials]

    @property
    def finished(self) -> int:
        return sum(c.figures.done for c in self.candidates if c.figures is not None)

    @property
    def complete(self) -> bool:
        return self.finished == len(self.trials)

    @property
    def name(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.row) or "(all)"


def row_key(spec: SweepSpec, setting: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    """The row part of a setting (the [tune] rows axes, in axis order)."""
    assert spec.tune is not None
    return tuple((k, v) for k, v in setting if k in spec.tune.rows)


def search_labels(spec: SweepSpec, setting: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    """The searched part of a setting."""
    assert spec.tune is not None
    return tuple((k, v) for k, v in setting if k not in spec.tune.rows)


def chosen_text(spec: SweepSpec, row: TunedRow) -> str:
    """The row's choice as ``axis=label ...``, naming only the axes the row searched over more than one value
    of (decor_lr in a row without decorrelation, say, has one value left by [[exclude]])."""
    assert row.chosen is not None
    varied = {k for c in row.candidates for k, v in search_labels(spec, c.setting)
              if len({dict(o.setting)[k] for o in row.candidates}) > 1}
    return " ".join(f"{k}={v}" for k, v in search_labels(spec, row.chosen.setting) if k in varied) or (
        "(nothing searched)")


def tuned_rows(spec: SweepSpec, search: Sequence[Trial]) -> list[TunedRow]:
    """The rows of a tuned sweep in grid order, each with its candidates' figures read from disk and its
    choice (None until every search run of the row has finished, or if no setting is eligible)."""
    assert spec.tune is not None
    rows: dict[tuple, TunedRow] = {}
    cands: dict[tuple, Candidate] = {}
    for t in search:
        row = rows.setdefault(row_key(spec, t.setting), TunedRow(row_key(spec, t.setting)))
        cand = cands.get(t.setting)
        if cand is None:
            cand = cands[t.setting] = Candidate(t.setting, dict(t.overrides),
                                                figures=SettingRow(t.setting, dict(t.overrides)))
            row.candidates.append(cand)
        cand.trials.append(t)
        add_run(cand.figures, t, spec.select, spec.tune.metric)
    for row in rows.values():
        row.chosen = choose(spec, row.candidates) if row.complete else None
    return list(rows.values())


def choose(spec: SweepSpec, candidates: Sequence[Candidate]) -> Candidate | None:
    """The eligible candidate with the best mean tune metric; the earliest on a tie (see the module doc)."""
    assert spec.tune is not None
    sign = -1.0 if spec.tune.mode == "max" else 1.0
    scored = [(sign * round(statistics.fmean(c.figures.metric), 10), i, c)
              for i, c in enumerate(candidates) if c.eligible()]
    return min(scored, key=lambda s: (s[0], s[1]))[2] if scored else None


def final_trials(spec: SweepSpec, row: TunedRow, root: str | Path) -> list[Trial]:
    """The row's final runs: its chosen setting × the [sweep] seeds (none before it has chosen)."""
    if row.chosen is None:
        return []
    trials = [spec.trial(row.chosen.setting, row.chosen.overrides, seed, root, "final") for seed in spec.seeds]
    adopt_moved_runs(trials)
    return trials


def all_trials(spec: SweepSpec, root: str | Path) -> tuple[list[Trial], list[TunedRow], list[Trial]]:
    """(search trials, rows, the final trials of the rows that have chosen) as they stand on disk."""
    search = spec.trials(root)
    rows = tuned_rows(spec, search)
    return search, rows, [t for r in rows for t in final_trials(spec, r, root)]


# ---------------------------------------------------------------------------------------------- output
def write_tuned_summary(spec: SweepSpec, out: str | Path) -> list[Path]:
    """summary.md/.csv/.png (one row per tuned row: its choice and its final runs' figures), search.md/.csv
    (every searched setting) and chosen.toml (the choices, for ``analogdecorr recipes --write``)."""
    assert spec.tune is not None
    out = Path(out)
    _, rows, _ = all_trials(spec, out)
    view = row_view(spec)
    table = []
    for r in rows:
        if r.chosen is None:
            status = (f"searching: {r.finished}/{len(r.trials)} runs" if not r.complete
                      else "no eligible setting (every one diverged or failed)")
            table.append(SettingRow(r.row, {}, chosen=status))
            continue
        sr = SettingRow(r.row, dict(r.chosen.overrides), chosen=chosen_text(spec, r))
        for t in final_trials(spec, r, out):
            add_run(sr, t, spec.select, spec.metric)
        table.append(sr)
    paths = write_tables(view, table, out, note=tune_note(spec, rows))
    for name, text in zip(SEARCH_FILES, (search_markdown(spec, rows), search_csv(spec, rows)), strict=True):
        with atomic_write(out / name) as f:
            f.write(text)
        paths.append(out / name)
    paths.append(write_chosen(spec, rows, table, out / CHOSEN_FILE))
    return paths


def row_view(spec: SweepSpec) -> SweepSpec:
    """The sweep as its final table sees it: only the row axes, untuned."""
    assert spec.tune is not None
    return dataclasses.replace(spec, axes=[(n, o) for n, o in spec.axes if n in spec.tune.rows], tune=None,
                               excludes=[])


def tune_note(spec: SweepSpec, rows: Sequence[TunedRow]) -> str:
    assert spec.tune is not None
    sel = "best-validation epoch" if spec.select == "validation" else "last epoch"
    space = ", ".join(f"{n} in {{{', '.join(lab for lab, _ in o)}}}" for n, o in spec.all_axes
                      if n in spec.search_axes)
    chosen = sum(r.chosen is not None for r in rows)
    return (f"Tuned rows ({chosen} of {len(rows)} chosen): each row's `chosen` setting is the one with the best "
            f"mean {spec.tune.metric} over search seeds {spec.tune.seeds} (each run at its {sel}) among "
            f"{space}; ties go to the earlier one in that order. The row's figures are its final runs at that "
            f"setting (seeds {spec.seeds}). Every searched setting: search.md; the choices: {CHOSEN_FILE}.")


def search_markdown(spec: SweepSpec, rows: Sequence[TunedRow]) -> str:
    """Every searched setting per row: mean ± std tune metric over the search seeds, the choice marked."""
    assert spec.tune is not None
    m = spec.tune.metric
    head = [*spec.row_axes, *spec.search_axes, "seeds", f"{m} (search)", "test acc @ sel. (never used)", "chosen"]
    lines = [f"# Sweep {spec.name}: the search of each tuned row", "",
             f"Seeds {spec.tune.seeds}; `chosen`: the setting the row runs its final seeds at (best mean {m}; "
             "ties to the earlier row of the table); `–`: not eligible (a seed missing, diverged or failed).", "",
             "| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for r in rows:
        for c in r.candidates:
            f = c.figures
            labels = dict(c.setting)
            seeds = f"{f.done}/{f.seeds}" + (f" ({f.diverged} diverged)" if f.diverged else "")
            mark = "**yes**" if c is r.chosen else ("" if c.eligible() else "–")
            cells = [labels[n] for n in spec.row_axes + spec.search_axes] + [seeds, fmt(f.metric),
                                                                             fmt(f.test_selected), mark]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def search_csv(spec: SweepSpec, rows: Sequence[TunedRow]) -> str:
    assert spec.tune is not None
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    m = spec.tune.metric
    w.writerow([*spec.row_axes, *spec.search_axes, "seeds", "done", "diverged", f"{m}_mean", f"{m}_std",
                "test_acc_selected_mean", "chosen"])
    for r in rows:
        for c in r.candidates:
            f = c.figures
            labels = dict(c.setting)
            mean, std = mean_std(f.metric)
            tm, _ = mean_std(f.test_selected)
            w.writerow([*(labels[n] for n in spec.row_axes + spec.search_axes), f.seeds, f.done, f.diverged,
                        *("" if math.isnan(v) else f"{v:.6g}" for v in (mean, std, tm)), int(c is r.chosen)])
    return buf.getvalue()


def write_chosen(spec: SweepSpec, rows: Sequence[TunedRow], table: Sequence[SettingRow], path: Path) -> Path:
    """chosen.toml: per chosen row its name, labels, chosen values, search and final figures, and the
    configuration layer a recipe needs ([base] + the row's and the choice's keys; no seed, no out)."""
    assert spec.tune is not None
    entries = []
    for r, sr in zip(rows, table, strict=True):
        if r.chosen is None:
            continue
        mean, std = mean_std(r.chosen.figures.metric)
        entry: dict[str, Any] = {
            "name": r.name,
            "row": dict(r.row),
            "chosen": dict(search_labels(spec, r.chosen.setting)),
            "chosen_text": chosen_text(spec, r),
            "metric": spec.tune.metric,
            "select": spec.select,
            "search_seeds": list(spec.tune.seeds),
            "search_mean": mean,
            "search_std": std,
            "search_settings": len(r.candidates),
            "final_seeds": list(spec.seeds),
            "final_done": sr.done,
        }
        tm, ts = mean_std(sr.test_selected)
        if sr.done == sr.seeds and not math.isnan(tm):
            entry.update(final_test_acc_mean=tm, final_test_acc_std=ts)
        entry["config"] = _plain({**spec.base, **r.chosen.overrides})
        entries.append(entry)
    head = (f"# The settings each row of the tuned sweep {spec.name} chose on {spec.tune.metric} (written by the "
            f"sweep engine from {spec.source}).\n# `analogdecorr recipes --write <this folder> --into DIR` turns "
            "each [[row]] into a named recipe.\n")
    doc = {"sweep": spec.name, "source": spec.source, "row": entries}
    with atomic_write(path) as f:
        f.write(head + tomli_w.dumps(doc))
    return path


def _plain(v: Any) -> Any:
    """A TOML-able copy (tuples as lists, tables as dicts)."""
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v
