"""The sweep file: a base configuration, the keys to grid (or sample), seeds, the metric and how each run's
epoch is selected; expanded into trials whose every resolved configuration is validated before anything runs.

Format (TOML; every table but [base] optional)::

    [sweep]
    seeds = [0, 1, 2]            # default [0]
    metric = "val_acc"           # the epoch-row figure settings are compared on (default val_acc)
    select = "validation"        # each run's epoch: "validation" (best val_acc, default) or "last"
    plot = "lr"                  # axis on the plot's x axis (default: the first numeric one, else curves)
    title = "lr sweep"           # the plot's title (default: sweep <name>)
    out = "sweeps/lr"            # default folder (--out overrides; default runs/sweeps/<file stem>)
    baseline = {rule = "bp"}     # the p column tests each setting against this one (default: the best);
                                 # axes it leaves out are matched to the row's own (one baseline per lr here)
    diagnostics = ["corr_after", "zz_cond"]   # optional columns of the summary, in this order (default
                                 # ["zz_cond"]; [] for none): the first / last layer at the selected epoch,
                                 # median over seeds, of zz_cond, zz_eig_max, zz_eig_min, zz_rank, corr_after,
                                 # corr_before, grad_cosine; and per run "seconds" (per epoch, mean over the
                                 # run's epochs, mean ± std over seeds) (results.json; a column no run recorded
                                 # is left out)

    [base]                       # RunConfig keys shared by every run (not seed, not out)
    dataset = "digits"
    hidden = [100]

    [grid]                       # every combination of these values ...
    rule = ["bp", "np"]
    lr = [1e-4, 1e-3]
    [grid.hardware]              # ... and of named variants: a table of label = {RunConfig keys}
    fp = {backend = "analog", preset = "FloatingPointPreset"}
    ecram = {backend = "analog", preset = "EcRamPreset", io = {is_perfect = true}}

    [sample]                     # optional: n random settings (seeded), each crossed with the grid
    n = 8
    seed = 0
    decor_lr = {log_uniform = [1e-5, 1e-3]}   # also {uniform = [a, b]}, {choice = [...]}, int_uniform

    [[exclude]]                  # drop combinations matching every key given (a list matches any of)
    hardware = "ecram"
    rule = "bp"

    [tune]                       # optional: tune each row on validation, then run [sweep] seeds at its choice
    seeds = [100, 101]           # the search runs' seeds (distinct from [sweep] seeds keeps the test honest)
    metric = "val_acc"           # val_acc or val_loss at each search run's selected epoch (never a test metric)
    rows = ["hardware", "rule"]  # the [grid]/[sample] axes whose every combination tunes on its own (default:
                                 # all of them); an axis left out is searched as well
    [tune.search]                # the searched values, as in [grid] (lists, or named variants [tune.search.x])
    lr = [1e-4, 1e-3]

With [tune] the sweep runs in two phases per row: every search setting (the row's [tune.search] × the grid axes
not in ``rows``, [[exclude]] applied, axes may be named there) with the tune seeds; then the setting with the
best mean tune metric over its search seeds (a setting with a diverged or missing seed is not eligible; on equal
means the earlier one in search order wins: list values in the order you prefer on a tie) with the [sweep] seeds.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import itertools
import json
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..atomic import rename_folder
from ..choices import choice_message, closest_hint
from ..config import RunConfig, load_toml, resolve
from ..errors import ConfigError
from .diagnostic_columns import DIAGNOSTIC_BY_KEY

# Files in a trial's run folder (the engine writes them, the summary reads them).
RESULTS = "results.json"
CHECKPOINT = "checkpoint.pt"
DIVERGED = "diverged.json"
TRIAL_FILE = "trial.json"
RUN_CONFIG = "config.toml"  # the run's configuration: ``analogdecorr train --config`` reruns it

RUN_KEYS = tuple(f.name for f in dataclasses.fields(RunConfig))
TABLES = ("sweep", "base", "grid", "sample", "exclude", "tune")
TUNE_KEYS = ("seeds", "metric", "rows", "search")
TUNE_METRICS = ("val_acc", "val_loss")
SWEEP_KEYS = ("seeds", "metric", "select", "plot", "out", "name", "baseline", "title", "diagnostics")
METRICS = ("val_acc", "val_loss", "test_acc", "test_loss", "train_acc", "train_loss")
SELECTS = ("validation", "last")
DISTRIBUTIONS = ("uniform", "log_uniform", "int_uniform", "choice")
#: Keys the sweep sets itself for every run.
RESERVED = {"seed": "list the seeds in [sweep] seeds = [0, 1, 2]",
            "out": "every run goes to <sweep out>/runs/<config hash>; set [sweep] out or --out"}


@dataclass(frozen=True)
class Trial:
    """One run of a sweep: its setting (axis name → label, in axis order), seed and resolved configuration."""

    setting: tuple[tuple[str, str], ...]
    seed: int
    overrides: Mapping[str, Any]  # the RunConfig keys the setting sets (on top of [base])
    config: RunConfig  # with out = the run folder
    key: str  # hash of the full configuration (out excluded): the run folder's name

    @property
    def label(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.setting) + f" seed={self.seed}"

    @property
    def out(self) -> Path:
        return Path(self.config.out)


@dataclass
class TuneSpec:
    """A sweep's [tune] table: what each row searches, on which seeds and metric."""

    axes: list[tuple[str, list[tuple[str, dict[str, Any]]]]]  # [tune.search] axes, as SweepSpec.axes
    seeds: list[int]
    metric: str = "val_acc"
    rows: list[str] = field(default_factory=list)  # the [grid]/[sample] axes that define a row

    @property
    def mode(self) -> str:
        return "min" if self.metric.endswith("loss") else "max"


