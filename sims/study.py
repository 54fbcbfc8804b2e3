"""The whole study in one command: every part of sims/study.toml in its declared order, resuming, then the docs.

Each part is a sweep file (run by the sweep engine in-process) or a script (run as a subprocess) that resumes on
its own; finished runs are never run again. After the parts, every Markdown block
``<!-- study:NAME -->`` … ``<!-- /study:NAME -->`` that study.toml declares is replaced by the part's generated
table (atomically), but only for parts that have finished every run: a doc never shows a half-run study. Every
declared block must exist and every block in a declared doc must be declared, checked before anything runs.
The ``[headline]`` declaration is one more block, ``<!-- study:headline -->``: one row per claim, each quoting a
row of a part's summary (and its reference row, the difference and p); a claim whose part has runs left keeps the
row the doc has. More claim tables, e.g. one comparison across parts, are ``[[claims]]`` with their own ``name``
(the marker) and ``doc``, and the same ``[[claims.claim]]`` rows. A claim's ``target`` (at least / at most a
mean, a difference of at least / within some points, every seed at least) adds the columns target and met.

    .venv/bin/python sims/study.py                       # everything (hours; resumes), then the docs
    .venv/bin/python sims/study.py --list                # parts, their runs and whether they are finished
    .venv/bin/python sims/study.py --only paper_digits --jobs 2
    .venv/bin/python sims/study.py --tables-only         # tables, plots and docs from the runs on disk
    .venv/bin/python sims/study.py --dry-run             # what would run, which docs would change
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python sims/study.py` puts sims/ first, not the package's checkout
    sys.path.insert(0, str(ROOT))

from analogdecorr.atomic import write_text  # noqa: E402
from analogdecorr.errors import AnalogDecorrError, ConfigError  # noqa: E402

DECLARATION = Path(__file__).with_name("study.toml")
SEED_FIGURES = ("test_last", "test_selected", "metric")  # what a per-seed table shows
_MARKER = re.compile(r"<!--\s*(/?)study:([^\s>]*)\s*-->")
_STATUS = re.compile(r"(\d+) runs, (\d+) finished")


# ------------------------------------------------------------------------------------------- declaration
@dataclass(frozen=True)
class TableView:
    """One generated table and the doc block it fills."""

    marker: str  # "part" or "part/view"
    doc: Path
    file: str = "summary.md"
    section: str | None = None
    seeds: str | None = None  # a per-seed table of this figure instead of a table read from `file`
    rows: dict[str, list[str]] = field(default_factory=dict)
    columns: list[str] | None = None
    labels: dict[str, str] = field(default_factory=dict)
    rename: dict[str, str] = field(default_factory=dict)
    delta: Delta | None = None
    order: list[str] = field(default_factory=list)  # sort the rows by these columns (see _value_order)


@dataclass(frozen=True)
class Delta:
    """A column of differences in points: each row's ``of`` (a column of the table file's CSV twin, unrounded)
    minus that of the row with the labels ``against`` and the row's own labels in ``by``."""

    name: str
    of: str
    against: dict[str, str]
    by: list[str] = field(default_factory=list)
    after: str | None = None  # the column it follows (default: the last)


@dataclass
class Part:
    """One part of the study: what runs it, where it writes, and the tables it gives the docs."""

    name: str
    out: Path
    outputs: list[str]
    tables: list[TableView]
    sweep: Path | None = None
    script: Path | None = None
    args: list[str] = field(default_factory=list)
    status_args: list[str] = field(default_factory=list)
    tables_only_args: list[str] = field(default_factory=list)
    jobs_flag: str | None = None
    address_flag: str | None = None
    spec: Any = None  # the parsed sweep file (SweepSpec) of a sweep part

    @property
    def kind(self) -> str:
        return "sweep" if self.sweep else "script"

    def command(self, extra: Sequence[str] = ()) -> list[str]:
        assert self.script is not None
        return [sys.executable, str(self.script), *self.args, *extra]


@dataclass(frozen=True)
class Claim:
    """One row of the headline table: ``column`` of the row of ``part``'s summary.md whose cells match ``row``,
    beside the row matching ``row`` updated by ``against`` (if given), their difference and the row's p."""

    label: str
    part: Part
    row: dict[str, str]
    column: str
    against: dict[str, str] = field(default_factory=dict)
    p: str | None = None  # the summary column holding the row's p-value against the `against` row
    target: Target | None = None  # the acceptance target its figure is judged by (target/met columns)


@dataclass(frozen=True)
class Target:
    """An acceptance target on a claim: ``kind`` (a key of TARGET_KINDS) and its ``bound`` (an accuracy, or
    points for the Δ kinds)."""

    kind: str
    bound: float

    @property
    def text(self) -> str:
        """The target as the table's target column shows it, e.g. "≥ 0.37", "Δ ≥ +15", "every seed ≥ 0.80"."""
        b = self.bound
        figure = f"{b:.2f}" if abs(b) < 1 and abs(b - round(b, 2)) < 1e-12 else f"{b:g}"
        return {"at_least": f"≥ {figure}", "at_most": f"≤ {figure}", "delta_at_least": f"Δ ≥ {b:+g}",
                "delta_within": f"|Δ| ≤ {b:g}", "every_seed_at_least": f"every seed ≥ {figure}"}[self.kind]

    @property
    def cell(self) -> str:
        """``text`` in a Markdown table cell (its | escaped)."""
        return self.text.replace("|", "\\|")


@dataclass(frozen=True)
class ClaimTable:
    """The ``<!-- study:MARKER -->`` block of ``doc``: one row per claim, in declared order ([headline] is the
    one whose marker is ``headline``; [[claims]] name their own)."""

    doc: Path
    claims: list[Claim]
    marker: str = "headline"


def load_declaration(path: Path, root: Path) -> list[Part]:
    """Every part of the declaration, checked (files exist, sweep files parse, tables well formed) before
    anything runs; ConfigError naming the part and the key otherwise."""
    return load_study(path, root)[0]