@dataclass
class SweepSpec:
    """A parsed, checked sweep file (see the module docstring for the format)."""

    base: dict[str, Any]
    axes: list[tuple[str, list[tuple[str, dict[str, Any]]]]]  # (axis name, [(label, overrides), ...])
    seeds: list[int] = field(default_factory=lambda: [0])
    metric: str = "val_acc"
    select: str = "validation"
    plot: str | None = None
    out: str | None = None
    name: str = "sweep"
    excludes: list[dict[str, list[str]]] = field(default_factory=list)
    title: str | None = None  # the plot's title
    baseline: dict[str, str] | None = None  # axis → label of the setting(s) the p column tests against
    diagnostics: tuple[str, ...] = ("zz_cond",)  # the summary's optional columns (diagnostic_columns.DIAGNOSTICS keys)
    source: str = "the sweep file"
    tune: TuneSpec | None = None

    @property
    def mode(self) -> str:
        """'min' for a loss, 'max' for an accuracy."""
        return "min" if self.metric.endswith("loss") else "max"

    @property
    def axis_names(self) -> list[str]:
        return [name for name, _ in self.axes]

    @property
    def all_axes(self) -> list[tuple[str, list[tuple[str, dict[str, Any]]]]]:
        """The [grid] and [sample] axes, then the [tune.search] ones."""
        return self.axes + (self.tune.axes if self.tune else [])

    @property
    def row_axes(self) -> list[str]:
        """The axes a row of the table is made of: [tune] rows, or every axis of an untuned sweep."""
        return list(self.tune.rows) if self.tune else self.axis_names

    @property
    def search_axes(self) -> list[str]:
        """The axes a tuned row chooses a value of (none for an untuned sweep)."""
        return [n for n, _ in self.all_axes if n not in self.row_axes] if self.tune else []

    def settings(self) -> list[tuple[tuple[tuple[str, str], ...], dict[str, Any]]]:
        """Every (setting, overrides) in grid order (the search settings of a tuned sweep: its [tune.search]
        axes innermost), excluded combinations left out."""
        out = []
        axes = self.all_axes
        for combo in itertools.product(*(values for _, values in axes)):
            setting = tuple((name, label) for (name, _), (label, _) in zip(axes, combo, strict=True))
            if any(_matches(ex, dict(setting)) for ex in self.excludes):
                continue
            overrides: dict[str, Any] = {}
            for _, values in combo:
                overrides.update(values)
            out.append((setting, overrides))
        return out

    def trials(self, root: str | Path) -> list[Trial]:
        """All trials (settings × seeds, seeds innermost), each configuration resolved and validated; the first
        invalid one raises ConfigError naming the run and the value. For a tuned sweep these are the search
        runs (the tune seeds); the final runs depend on their results (see :mod:`analogdecorr.sweep.tune`)."""
        seeds = self.tune.seeds if self.tune else self.seeds
        trials = [self.trial(setting, overrides, seed, root, "search" if self.tune else "run")
                  for setting, overrides in self.settings() for seed in seeds]
        if not trials:
            raise ConfigError(f"{self.source}: [[exclude]] leaves no run; loosen it or add values to [grid]")
        adopt_moved_runs(trials)
        return trials

    def trial(self, setting: tuple[tuple[str, str], ...], overrides: Mapping[str, Any], seed: int,
              root: str | Path, what: str = "run") -> Trial:
        """The trial of one setting and seed, its configuration resolved and checked (ConfigError naming the
        run: ``what`` is "run", "search" or "final")."""
        where = " ".join(f"{k}={v}" for k, v in setting) + f" seed={seed}"
        try:
            cfg = resolve(self.base, {**overrides, "seed": seed})
        except ConfigError as e:
            raise ConfigError(f"{self.source}: {what} {where or '(base)'}: {e}") from None
        self._check_selection(cfg, where)
        key = config_key(cfg)
        cfg = dataclasses.replace(cfg, out=str(Path(root).absolute() / "runs" / key))
        return Trial(setting, seed, dict(overrides), cfg, key)

    def _check_selection(self, cfg: RunConfig, where: str) -> None:
        if cfg.val_frac == 0 and (self.select == "validation" or self.metric.startswith("val_")):
            raise ConfigError(
                f"{self.source}: run {where} has val_frac = 0 (no validation split) but the sweep selects on "
                f"validation (select = {self.select!r}, metric = {self.metric!r}); set val_frac > 0, or "
                "select = \"last\" with a metric that is not val_*"
            )


def config_key(cfg: RunConfig) -> str:
    """16 hex digits of the SHA-256 of the full configuration without ``out``: equal configurations share a
    run folder, so a rerun (or another sweep) finds what was already trained."""
    d = cfg.to_dict()
    d.pop("out")
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def adopt_moved_runs(trials: Sequence[Trial]) -> int:
    """Give run folders named by an older key their trial's key; returns how many were renamed.

    A field added to RunConfig changes every configuration's key, so a sweep would no longer find the runs it
    finished before. A trial without a folder takes a sibling folder (same parent) that belongs to no trial and
    whose config.toml is the trial's configuration (``checkpoint.differing_keys``: a field added later, at its
    default, is no difference; ``out`` aside). A sibling whose config differs in anything stays where it is."""
    from ..checkpoint import differing_keys

    keys = {t.key for t in trials}
    by_parent: dict[Path, list[Trial]] = {}
    for t in trials:
        if not t.out.exists():
            by_parent.setdefault(t.out.parent, []).append(t)
    moved = 0
    for parent, missing in by_parent.items():
        if not parent.is_dir():
            continue
        wanted = {t.key: (t, {k: v for k, v in t.config.to_dict().items() if k != "out"}) for t in missing}
        for folder in sorted(parent.iterdir()):
            if not wanted:
                break
            path = folder / RUN_CONFIG
            if folder.name in keys or folder.name.startswith(".") or not path.is_file():
                continue
            saved = _saved_config(str(path), path.stat().st_mtime_ns)
            if saved is None:
                continue
            for key, (trial, current) in wanted.items():
                if saved.get("seed") == current["seed"] and not differing_keys(saved, current):
                    rename_folder(folder, trial.out)
                    del wanted[key]
                    moved += 1
                    break
    return moved


@functools.lru_cache(maxsize=8192)
def _saved_config(path: str, mtime_ns: int) -> dict[str, Any] | None:
    """A run folder's config.toml without ``out`` (None if unreadable), parsed once per version of the file:
    ``adopt_moved_runs`` looks at the same siblings for every tuned row's final trials. Callers must not mutate it."""
    try:
        return {k: v for k, v in load_toml(path).items() if k != "out"}
    except ConfigError:
        return None