def load_study(path: Path, root: Path) -> tuple[list[Part], list[ClaimTable]]:
    """The parts of the declaration and its claim tables ([headline] first, then each [[claims]]), checked as
    load_declaration says."""
    from analogdecorr.config import load_toml

    try:
        data = load_toml(path)
    except ConfigError as e:
        raise ConfigError(str(e).replace("--config", "--file")) from None
    unknown = set(data) - {"part", "headline", "claims"}
    if unknown or not isinstance(data.get("part"), list) or not data["part"]:
        raise ConfigError(f"{path}: expected [[part]] tables, one [headline] and [[claims]] tables (found "
                          f"{sorted(unknown) or 'no [[part]]'}); see the comment at the top of sims/study.toml")
    parts: list[Part] = []
    for i, raw in enumerate(data["part"]):
        parts.append(_part(raw, f"{path}: [[part]] {raw.get('name', f'#{i + 1}')}", root))
    names = [p.name for p in parts]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup:
        raise ConfigError(f"{path}: two parts are named {dup!r}; give each part its own name")
    by_name = {p.name: p for p in parts}
    tables = [_claim_table(data["headline"], by_name, f"{path}: [headline]", root)] if "headline" in data else []
    raw_tables = data.get("claims", [])
    if not isinstance(raw_tables, list):
        raise ConfigError(f"{path}: claims must be [[claims]] tables (name, doc, [[claims.claim]] rows)")
    for i, raw in enumerate(raw_tables):
        name = raw.get("name") if isinstance(raw, dict) else None
        where = f"{path}: [[claims]] {name or f'#{i + 1}'}"
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            raise ConfigError(f"{where}: needs name = \"NAME\" (letters, digits, _ . -): its block's marker")
        taken = {t.marker for t in tables} | set(by_name)
        if name in taken:
            raise ConfigError(f"{where}: name {name!r} is already a part's or a claim table's marker; rename it")
        tables.append(_claim_table({k: v for k, v in raw.items() if k != "name"}, by_name, where, root, name))
    return parts, tables


_PART_KEYS = {"name", "sweep", "script", "args", "out", "outputs", "status", "tables_only", "jobs", "address",
              "table"}
_TABLE_KEYS = {"view", "doc", "file", "section", "seeds", "rows", "columns", "labels", "rename", "delta", "order"}
_DELTA_KEYS = {"name", "of", "against", "by", "after"}
_HEADLINE_KEYS = {"doc", "claim"}
_CLAIM_KEYS = {"label", "part", "row", "column", "against", "p", "target"}
P_OF = {"p test": "test acc @ sel."}  # a tuned summary's p column → the column it tests (`p`: the metric's)
# a claim's target = { KIND = number }: what it bounds (the row's unrounded mean, Δ in points, every final seed)
TARGET_KINDS = ("at_least", "at_most", "delta_at_least", "delta_within", "every_seed_at_least")
SEED_FIGURE_OF = {"test acc (last)": "test_last", "test acc @ sel.": "test_selected"}  # (the metric: "metric")


def _part(raw: dict[str, Any], where: str, root: Path) -> Part:
    from analogdecorr.sweep import load_sweep

    _keys(raw, _PART_KEYS, where)
    name = raw.get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ConfigError(f"{where}: name must be a word of letters, digits, _ . - (it is the marker's name)")
    if ("sweep" in raw) == ("script" in raw):
        raise ConfigError(f"{where}: give exactly one of sweep = \"FILE.toml\" or script = \"FILE.py\"")
    part = Part(name=name, out=root, outputs=_strings(raw.get("outputs", []), "outputs", where), tables=[])
    if "sweep" in raw:
        part.sweep = _file(root, raw["sweep"], "sweep", where)
        # the spec names its file as declared (relative to the root), not by this machine's absolute path:
        # the name goes into chosen.toml and from there into every recipe's header
        part.spec = dataclasses.replace(load_sweep(part.sweep), source=f"sweep file {raw['sweep']}")
        part.out = root / raw.get("out", part.spec.out or f"sims/out/{name}")
        extra = set(raw) & {"args", "status", "tables_only", "jobs", "address"}
        if extra:
            raise ConfigError(f"{where}: {sorted(extra)[0]} is for script parts; a sweep part runs its file")
    else:
        part.script = _file(root, raw["script"], "script", where)
        part.args = _strings(raw.get("args", []), "args", where)
        for key in ("out", "status", "tables_only"):
            if key not in raw:
                raise ConfigError(f"{where}: a script part needs {key} (see the top of sims/study.toml)")
        part.out = root / raw["out"]
        part.status_args = _strings(raw["status"], "status", where)
        part.tables_only_args = _strings(raw["tables_only"], "tables_only", where)
        part.jobs_flag = raw.get("jobs")
        part.address_flag = raw.get("address")
    tables = raw.get("table", [])
    if not isinstance(tables, list):
        raise ConfigError(f"{where}: table must be [[part.table]] entries")
    for t in tables:
        part.tables.append(_view(t, part, where, root))
    markers = [v.marker for v in part.tables]
    dup = next((m for m in markers if markers.count(m) > 1), None)
    if dup:
        raise ConfigError(f"{where}: two tables fill the marker study:{dup}; give each a different view")
    return part


def _view(raw: dict[str, Any], part: Part, where: str, root: Path) -> TableView:
    _keys(raw, _TABLE_KEYS, where + " [[part.table]]")
    view = raw.get("view")
    marker = part.name if view is None else f"{part.name}/{view}"
    where = f"{where} table study:{marker}"
    if view is not None and not re.fullmatch(r"[A-Za-z0-9_.-]+", str(view)):
        raise ConfigError(f"{where}: view must be a word of letters, digits, _ . -")
    if "doc" not in raw:
        raise ConfigError(f"{where}: needs doc = \"FILE.md\", the file holding its marker pair")
    seeds = raw.get("seeds")
    if seeds is not None and (seeds not in SEED_FIGURES or part.sweep is None):
        raise ConfigError(f"{where}: seeds = {seeds!r}: a sweep part's per-seed table of one of "
                          f"{', '.join(SEED_FIGURES)}")
    if part.script is not None and "file" not in raw:
        raise ConfigError(f"{where}: a script part's table needs file = \"NAME.md\" (one of its outputs)")
    rows = raw.get("rows", {})
    if not isinstance(rows, dict):
        raise ConfigError(f"{where}: rows must be a table such as {{ decor = [\"none\", \"centre\"] }}")
    return TableView(
        marker=marker, doc=_file(root, raw["doc"], "doc", where), file=raw.get("file", "summary.md"),
        section=raw.get("section"), seeds=seeds,
        rows={k: [str(x) for x in (v if isinstance(v, list) else [v])] for k, v in rows.items()},
        columns=_strings(raw["columns"], "columns", where) if "columns" in raw else None,
        labels={str(k): str(v) for k, v in raw.get("labels", {}).items()},
        rename={str(k): str(v) for k, v in raw.get("rename", {}).items()},
        delta=_delta(raw["delta"], where) if "delta" in raw else None,
        order=_strings(raw.get("order", []), "order", where),
    )