def load_sweep(path: str | Path) -> SweepSpec:
    """Read and check a sweep file (ConfigError naming the key, the closest valid one, or the bad value)."""
    p = Path(path)
    try:
        data = load_toml(p)
    except ConfigError as e:
        raise ConfigError(str(e).replace("--config", "analogdecorr sweep")) from None
    spec = parse_sweep(data, source=f"sweep file {p}")
    spec.name = spec.name if spec.name != "sweep" else p.stem
    return spec


def parse_sweep(data: Mapping[str, Any], source: str = "the sweep file") -> SweepSpec:
    """A SweepSpec from the parsed TOML ``data`` (see :func:`load_sweep`)."""
    _check_keys(data, TABLES, source, "table")
    sweep = _table(data, "sweep", source)
    _check_keys(sweep, SWEEP_KEYS, source, "key", " in [sweep]")
    base = dict(_table(data, "base", source))
    _check_run_keys(base, source, "[base]")
    axes = _grid_axes(_table(data, "grid", source), source, "grid")
    sample = _table(data, "sample", source)
    if sample:
        axes.append(("sample", _sample_axis(sample, source)))
    names = [n for n, _ in axes]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"{source}: {dup[0]!r} is both a [grid] and a [sample] key; keep it in one of them")
    tune = _tune(data.get("tune"), axes, source)
    all_axes = axes + (tune.axes if tune else [])
    excludes = _excludes(data.get("exclude", []), dict(all_axes), source)
    spec = SweepSpec(
        base=base,
        axes=axes,
        seeds=_seeds(sweep.get("seeds", [0]), source),
        metric=_choice(sweep.get("metric", "val_acc"), METRICS, "metric", source),
        select=_choice(sweep.get("select", "validation"), SELECTS, "select", source),
        out=_opt_str(sweep.get("out"), "out", source),
        name=_opt_str(sweep.get("name"), "name", source) or "sweep",
        title=_opt_str(sweep.get("title"), "title", source),
        excludes=excludes,
        baseline=_baseline(sweep.get("baseline"), dict(axes), source),
        diagnostics=_diagnostics(sweep.get("diagnostics", ["zz_cond"]), source),
        source=source,
        tune=tune,
    )
    if tune and spec.baseline:
        off_row = [a for a in spec.baseline if a not in tune.rows]
        if off_row:
            raise ConfigError(f"{source}: [sweep] baseline names {off_row[0]!r}, which each row chooses by "
                              f"tuning; name only row axes ({', '.join(tune.rows)})")
    if spec.baseline and not any(_matches({k: [v] for k, v in spec.baseline.items()}, dict(s))
                                 for s, _ in spec.settings()):
        raise ConfigError(f"{source}: [sweep] baseline {spec.baseline} matches no setting ([[exclude]] drops it); "
                          "name a setting the sweep runs")
    plot = sweep.get("plot")
    if plot is not None:
        names = spec.row_axes  # a tuned sweep's table (and plot) has one row per row, not per searched value
        if plot not in names:
            raise ConfigError(f"{source}: [sweep] plot = {plot!r} is not a swept axis{closest_hint(plot, names)}; "
                              f"choose from {', '.join(names)}")
        spec.plot = str(plot)
    return spec


def override_base(data: dict[str, Any], items: Sequence[str], source: str = "--set") -> None:
    """Apply ``KEY=VALUE`` strings to the [base] of a parsed sweep file ``data`` (in place), for scripts that
    vary a sweep; ConfigError for a malformed item, an unknown key, or a key the [grid] sets per row (a [base]
    value would not reach those rows)."""
    grid = data.get("grid", {})
    swept = {k for name, v in grid.items() for k in ([name] if not isinstance(v, Mapping) else
                                                      [k for ov in v.values() for k in ov])}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise ConfigError(f"{source} expects KEY=VALUE, got {item!r}")
        _check_run_keys({key: value}, source, "the overrides")
        if key in swept:
            raise ConfigError(f"{source} {key}: the sweep's [grid] sets {key!r} per row, so a [base] value would "
                              "not reach those rows; change it in the sweep file (or a copy of it)")
        data.setdefault("base", {})[key] = value.strip()


# ------------------------------------------------------------------------------------------------ helpers
def _grid_axes(grid: Mapping[str, Any], source: str,
               where: str) -> list[tuple[str, list[tuple[str, dict[str, Any]]]]]:
    """The axes of a [grid] (or [tune.search]) table: ``key = [values]`` or named variants ``[<where>.name]``."""
    axes: list[tuple[str, list[tuple[str, dict[str, Any]]]]] = []
    for name, values in grid.items():
        if isinstance(values, Mapping):  # a named axis: label = {RunConfig keys}
            if name in RUN_KEYS:
                raise ConfigError(
                    f"{source}: [{where}.{name}] is a table of named variants but {name!r} is a config key; name "
                    f"the axis something else (e.g. [{where}.{name}_variant]) or list values: {name} = [...]"
                )
            if not values:
                raise ConfigError(f"{source}: [{where}.{name}] has no variants; add label = {{key = value}} lines")
            options = []
            for label, overrides in values.items():
                if not isinstance(overrides, Mapping):
                    raise ConfigError(
                        f"{source}: [{where}.{name}] {label} must be a table of config keys, e.g. "
                        f"{label} = {{rule = \"np\"}}, got {overrides!r}"
                    )
                _check_run_keys(overrides, source, f"[{where}.{name}] {label}")
                options.append((str(label), dict(overrides)))
            axes.append((name, options))
        else:
            _check_run_keys({name: values}, source, f"[{where}]")
            if not isinstance(values, list) or not values:
                raise ConfigError(
                    f"{source}: [{where}] {name} must be a non-empty list of values, e.g. {name} = [...], got "
                    f"{values!r}"
                )
            axes.append((name, [(_label(v), {name: v}) for v in values]))
    return axes


def _tune(raw: Any, axes: list[tuple[str, list]], source: str) -> TuneSpec | None:
    """The [tune] table, checked against the sweep's axes (names that clash, rows that are not axes)."""
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{source}: tune must be a table ([tune] with seeds, metric, rows and [tune.search]), "
                          f"got {raw!r}")
    _check_keys(raw, TUNE_KEYS, source, "key", " in [tune]")
    metric = raw.get("metric", "val_acc")
    if isinstance(metric, str) and metric.startswith(("test_", "train_")):
        raise ConfigError(f"{source}: [tune] metric = {metric!r} would choose settings on the "
                          f"{metric.split('_')[0]} set; tune on validation: metric = \"val_acc\" or \"val_loss\"")
    if metric not in TUNE_METRICS:
        raise ConfigError(f"{source}: {choice_message(metric, TUNE_METRICS, 'metric', ' in [tune]')}")
    if "seeds" not in raw:
        raise ConfigError(f"{source}: [tune] needs seeds for the search runs, e.g. seeds = [100, 101]")
    seeds = _seeds(raw["seeds"], source, "[tune] seeds")
    search = raw.get("search")
    if not isinstance(search, Mapping) or not search:
        raise ConfigError(f"{source}: [tune] needs a [tune.search] table of the values to search, e.g. "
                          f"[tune.search] lr = [0.01, 0.02]; got {search!r}")
    tune_axes = _grid_axes(search, source, "tune.search")
    names = [n for n, _ in axes]
    for name, _ in tune_axes:
        if name in names:
            raise ConfigError(f"{source}: {name!r} is both a [grid] and a [tune.search] axis; a row either "
                              f"sweeps it (keep it in [grid]) or tunes it (keep it in [tune.search])")
    rows = raw.get("rows", names)
    if not (isinstance(rows, list) and all(isinstance(r, str) for r in rows)):
        raise ConfigError(f"{source}: [tune] rows must be a list of [grid] axis names, e.g. rows = "
                          f"{names[:2]!r}; got {rows!r}")
    for r in rows:
        if r not in names:
            where = " (it is searched in [tune.search])" if r in dict(tune_axes) else ""
            raise ConfigError(f"{source}: [tune] rows names {r!r}, which is not a [grid] axis{where}"
                              f"{closest_hint(r, names)}; choose from {', '.join(names) or '(no [grid] axes)'}")
    return TuneSpec(axes=tune_axes, seeds=seeds, metric=str(metric), rows=list(rows))