def _delta(raw: Any, where: str) -> Delta:
    where += " delta"
    _keys(raw, _DELTA_KEYS, where)
    if not isinstance(raw.get("against"), dict) or not raw["against"] or "name" not in raw or "of" not in raw:
        raise ConfigError(f"{where}: needs name, of (a CSV column) and against = {{ axis = \"label\" }}")
    return Delta(str(raw["name"]), str(raw["of"]), {str(k): str(v) for k, v in raw["against"].items()},
                 _strings(raw.get("by", []), "by", where), raw.get("after"))


def _claim_table(raw: Any, parts: dict[str, Part], where: str, root: Path, marker: str = "headline") -> ClaimTable:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: must be a table with doc = \"FILE.md\" and claim rows")
    _keys(raw, _HEADLINE_KEYS, where)
    rows = "[[headline.claim]]" if marker == "headline" else "[[claims.claim]]"
    if "doc" not in raw or not isinstance(raw.get("claim"), list) or not raw["claim"]:
        raise ConfigError(f"{where}: needs doc = \"FILE.md\" and {rows} entries")
    if marker in parts:
        raise ConfigError(f"{where}: a part is named {marker!r}, this table's marker; rename the part")
    claims = [_claim(c, parts, f"{where} claim {i + 1}") for i, c in enumerate(raw["claim"])]
    labels = [c.label for c in claims]
    dup = next((n for n in labels if labels.count(n) > 1), None)
    if dup:
        raise ConfigError(f"{where}: two claims are labelled {dup!r} (a kept row is found by its label)")
    return ClaimTable(_file(root, raw["doc"], "doc", where), claims, marker)


def _claim(raw: Any, parts: dict[str, Part], where: str) -> Claim:
    _keys(raw, _CLAIM_KEYS, where)
    missing = [k for k in ("label", "part", "row", "column") if k not in raw]
    if missing:
        raise ConfigError(f"{where}: needs {', '.join(missing)} (label, part, row = {{ column = \"value\" }}, "
                          "column)")
    label = str(raw["label"])
    where = f"{where} ({label!r})"
    if "|" in label or not label.strip():
        raise ConfigError(f"{where}: label must be non-empty text without |")
    part = parts.get(str(raw["part"]))
    if part is None:
        raise ConfigError(f"{where}: part = {raw['part']!r} is not a part; parts: {', '.join(parts)}")
    for key in ("row", "against"):
        if not isinstance(raw.get(key, {}), dict) or (key == "row" and not raw[key]):
            raise ConfigError(f"{where}: {key} must be a table such as {{ decor = \"centre\" }}")
    row = {str(k): str(v) for k, v in raw["row"].items()}
    against = {str(k): str(v) for k, v in raw.get("against", {}).items()}
    p = raw.get("p")
    if p is not None:  # the summary's p is against the sweep's baseline row: quote it only beside that row
        spec = part.spec
        tested = P_OF.get(str(p), spec.metric if spec is not None and p == "p" else None)
        if spec is None or not spec.baseline or tested is None:
            raise ConfigError(f"{where}: p = {p!r}: a sweep part's \"p\" (its metric) or \"p test\" (test acc "
                              "@ sel.) against its [sweep] baseline")
        if tested != raw["column"]:
            raise ConfigError(f"{where}: p = {p!r} tests {tested!r}, not column = {raw['column']!r}")
        if not against or set(against) - set(spec.baseline) or any(
                {**row, **against}.get(k) != v for k, v in spec.baseline.items()):
            raise ConfigError(f"{where}: p = {p!r} is against the sweep's baseline "
                              f"{spec.baseline}; set against = that baseline (and nothing else)")
    target = _target(raw["target"], part, str(raw["column"]), against, where) if "target" in raw else None
    return Claim(label, part, row, str(raw["column"]), against, None if p is None else str(p), target)


def _target(raw: Any, part: Part, column: str, against: dict[str, str], where: str) -> Target:
    """A claim's ``target = { KIND = number }``, checked against the claim (its part, column and against)."""
    import math

    kinds = ", ".join(TARGET_KINDS)
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: target must be a table such as target = {{ at_least = 0.9 }} (one of {kinds})")
    bad = sorted(set(raw) - set(TARGET_KINDS))
    if bad:
        raise ConfigError(f"{where}: target: unknown key {bad[0]!r}; give one of {kinds}")
    if len(raw) != 1:
        raise ConfigError(f"{where}: target has {len(raw)} keys ({', '.join(raw) or 'none'}); give exactly one of "
                          f"{kinds} (one target per claim)")
    (kind, value), = raw.items()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{where}: target {kind} = {value!r} is not a number; write e.g. {kind} = 0.9")
    if kind.startswith("delta_") and not against:
        raise ConfigError(f"{where}: target {kind} bounds the difference from a reference row; add against = "
                          "{ column = \"value\" } to the claim")
    if kind == "delta_within" and value < 0:
        raise ConfigError(f"{where}: target delta_within = {value} bounds |Δ|: give a number >= 0")
    spec = part.spec
    if kind == "every_seed_at_least":
        if spec is None:
            raise ConfigError(f"{where}: target every_seed_at_least reads each seed's run, and part {part.name} "
                              "is a script part; use at_least (the mean) or a sweep part")
        if _seed_figure(part, column) is None:
            raise ConfigError(f"{where}: target every_seed_at_least: column {column!r} has no per-seed figure; "
                              f"use column = one of {', '.join(repr(c) for c in [*SEED_FIGURE_OF, spec.metric])}")
    elif spec is not None and _csv_mean(part, column) is None:  # a script part's summary.csv: checked when built
        raise ConfigError(f"{where}: target {kind}: column {column!r} has no unrounded mean in summary.csv; use "
                          f"column = one of {', '.join(repr(c) for c in [*_CSV_OF, spec.metric])}")
    return Target(kind, float(value))


def _seed_figure(part: Part, column: str) -> str | None:
    """The per-seed figure (one of SEED_FIGURES) behind summary.md's ``column`` of a sweep part, else None."""
    if part.spec is not None and column == part.spec.metric:
        return "metric"
    return SEED_FIGURE_OF.get(column) if part.spec is not None else None


def _keys(raw: Any, valid: set[str], where: str) -> None:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a table")
    bad = sorted(set(raw) - valid)
    if bad:
        raise ConfigError(f"{where}: unknown key {bad[0]!r}; valid keys: {', '.join(sorted(valid))}")


def _strings(value: Any, key: str, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: {key} must be a list of strings")
    return list(value)


def _file(root: Path, value: Any, key: str, where: str) -> Path:
    path = root / str(value)
    if not path.is_file():
        raise ConfigError(f"{where}: {key} = {value!r}: no such file under {root}")
    return path


def select_parts(parts: list[Part], only: Sequence[str] | None) -> list[Part]:
    """The parts ``--only`` names (in declared order), or all; ConfigError for a name that is not a part."""
    if not only:
        return parts
    names = [p.name for p in parts]
    bad = next((n for n in only if n not in names), None)
    if bad:
        raise ConfigError(f"--only {bad}: no such part; parts: {', '.join(names)} (--list shows them)")
    return [p for p in parts if p.name in only]


# -------------------------------------------------------------------------------------------- markers
@dataclass(frozen=True)
class Block:
    """A marker pair in a doc: the lines (0-based) of its opening and closing marker, and the indentation."""

    name: str
    start: int
    end: int
    indent: str


def find_blocks(text: str, doc: Path) -> dict[str, Block]:
    """Every ``<!-- study:NAME -->`` … ``<!-- /study:NAME -->`` pair of ``text`` (outside code blocks and
    `inline code`); ConfigError (naming the file, the line and the marker) for a marker not alone on its line,
    unclosed, nested, repeated or stray."""
    blocks: dict[str, Block] = {}
    open_: tuple[str, int, str] | None = None
    fenced = False
    for i, line in enumerate(text.splitlines()):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        if fenced:  # a marker quoted in a code block or `inline code` is text, not a marker
            continue
        found = list(_MARKER.finditer(re.sub(r"`[^`]*`", "", line)))
        if not found:
            continue
        m = found[0]
        closing, name = m.group(1) == "/", m.group(2)
        tag = f"<!-- {'/' if closing else ''}study:{name} -->"
        if len(found) > 1 or line.strip() != m.group(0):
            raise ConfigError(f"{doc}:{i + 1}: {tag} must be alone on its line")
        if not closing:
            if open_ is not None:
                raise ConfigError(f"{doc}:{i + 1}: {tag} opens inside study:{open_[0]} (line {open_[1] + 1}); "
                                  f"close that one first with <!-- /study:{open_[0]} -->")
            if name in blocks:
                raise ConfigError(f"{doc}:{i + 1}: a second {tag} block; each marker appears once per file")
            open_ = (name, i, line[: len(line) - len(line.lstrip())])
        else:
            if open_ is None or open_[0] != name:
                raise ConfigError(f"{doc}:{i + 1}: {tag} closes a block that is not open")
            blocks[name] = Block(name, open_[1], i, open_[2])
            open_ = None
    if open_ is not None:
        raise ConfigError(f"{doc}:{open_[1] + 1}: <!-- study:{open_[0]} --> is never closed; add "
                          f"<!-- /study:{open_[0]} --> on its own line after the table")
    return blocks


def check_markers(parts: Sequence[Part], claims: Sequence[ClaimTable] = ()) -> None:
    """Every declared table (and claim table) has its marker pair in its doc, and every marker pair of a
    declared doc belongs to a declared table; ConfigError naming the file and the marker otherwise (before
    anything runs)."""
    by_doc: dict[Path, set[str]] = {}
    for p in parts:
        for v in p.tables:
            by_doc.setdefault(v.doc, set()).add(v.marker)
    for t in claims:
        by_doc.setdefault(t.doc, set()).add(t.marker)
    for doc, markers in by_doc.items():
        blocks = find_blocks(doc.read_text(encoding="utf-8"), doc)
        for m in sorted(markers):
            if m not in blocks:
                raise ConfigError(f"{doc}: no <!-- study:{m} --> … <!-- /study:{m} --> block; put the pair, each "
                                  "on its own line, around the table it replaces")
        stray = sorted(set(blocks) - markers)
        if stray:
            raise ConfigError(f"{doc}:{blocks[stray[0]].start + 1}: <!-- study:{stray[0]} --> names no table "
                              "declared for this file in the study declaration (declared: "
                              f"{', '.join(sorted(markers))})")


def replace_block(text: str, doc: Path, marker: str, table: str) -> str:
    """``text`` with the lines between the marker pair ``marker`` replaced by ``table`` (between blank lines,
    indented like the opening marker)."""
    block = find_blocks(text, doc).get(marker)
    if block is None:
        raise ConfigError(f"{doc}: no <!-- study:{marker} --> … <!-- /study:{marker} --> block; put the pair, "
                          "each on its own line, around the table it replaces")
    lines = text.splitlines(keepends=True)
    body = ["\n", *(block.indent + row + "\n" for row in table.rstrip("\n").split("\n")), "\n"]
    return "".join(lines[: block.start + 1] + body + lines[block.end:])


# ---------------------------------------------------------------------------------------------- tables
@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]

    def markdown(self) -> str:
        lines = ["| " + " | ".join(self.header) + " |", "|" + " --- |" * len(self.header)]
        lines += ["| " + " | ".join(r) + " |" for r in self.rows]
        return "\n".join(lines) + "\n"


def _cells(line: str) -> list[str]:
    """A Markdown table line's cells (an escaped \\| is part of its cell)."""
    return [c.strip() for c in re.split(r"(?<!\\)\|", line.strip()[1:-1])]


def markdown_table(text: str, section: str | None, where: str) -> Table:
    """The first Markdown table of ``text`` (under the heading ``section``, before the next heading)."""
    lines = text.splitlines()
    start = 0
    if section is not None:
        heads = [i for i, line in enumerate(lines) if re.fullmatch(r"#+\s+" + re.escape(section) + r"\s*", line)]
        if not heads:
            titles = [line.lstrip("#").strip() for line in lines if re.match(r"#+\s", line)]
            raise ConfigError(f"{where}: no heading {section!r}; headings: {', '.join(titles) or 'none'}")
        start = heads[0] + 1
    for i in range(start, len(lines)):
        if section is not None and re.match(r"#+\s", lines[i]):
            break
        if lines[i].startswith("|") and i + 1 < len(lines) and re.fullmatch(r"\|(\s*:?-+:?\s*\|)+",
                                                                           lines[i + 1].strip()):
            rows = []
            for line in lines[i + 2:]:
                if not line.startswith("|"):
                    break
                rows.append(_cells(line))
            return Table(_cells(lines[i]), rows)
    raise ConfigError(f"{where}: no Markdown table" + (f" under the heading {section!r}" if section else ""))


SeedCells = dict[int, float | str]  # seed → its figure, or "diverged"; a seed without a finished run is absent