def _check_keys(table: Mapping[str, Any], valid: Sequence[str], source: str, what: str, where: str = "") -> None:
    for key in table:
        if key not in valid:
            raise ConfigError(f"{source}: {choice_message(key, valid, what, where)}")


def _check_run_keys(table: Mapping[str, Any], source: str, where: str) -> None:
    for raw in table:
        key = str(raw).replace("-", "_")
        if key in RESERVED:
            raise ConfigError(f"{source}: {where} sets {key!r}, which the sweep sets itself; {RESERVED[key]}")
        if key not in RUN_KEYS:
            raise ConfigError(f"{source}: {choice_message(raw, RUN_KEYS, 'config key', f' in {where}')}")


def _table(data: Mapping[str, Any], name: str, source: str) -> Mapping[str, Any]:
    value = data.get(name, {})
    if not isinstance(value, Mapping):
        raise ConfigError(f"{source}: {name} must be a table ([{name}] with key = value lines), got {value!r}")
    return value


def _label(value: Any) -> str:
    """How a swept value is named in the table: 0.0001 → 1e-04, [100, 100] → 100,100."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return ",".join(_label(v) for v in value)
    if isinstance(value, Mapping):
        return ",".join(f"{k}={_label(v)}" for k, v in value.items()) or "{}"
    return str(value)


def _choice(value: Any, valid: Sequence[str], key: str, source: str) -> str:
    if value not in valid:
        raise ConfigError(f"{source}: {choice_message(value, valid, key, ' in [sweep]')}")
    return str(value)


def _opt_str(value: Any, key: str, source: str) -> str | None:
    if value is not None and not (isinstance(value, str) and value.strip()):
        raise ConfigError(f"{source}: [sweep] {key} must be a non-empty string, got {value!r}")
    return value


def _seeds(value: Any, source: str, what: str = "[sweep] seeds") -> list[int]:
    ok = isinstance(value, list) and value and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0
                                                    for s in value)
    if not ok or len(set(value)) != len(value):
        raise ConfigError(f"{source}: {what} must be a non-empty list of distinct integers >= 0, e.g. "
                          f"[0, 1, 2]; got {value!r}")
    return list(value)


def _sample_axis(sample: Mapping[str, Any], source: str) -> list[tuple[str, dict[str, Any]]]:
    """n settings drawn with random.Random(seed); their label is the sample's index."""
    n, seed = sample.get("n"), sample.get("seed", 0)
    if not (isinstance(n, int) and not isinstance(n, bool) and n >= 1):
        raise ConfigError(f"{source}: [sample] n must be the number of random settings (an integer >= 1), "
                          f"got {n!r}")
    if not (isinstance(seed, int) and not isinstance(seed, bool)):
        raise ConfigError(f"{source}: [sample] seed must be an integer, got {seed!r}")
    dists = {k: v for k, v in sample.items() if k not in ("n", "seed")}
    if not dists:
        raise ConfigError(f"{source}: [sample] has no keys to sample; add e.g. lr = {{log_uniform = [1e-4, 1e-2]}}")
    _check_run_keys(dists, source, "[sample]")
    for key, dist in dists.items():
        ok = isinstance(dist, Mapping) and len(dist) == 1 and next(iter(dist)) in DISTRIBUTIONS
        if not ok:
            raise ConfigError(
                f"{source}: [sample] {key} must be one distribution: {{uniform = [a, b]}}, {{log_uniform = "
                f"[a, b]}}, {{int_uniform = [a, b]}} or {{choice = [...]}}; got {dist!r}"
            )
        kind, args = next(iter(dist.items()))
        if kind == "choice":
            if not isinstance(args, list) or not args:
                raise ConfigError(f"{source}: [sample] {key} = {{choice = [...]}} needs a non-empty list")
        elif not (isinstance(args, list) and len(args) == 2 and all(_is_num(a) for a in args)
                  and args[0] <= args[1] and (kind != "log_uniform" or args[0] > 0)):
            raise ConfigError(f"{source}: [sample] {key} = {{{kind} = [low, high]}} needs two numbers low <= high"
                              + (" (both > 0)" if kind == "log_uniform" else "") + f"; got {args!r}")
    rng = random.Random(seed)
    options = []
    for i in range(n):
        drawn = {}
        for key, dist in dists.items():
            kind, args = next(iter(dist.items()))
            if kind == "choice":
                drawn[key] = args[rng.randrange(len(args))]
            elif kind == "uniform":
                drawn[key] = rng.uniform(args[0], args[1])
            elif kind == "int_uniform":
                drawn[key] = rng.randint(int(args[0]), int(args[1]))
            else:
                drawn[key] = math.exp(rng.uniform(math.log(args[0]), math.log(args[1])))
        options.append((str(i), drawn))
    return options


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _excludes(raw: Any, axes: Mapping[str, list], source: str,
              what: str = "[[exclude]]") -> list[dict[str, list[str]]]:
    if isinstance(raw, Mapping):
        raw = [raw]
    if not isinstance(raw, list) or not all(isinstance(r, Mapping) and r for r in raw):
        raise ConfigError(f"{source}: exclude must be [[exclude]] tables of axis = value(s), got {raw!r}")
    out = []
    for rule in raw:
        cleaned = {}
        for axis, values in rule.items():
            if axis not in axes:
                raise ConfigError(f"{source}: {what} names {axis!r}, which is not swept"
                                  f"{closest_hint(axis, axes)}; choose from {', '.join(axes)}")
            values = values if isinstance(values, list) else [values]
            labels = [label for label, _ in axes[axis]]
            for v in values:
                if _label(v) not in labels:
                    raise ConfigError(f"{source}: {what} {axis} = {v!r} is not one of its values "
                                      f"({', '.join(labels)}){closest_hint(_label(v), labels)}")
            cleaned[axis] = [_label(v) for v in values]
        out.append(cleaned)
    return out