def seed_figures(part: Part, figure: str) -> tuple[list[str], dict[tuple[tuple[str, str], ...], SeedCells]]:
    """(the row axes, per setting (a tuned sweep: per row, its final runs) its (axis, label) pairs → each final
    seed's ``figure`` read from its run folder): what per-seed tables and every_seed_at_least targets show."""
    from analogdecorr.sweep.diagnostic_columns import number
    from analogdecorr.sweep.summary import load_run, selected_epoch

    spec = part.spec
    if spec.tune:
        from analogdecorr.sweep.tune import all_trials, row_key

        _, _, trials = all_trials(spec, part.out)
        names, label = list(spec.tune.rows), lambda t: row_key(spec, t.setting)
    else:
        trials, names, label = spec.trials(part.out), spec.axis_names, lambda t: t.setting
    by_row: dict[tuple[tuple[str, str], ...], SeedCells] = {}
    for t in trials:
        cells = by_row.setdefault(label(t), {})
        data = load_run(t)
        if data is None:
            continue
        if data.get("diverged"):
            cells[t.seed] = "diverged"
            continue
        chosen = selected_epoch(data, spec.select)
        cells[t.seed] = number({"test_last": data["epochs"][-1].get("test_acc"),
                              "test_selected": chosen.get("test_acc"),
                              "metric": chosen.get(spec.metric)}[figure])
    return names, by_row


def seeds_table(part: Part, figure: str) -> Table:
    """One row per setting (a tuned sweep: per row, its final runs), one column per seed: ``figure`` of each
    finished run, 'diverged', or – ; then mean ± std over the seeds."""
    from analogdecorr.sweep.summary import fmt

    spec = part.spec
    names, by_row = seed_figures(part, figure)
    rows = []
    for key, cells in by_row.items():
        values = [v for v in cells.values() if isinstance(v, float)]
        rows.append([" ".join(v for _, v in key),
                     *(f"{v:.3f}" if isinstance(v, float) else v for v in (cells.get(s, "–") for s in spec.seeds)),
                     fmt(values)])
    return Table([" ".join(names), *(f"seed {s}" for s in spec.seeds), "mean ± std"], rows)


def build_table(part: Part, view: TableView) -> str:
    """The Markdown of ``view``: read (or built from the runs), rows kept, columns picked, labels renamed."""
    where = f"part {part.name}, table study:{view.marker}"
    if view.seeds:
        table = seeds_table(part, view.seeds)
    else:
        path = part.out / view.file
        if not path.is_file():
            raise ConfigError(f"{where}: {path} does not exist yet; run the part (sims/study.py --only "
                              f"{part.name}) or rebuild its tables (--tables-only)")
        table = markdown_table(path.read_text(encoding="utf-8"), view.section, f"{where}: {path}")
    for col in view.rows:
        if col not in table.header:
            raise ConfigError(f"{where}: no column {col!r}; columns: {', '.join(table.header)}")
        table.rows = [r for r in table.rows if r[table.header.index(col)] in view.rows[col]]
    for col in reversed(view.order):  # stable sorts, last key first: rows grouped by the first column
        if col not in table.header:
            raise ConfigError(f"{where}: order: no column {col!r}; columns: {', '.join(table.header)}")
        i = table.header.index(col)
        rank = {v: k for k, v in enumerate(_value_order(part, view, col, [r[i] for r in table.rows]))}
        table.rows.sort(key=lambda r, i=i, rank=rank: rank[r[i]])
    if view.delta is not None:
        add_delta(table, view.delta, part.out / Path(view.file).with_suffix(".csv"), where)
    for col in view.columns or []:
        if col not in table.header:
            raise ConfigError(f"{where}: no column {col!r}; columns: {', '.join(table.header)}")
    if view.columns is not None:
        idx = [table.header.index(c) for c in view.columns]
        table = Table([table.header[i] for i in idx], [[r[i] for i in idx] for r in table.rows])
    table.rows = [[view.labels.get(r[0], r[0]), *r[1:]] for r in table.rows]
    table.header = [view.rename.get(h, h) for h in table.header]
    return table.markdown()


def _value_order(part: Part, view: TableView, col: str, values: list[str]) -> list[str]:
    """The order of ``col``'s values for ``order``: the view's ``rows`` list for that column, else the sweep's
    axis of that name (its values as the sweep file lists them), else the order the table has them in."""
    listed = view.rows.get(col)
    if listed is None and part.spec is not None:
        listed = next(([lab for lab, _ in opts] for name, opts in part.spec.all_axes if name == col), None)
    listed = list(listed or [])
    return listed + [v for v in dict.fromkeys(values) if v not in listed]


def _summary_csv(path: Path, where: str) -> list[dict[str, str]]:
    """The rows of a summary.csv (the unrounded twin of summary.md), one-line error when it is missing."""
    import csv

    try:
        with open(path, encoding="utf-8", newline="") as f:
            return list(csv.DictReader(f))
    except OSError:
        raise ConfigError(f"{where}: needs {path}, the CSV twin of the table's file; run sims/study.py --only "
                          "the part (or --tables-only)") from None


def _csv_value(data: list[dict[str, str]], labels: dict[str, str], column: str) -> float:
    """``column`` of the one CSV row whose cells match ``labels``; NaN for none, several, or an empty cell."""
    import math

    found = [r for r in data if all(r[k] == v for k, v in labels.items())]
    try:
        return float(found[0][column]) if len(found) == 1 else math.nan
    except ValueError:
        return math.nan


def _points(value: float, reference: float) -> str:
    """(value − reference) × 100, one decimal with its sign; – where either is missing."""
    import math

    diff = (value - reference) * 100
    return "–" if math.isnan(diff) else f"{diff:+.1f}"


def add_delta(table: Table, delta: Delta, csv_path: Path, where: str) -> None:
    """Insert ``delta``'s column into ``table``: (row − reference) × 100, one decimal with its sign; empty for
    the reference row itself, – where either value is missing."""
    data = _summary_csv(csv_path, f"{where}: delta")
    keys = [*delta.by, *delta.against]
    for col in keys:
        if col not in table.header or (data and col not in data[0]):
            raise ConfigError(f"{where}: delta: {col!r} must be a column of the table and of {csv_path.name}")
    if data and delta.of not in data[0]:
        raise ConfigError(f"{where}: delta: no column {delta.of!r} in {csv_path.name}; columns: {', '.join(data[0])}")

    cells = []
    for r in table.rows:
        labels = {k: r[table.header.index(k)] for k in keys}
        ref = {**labels, **delta.against}
        cells.append("" if labels == ref else _points(_csv_value(data, labels, delta.of),
                                                        _csv_value(data, ref, delta.of)))
    if delta.after is not None and delta.after not in table.header:
        raise ConfigError(f"{where}: delta: after = {delta.after!r} is not a column; columns: "
                          f"{', '.join(table.header)}")
    at = table.header.index(delta.after) + 1 if delta.after is not None else len(table.header)
    table.header.insert(at, delta.name)
    for r, c in zip(table.rows, cells, strict=True):
        r.insert(at, c)