def _baseline(raw: Any, axes: Mapping[str, list], source: str) -> dict[str, str] | None:
    """[sweep] baseline = {axis = value, ...}: checked like an [[exclude]] rule, one value per axis."""
    if raw is None:
        return None
    if not isinstance(raw, Mapping) or not raw:
        raise ConfigError(f"{source}: [sweep] baseline must be a table of axis = value naming the setting to test "
                          f"against, e.g. baseline = {{variant = \"NP+centre\"}}; got {raw!r}")
    for axis, value in raw.items():
        if isinstance(value, list):
            raise ConfigError(f"{source}: [sweep] baseline {axis} must be one value, got the list {value!r}")
    rule = _excludes([raw], axes, source, what="[sweep] baseline")[0]
    return {axis: labels[0] for axis, labels in rule.items()}


def _diagnostics(raw: Any, source: str) -> tuple[str, ...]:
    """[sweep] diagnostics = ["zz_cond", ...]: distinct names of diagnostic_columns.DIAGNOSTICS, in column order."""
    valid = list(DIAGNOSTIC_BY_KEY)
    if not (isinstance(raw, list) and all(isinstance(n, str) for n in raw)):
        raise ConfigError(f"{source}: [sweep] diagnostics must be a list of column names, e.g. "
                          f"diagnostics = [\"zz_cond\", \"corr_after\"] (from {', '.join(valid)}); got {raw!r}")
    for name in raw:
        if name not in valid:
            raise ConfigError(f"{source}: {choice_message(name, valid, 'diagnostic', ' in [sweep] diagnostics')}")
        if raw.count(name) > 1:
            raise ConfigError(f"{source}: [sweep] diagnostics lists {name!r} twice; list each column once")
    return tuple(raw)


def _matches(rule: Mapping[str, list[str]], setting: Mapping[str, str]) -> bool:
    return all(setting.get(axis) in labels for axis, labels in rule.items())