# ------------------------------------------------------------------------------------------- headline
HEADLINE_HEADER = ["claim", "measured", "Δ (points)", "p", "source"]
TARGET_HEADER = [*HEADLINE_HEADER[:4], "target", "met", HEADLINE_HEADER[4]]  # a claim table with any target
_CSV_OF = {"test acc @ sel.": "test_acc_selected_mean", "test acc (last)": "test_acc_last_mean",
           "val best − last": "val_best_minus_last_mean", "epoch": "epoch_mean"}


def headline_table(headline: ClaimTable, done: set[str], text: str, root: Path) -> tuple[str, list[str], list[str]]:
    """A claim table's block (the headline's or a [[claims]] table's) for the doc ``text``: a claim of a
    finished part (``done``) from its summary, any other claim as the block has it (found by its label; else
    'not measured yet'). With any target in the table, the columns target and met come after p. Returns
    (Markdown, notes on the rows kept, errors: a claim that cannot be built keeps its row)."""
    doc = headline.doc
    with_target = any(c.target for c in headline.claims)
    header = TARGET_HEADER if with_target else HEADLINE_HEADER
    kept: dict[str, dict[str, str]] = {}  # label → the doc's row, by its header (with or without target/met)
    block = find_blocks(text, doc).get(headline.marker)
    if block is not None:
        inner = [line.strip() for line in text.splitlines()[block.start + 1: block.end]]
        try:
            old = markdown_table("\n".join(inner), None, str(doc))
            if set(HEADLINE_HEADER) <= set(old.header):
                kept = {r[0]: dict(zip(old.header, r, strict=True)) for r in old.rows if len(r) == len(old.header)}
        except ConfigError:  # an empty block: nothing to keep
            pass
    rows, notes, errors = [], [], []
    summaries: dict[str, tuple[Table, list[dict[str, str]]]] = {}
    for claim in headline.claims:
        source = f"`{_rel(claim.part.sweep or claim.part.script, root)}`"
        if claim.part.name in done:
            try:
                rows.append(claim_row(claim, summaries, source, with_target=with_target))
                continue
            except ConfigError as e:
                errors.append(str(e))
        else:
            notes.append(f"{_rel(doc, root)}: study:{headline.marker} row {claim.label!r} kept (part {claim.part.name} "
                         "did not finish in this call)")
        cells = kept.get(claim.label, {"claim": claim.label, "measured": "not measured yet", "source": source})
        target = claim.target.cell if claim.target else ""
        # the doc's verdict holds only for the target it was made against
        cells = {**cells, "target": target, "met": cells.get("met", "") if cells.get("target") == target else ""}
        rows.append([cells.get(h, "") for h in header])
    return Table(list(header), rows).markdown(), notes, errors


def claim_row(claim: Claim, summaries: dict[str, tuple[Table, list[dict[str, str]]]], source: str, *,
              with_target: bool = False) -> list[str]:
    """One headline row from the claim's part's summary.md (figures as printed) and summary.csv (the
    difference, from unrounded means); ``with_target``: the target and met cells before the source."""
    part = claim.part
    where = f"headline claim {claim.label!r} (part {part.name})"
    if part.name not in summaries:
        md, csv_path = part.out / "summary.md", part.out / "summary.csv"
        if not md.is_file() or not csv_path.is_file():
            raise ConfigError(f"{where}: {md} or its summary.csv does not exist yet; run sims/study.py --only "
                              f"{part.name} (or --tables-only)")
        summaries[part.name] = (markdown_table(md.read_text(encoding="utf-8"), None, f"{where}: {md}"),
                                _summary_csv(csv_path, where))
    table, data = summaries[part.name]

    def pick(labels: dict[str, str]) -> list[str]:
        for col in [*labels, claim.column, *([claim.p] if claim.p else [])]:
            if col not in table.header:
                raise ConfigError(f"{where}: summary.md has no column {col!r}; columns: {', '.join(table.header)}")
        found = [r for r in table.rows if all(r[table.header.index(k)] == v for k, v in labels.items())]
        if len(found) != 1:
            raise ConfigError(f"{where}: {len(found)} rows of summary.md match {labels}; give labels that pick "
                              "exactly one")
        return found[0]

    def figure(r: list[str]) -> str:
        return r[table.header.index(claim.column)].removesuffix(" *")  # the best-setting mark is not a figure

    row = pick(claim.row)
    measured, delta = figure(row), ""
    ref_labels = {**claim.row, **claim.against}
    if claim.against:
        measured += f" vs {figure(pick(ref_labels))}"
        delta = _points(*(_claim_mean(part, claim.column, labels, data, f"{where}, its Δ")
                          for labels in (claim.row, ref_labels)))
    if claim.p:
        p = row[table.header.index(claim.p)]
    else:
        p = _claim_p(part, claim.column, claim.row, ref_labels, data) if claim.against else ""
    cells = [claim.label, measured, delta, p]
    if with_target:
        cells += [claim.target.cell, judge(claim, data, where)] if claim.target else ["", ""]
    return [*cells, source]


def judge(claim: Claim, data: list[dict[str, str]], where: str) -> str:
    """The met cell of a claim's target: "yes" / "no" from summary.csv's unrounded means (the row's mean, or
    Δ in points against its reference row), or for every_seed_at_least from each final seed's run ("yes (5 of 5
    seeds)"); a missing figure, a diverged or missing seed is not met."""
    target, part = claim.target, claim.part
    assert target is not None
    if target.kind == "every_seed_at_least":
        figure = _seed_figure(part, claim.column)
        assert figure is not None  # checked at load
        _, by_row = seed_figures(part, figure)
        found = [cells for key, cells in by_row.items() if all(dict(key).get(k) == v for k, v in claim.row.items())]
        if len(found) != 1:
            raise ConfigError(f"{where}: target every_seed_at_least: {len(found)} settings of the runs match "
                              f"{claim.row}; give labels that pick exactly one")
        seeds = part.spec.seeds
        met = sum(isinstance(v, float) and _at_least(v, target.bound) for v in map(found[0].get, seeds))
        return f"{'yes' if met == len(seeds) else 'no'} ({met} of {len(seeds)} seeds)"
    if target.kind.startswith("delta_"):
        value, ref = (_claim_mean(part, claim.column, labels, data, f"{where} target {target.kind}")
                      for labels in (claim.row, {**claim.row, **claim.against}))
        diff = (value - ref) * 100
        ok = _at_least(diff, target.bound) if target.kind == "delta_at_least" else _at_least(target.bound, abs(diff))
    else:
        value = _claim_mean(part, claim.column, claim.row, data, f"{where} target {target.kind}")
        ok = _at_least(value, target.bound) if target.kind == "at_least" else _at_least(target.bound, value)
    return "yes" if ok else "no"


def _at_least(value: float, bound: float) -> bool:
    """value ≥ bound, forgiving the last bits of a float difference ((0.3 − 0.15) × 100 is 14.999…); NaN never."""
    return value >= bound - 1e-9 * max(1.0, abs(bound))


def _csv_mean(part: Part, column: str) -> str | None:
    """summary.csv's column of the unrounded mean of summary.md's ``column`` (None: the CSV has none)."""
    return _CSV_OF.get(column, f"{column}_mean" if part.spec is not None and column == part.spec.metric else None)


def _claim_mean(part: Part, column: str, labels: dict[str, str], data: list[dict[str, str]], where: str) -> float:
    """``column``'s unrounded mean in summary.csv of the row with ``labels`` (NaN where missing)."""
    name = _csv_mean(part, column)
    if name is None or (data and name not in data[0]):
        raise ConfigError(f"{where}: no unrounded mean of {column!r} in summary.csv")
    missing = [k for k in labels if data and k not in data[0]]
    if missing:
        raise ConfigError(f"{where}: summary.csv has no column {missing[0]!r} to find the row by")
    return _csv_value(data, labels, name)


def _claim_p(part: Part, column: str, labels: dict[str, str], ref: dict[str, str], data: list[dict[str, str]]) -> str:
    """Two-sided Welch p of ``column`` between the row and its reference, from summary.csv's means, sample stds
    and seed counts (the same test the summaries run on the seeds' values); – where it is undefined."""
    import math

    from analogdecorr.sweep.summary import fmt_p

    name = _csv_mean(part, column) or ""
    std = name.removesuffix("_mean") + "_std"
    if not name or not data or std not in data[0] or "done" not in data[0]:
        return "–"
    stats = []
    for lab in (labels, ref):
        m, s = _csv_value(data, lab, name), _csv_value(data, lab, std)
        n = _csv_value(data, lab, "done") - (_csv_value(data, lab, "diverged") if "diverged" in data[0] else 0)
        stats.append((m, s, n))
    (m1, s1, n1), (m2, s2, n2) = stats
    if any(math.isnan(v) for v in (m1, s1, n1, m2, s2, n2)) or n1 < 2 or n2 < 2 or s1 + s2 == 0:
        return "–"
    from scipy.stats import ttest_ind_from_stats

    p = float(ttest_ind_from_stats(m1, s1, n1, m2, s2, n2, equal_var=False).pvalue)
    return fmt_p(p if math.isfinite(p) else math.nan)


# --------------------------------------------------------------------------------------------- status
@dataclass
class Status:
    runs: int
    finished: int

    @property
    def todo(self) -> int:
        return self.runs - self.finished


def status(part: Part, root: Path) -> Status:
    """How many runs the part has and how many of them are finished on disk. A tuned sweep counts its search
    runs, the final runs of the rows that have chosen, and the final seeds of the rows still searching."""
    if part.sweep is None:
        res = subprocess.run(part.command(part.status_args), cwd=root, env=_env(root), capture_output=True,
                             text=True)
        m = _STATUS.search(res.stdout)
        if res.returncode != 0 or m is None:
            last = (res.stderr.strip().splitlines() or res.stdout.strip().splitlines() or ["no output"])[-1]
            raise ConfigError(f"part {part.name}: `{' '.join(part.command(part.status_args)[1:])}` did not print "
                              f"'N runs, F finished' (exit {res.returncode}): {last}")
        return Status(int(m.group(1)), int(m.group(2)))
    from analogdecorr.sweep.engine import finished_status

    spec = part.spec
    if not spec.tune:
        trials = spec.trials(part.out)
        return Status(len(trials), sum(finished_status(t) is not None for t in trials))
    from analogdecorr.sweep.tune import all_trials

    search, rows, finals = all_trials(spec, part.out)
    keys = {t.key for t in search}
    runs = search + [t for t in finals if t.key not in keys]
    waiting = sum(not r.complete for r in rows) * len(set(spec.seeds) - set(spec.tune.seeds))
    return Status(len(runs) + waiting, sum(finished_status(t) is not None for t in runs))


def _env(root: Path) -> dict[str, str]:
    """The environment of a script part: this checkout's package first on its path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(root), *filter(None, [env.get("PYTHONPATH")])])
    return env


# ------------------------------------------------------------------------------------------------ run
def run_part(part: Part, root: Path, *, train: bool, jobs: int | None, address: str | None,
             progress: bool) -> int:
    """Run (``train``) or only rebuild the tables of one part; returns 0, or 1 if a run or the script failed."""
    if part.sweep is not None:
        spec = part.spec
        if train:
            from analogdecorr.sweep import run_sweep

            _, report = run_sweep(spec, part.out, address=address, jobs=jobs, progress=progress)
            for o in report.failed:
                print(f"failed: {part.name}: {o.trial.label}: {o.error.splitlines()[0]}", file=sys.stderr)
            return 1 if report.failed else 0
        part.out.mkdir(parents=True, exist_ok=True)
        if spec.tune:
            from analogdecorr.sweep.tune import write_tuned_summary

            write_tuned_summary(spec, part.out)
        else:
            from analogdecorr.sweep.summary import write_summary

            write_summary(spec, spec.trials(part.out), part.out)
        return 0
    extra = list(part.tables_only_args) if not train else []
    if train and jobs is not None and part.jobs_flag:
        extra += [part.jobs_flag, str(jobs)]
    if train and address and part.address_flag:
        extra += [part.address_flag, address]
    code = subprocess.run(part.command(extra), cwd=root, env=_env(root)).returncode
    if code:
        print(f"failed: {part.name}: `{' '.join(part.command(extra)[1:])}` exited with {code}", file=sys.stderr)
    return 1 if code else 0


def _rel(path: Path, root: Path) -> str:
    return str(path.relative_to(root) if path.is_relative_to(root) else path)


def _stamp(paths: Sequence[Path]) -> dict[Path, tuple[int, int] | None]:
    out = {}
    for p in paths:
        try:
            st = p.stat()
            out[p] = (st.st_mtime_ns, st.st_size)
        except OSError:
            out[p] = None
    return out


def refresh_docs(parts: Sequence[Part], done: set[str], root: Path, *, write: bool,
                 claims: Sequence[ClaimTable] = ()) -> tuple[list[Path], list[str], list[str]]:
    """Replace the blocks of the finished parts (``done``) in their docs, and the claim tables' rows of those
    parts; returns (docs changed, notes on the blocks and rows kept, errors). A table that cannot be built keeps
    its block and is an error; the other blocks are still rewritten. With ``write=False`` nothing is written
    (a dry run)."""
    by_doc: dict[Path, list[tuple[Part, TableView]]] = {}
    for p in parts:
        for v in p.tables:
            by_doc.setdefault(v.doc, []).append((p, v))
    for t in claims:
        by_doc.setdefault(t.doc, [])
    changed, kept, errors = [], [], []
    for doc, views in by_doc.items():
        old = text = doc.read_text(encoding="utf-8")
        for p, v in views:
            if p.name not in done:
                kept.append(f"{_rel(doc, root)}: study:{v.marker} kept (part {p.name} has runs left)")
                continue
            try:
                text = replace_block(text, doc, v.marker, build_table(p, v))
            except ConfigError as e:
                errors.append(str(e))
        for t in claims:
            if t.doc != doc:
                continue
            table, notes, errs = headline_table(t, done, text, root)
            text = replace_block(text, doc, t.marker, table)
            kept += notes
            errors += errs
        if text != old:
            if write:
                write_text(doc, text)
            changed.append(doc)
    return changed, kept, errors


# ----------------------------------------------------------------------------------------------- main
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 2)[2],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--file", type=Path, default=DECLARATION,
                   help="the study declaration (default: sims/study.toml)")
    p.add_argument("--root", type=Path, default=ROOT,
                   help="the folder the declaration's paths start from (default: this repository)")
    p.add_argument("--only", nargs="+", metavar="NAME", help="run only these parts (docs: only their blocks)")
    p.add_argument("--list", action="store_true", help="list the parts, their runs and whether finished; exit")
    p.add_argument("--dry-run", action="store_true", help="say what would run and which docs would change; exit")
    p.add_argument("--tables-only", action="store_true",
                   help="do not train: rebuild every part's tables and plots, and the docs, from the runs on disk")
    p.add_argument("--jobs", type=int, help="runs at a time (sweeps and scripts on the engine; default: every CPU)")
    p.add_argument("--address", help="join the Ray cluster at this address instead of starting a local one")
    p.add_argument("--no-progress", action="store_true", help="no progress bar per part")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return _main(args)
    except AnalogDecorrError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished runs and the last checkpoints are kept; run the same command to resume",
              file=sys.stderr)
        return 130


def _main(args: argparse.Namespace) -> int:
    if args.jobs is not None and args.jobs < 1:
        raise ConfigError(f"--jobs {args.jobs} must be >= 1")
    root = args.root.resolve()
    declared, claims = load_study(args.file, root)
    parts = select_parts(declared, args.only)
    check_markers(declared, claims)
    n = len(parts)
    if args.list or args.dry_run:
        done = set()
        for i, part in enumerate(parts, 1):
            st = status(part, root)
            done |= {part.name} if st.todo == 0 else set()
            what = " ".join([_rel(part.sweep or part.script, root), *part.args])
            state = "finished" if st.todo == 0 else f"{st.todo} to do"
            print(f"[{i}/{n}] {part.name} ({part.kind} {what}): {st.runs} runs, {st.finished} finished, {state}")
            if args.list:
                print(f"      writes {_rel(part.out, root)}/{{{', '.join(part.outputs)}}}; tables: "
                      + (", ".join(f"study:{v.marker} in {_rel(v.doc, root)}" for v in part.tables) or "none"))
        if args.dry_run:
            changed, kept, errors = refresh_docs(parts, done, root, write=False, claims=claims)
            for doc in changed:
                print(f"would rewrite {_rel(doc, root)}")
            for note in kept:
                print(note)
            for e in errors:
                print(f"error: {e}", file=sys.stderr)
            return 2 if errors else 0
        return 0
    failed, done = [], set()
    first = {part.name: status(part, root) for part in parts}  # expands (checks) every run before any starts
    print(f"study: {n} parts, {sum(s.runs for s in first.values())} runs, "
          f"{sum(s.finished for s in first.values())} finished", flush=True)
    outputs = [part.out / o for part in parts for o in part.outputs]
    before = _stamp(outputs)
    for i, part in enumerate(parts, 1):
        st = first[part.name]
        if args.tables_only and st.finished == 0:  # nothing to tabulate: keep what an earlier run wrote
            print(f"[{i}/{n}] {part.name}: no finished runs of {st.runs}; its tables are left as they are")
            continue
        verb = "tables of" if args.tables_only else ("resuming" if st.finished else "starting")
        print(f"[{i}/{n}] {verb} {part.name}: {st.runs} runs, {st.finished} finished, {st.todo} to do", flush=True)
        t0 = time.perf_counter()
        code = run_part(part, root, train=not args.tables_only, jobs=args.jobs, address=args.address,
                        progress=not args.no_progress)
        st = status(part, root)
        missing = [o for o in part.outputs if not (part.out / o).exists()]
        if missing and st.todo == 0:  # a finished part must have written every output it declares
            print(f"failed: {part.name}: did not write {', '.join(missing)} in {part.out}", file=sys.stderr)
        if code or (missing and st.todo == 0):
            failed.append(part.name)
        if st.todo == 0 and not code:
            done.add(part.name)
        print(f"[{i}/{n}] {part.name}: {st.finished}/{st.runs} runs finished, "
              f"{time.perf_counter() - t0:.0f} s", flush=True)
    changed, kept, errors = refresh_docs(parts, done, root, write=True, claims=claims)
    after = _stamp(outputs)
    rewrote = [p for p in outputs if after[p] is not None and after[p] != before[p]] + changed
    print("rewrote:" if rewrote else "rewrote nothing")
    for path in rewrote:
        print(f"  {_rel(path, root)}")
    for note in kept:
        print(note)
    for e in errors:  # the runs are on disk: fix the declaration, then --tables-only
        print(f"error: {e}", file=sys.stderr)
    if failed:
        print(f"error: parts with failures: {', '.join(failed)} (above); rerun the command to resume them",
              file=sys.stderr)
    return 1 if failed or errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
