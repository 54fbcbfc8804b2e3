"""Run the measurements of what the paper's code does differently (sims/README.md, "What the paper's code does
differently"; issue 10, acceptance row 4), declared in sims/paper_differences.toml, and write their table.

Each (measurement, seed) is one run of sims/paper_digits_reference.py (its modes ``ours``, ``paper``,
``paper-iclr``) in its own process; each result is stored as ``<name>-seed<N>.json`` in
sims/out/paper_differences/ (atomically) and ``table.md`` is written there (the study part ``paper_differences``
puts it into the README). A stored result whose flags match the declaration is not run again; the paper modes
need their checkout only for a measurement that still has to run (``--paper-code`` / ``--paper-code-iclr`` or the
environment variables PAPER_CODE / PAPER_CODE_ICLR)::

    nice -n 10 .venv/bin/python sims/paper_differences.py --jobs 2    # resumes; then table.md
    .venv/bin/python sims/paper_differences.py --dry-run              # N runs, F finished, T to do
    .venv/bin/python sims/paper_differences.py --tables-only          # table.md from the stored runs
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from paper_digits_reference import BASE, CLONE, MODES

from analogdecorr.atomic import atomic_write
from analogdecorr.errors import ConfigError
from analogdecorr.results import write_json_atomic

# ------------------------------------------------------------------------------------- declared measurements
ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "sims" / "paper_digits_reference.py"  # the script each run is
DECLARATION = ROOT / "sims" / "paper_differences.toml"
OUT = ROOT / "sims" / "out" / "paper_differences"
PAPER_KEYS = ("sigma", "decor_lr", "lr", "batch_size", "epochs", "input_scale", "val_frac")  # run_paper reads these
CODE_FLAG = {"paper": ("--paper-code", "PAPER_CODE"), "paper-iclr": ("--paper-code-iclr", "PAPER_CODE_ICLR")}
CHECKOUT = {"paper": CLONE, "paper-iclr": CLONE + " && git -C /tmp/crgd worktree add /tmp/crgd-iclr {commit}"}
MODE_LABEL = {"ours": "package", "paper": "paper code {commit}", "paper-iclr": "paper code {commit}"}
_ENTRY_KEYS = {"name", "row", "change", "mode", "seeds", "set", "adam_beta2", "fix_np", "demean", "reference"}


@dataclass(frozen=True)
class Measurement:
    """One declared measurement: a run of sims/paper_digits_reference.py per seed with the same flags."""

    name: str
    row: int | None  # the README description table's #; None for the reference
    change: str
    mode: str
    seeds: tuple[int, ...]
    sets: dict[str, str] = field(default_factory=dict)
    adam_beta2: float = 0.999
    fix_np: bool = False
    demean: bool = False
    reference: bool = False
    code: str | None = None  # the paper code's commit (paper modes)

    def flags(self, seed: int) -> dict[str, Any]:
        """What a stored result must match to count as this measurement (main's JSON keys, plus the commit)."""
        return {"mode": self.mode, "seed": seed, "adam_beta2": self.adam_beta2, "set": dict(self.sets),
                "fix_np": self.fix_np, "demean": self.demean, "code": self.code}

    def argv(self, seed: int) -> list[str]:
        """This script's single-run arguments for one seed (the checkout flag is added by the caller)."""
        out = [self.mode, "--seed", str(seed), "--adam-beta2", repr(self.adam_beta2)]
        if self.sets:
            out += ["--set", *(f"{k}={v}" for k, v in self.sets.items())]
        return out + ["--fix-np"] * self.fix_np + ["--demean"] * self.demean

    def path(self, out: Path, seed: int) -> Path:
        return out / f"{self.name}-seed{seed}.json"


def _error(where: str, message: str) -> ConfigError:
    return ConfigError(f"{where}: {message}")


def load_measurements(path: Path) -> list[Measurement]:
    """Parse and check the declaration; every problem is one ConfigError naming the entry and the fix."""
    from analogdecorr.config import load_toml

    try:
        raw = load_toml(path)
    except ConfigError as e:
        raise ConfigError(str(e).replace("--config", "--file")) from None
    unknown = set(raw) - {"paper_code", "measurement"}
    if unknown:
        raise _error(str(path), f"unknown key {sorted(unknown)[0]!r}; the keys are paper_code and [[measurement]]")
    codes = raw.get("paper_code", {})
    if not isinstance(codes, dict) or set(codes) - set(CODE_FLAG) or not all(
            isinstance(c, str) and re.fullmatch(r"[0-9a-f]{7,40}", c) for c in codes.values()):
        raise _error(str(path), "[paper_code] maps paper / paper-iclr to a commit, e.g. paper = \"00cf470\"")
    entries = raw.get("measurement", [])
    if not isinstance(entries, list) or not entries:
        raise _error(str(path), "declare at least one [[measurement]]")
    out: list[Measurement] = []
    for i, e in enumerate(entries, 1):
        out.append(_measurement(e, f"{path.name} [[measurement]] {i}", codes))
    names = [m.name for m in out]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup:
        raise _error(str(path), f"two measurements are named {dup!r}; give each its own name")
    if sum(m.reference for m in out) > 1:
        raise _error(str(path), "more than one measurement has reference = true; mark one")
    return out


def _measurement(e: Any, where: str, codes: dict[str, str]) -> Measurement:
    if not isinstance(e, dict):
        raise _error(where, "must be a table of keys")
    unknown = set(e) - _ENTRY_KEYS
    if unknown:
        raise _error(where, f"unknown key {sorted(unknown)[0]!r}; the keys are {', '.join(sorted(_ENTRY_KEYS))}")
    name = e.get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.]+", name):
        raise _error(where, "name must be a word of letters, digits, _ . (it names the stored files)")
    where = f"{where} ({name})"
    for key in ("change", "mode", "seeds"):
        if key not in e:
            raise _error(where, f"needs {key}")
    reference = e.get("reference", False)
    row = e.get("row")
    if not isinstance(reference, bool):
        raise _error(where, "reference must be true or false")
    if row is None and not reference:
        raise _error(where, "needs row = N, the README description table's #")
    if row is not None and (isinstance(row, bool) or not isinstance(row, int) or row < 1):
        raise _error(where, f"row must be a positive integer, got {row!r}")
    if not isinstance(e["change"], str) or not e["change"].strip() or "|" in e["change"]:
        raise _error(where, "change must be a non-empty label without |")
    mode = e["mode"]
    if mode not in MODES:
        raise _error(where, f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    seeds = e["seeds"]
    if (not isinstance(seeds, list) or not seeds or len(set(seeds)) != len(seeds)
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)):
        raise _error(where, f"seeds must be a list of distinct integers >= 0, e.g. [1, 3], got {seeds!r}")
    sets = e.get("set", {})
    if not isinstance(sets, dict) or not all(isinstance(v, (str, int, float)) for v in sets.values()):
        raise _error(where, "set must be a table such as { model = \"paper_mlp\" }")
    sets = {str(k): str(v) for k, v in sets.items()}
    beta2 = e.get("adam_beta2", 0.999)
    if isinstance(beta2, bool) or not isinstance(beta2, (int, float)) or not 0 < beta2 < 1:
        raise _error(where, f"adam_beta2 must be a number in (0, 1), e.g. 0.9999, got {beta2!r}")
    flags = {k: e.get(k, False) for k in ("fix_np", "demean")}
    for key, value in flags.items():
        if not isinstance(value, bool):
            raise _error(where, f"{key} must be true or false")
    if flags["fix_np"] and mode != "paper":
        raise _error(where, "fix_np is for mode = \"paper\" (the HEAD code's DecorLinear); drop it")
    if flags["demean"] and mode != "paper-iclr":
        raise _error(where, "demean is for mode = \"paper-iclr\" (abb7e13's \"demeaned-scaled\"); drop it")
    if reference and mode != "ours":
        raise _error(where, "the reference must be mode = \"ours\" (the package unchanged)")
    if mode == "ours":
        from analogdecorr.config import resolve

        try:
            resolve({**BASE, "seed": 0, "out": "unused"}, sets)
        except ConfigError as err:
            raise _error(where, f"set: {err}") from None
        code = None
    else:
        bad = sorted(set(sets) - set(PAPER_KEYS))
        if bad:
            raise _error(where, f"set: the paper modes take {', '.join(PAPER_KEYS)}, not {bad[0]!r}")
        code = codes.get(mode)
        if code is None:
            raise _error(where, f"mode {mode} needs its commit in [paper_code], e.g. {mode} = \"abc1234\"")
    return Measurement(name=name, row=row, change=e["change"].strip(), mode=mode, seeds=tuple(seeds), sets=sets,
                       adam_beta2=float(beta2), reference=reference, code=code, **flags)


def stored(m: Measurement, seed: int, out: Path) -> dict[str, Any] | None:
    """The stored result of ``m`` at ``seed`` if its flags match the declaration (else None: run it again)."""
    try:
        result = json.loads(m.path(out, seed).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(result, dict) or result.get("flags") != m.flags(seed) or not result.get("test_acc"):
        return None
    return result


def pending(measurements: list[Measurement], out: Path) -> list[tuple[Measurement, int]]:
    return [(m, s) for m in measurements for s in m.seeds if stored(m, s, out) is None]


def paper_checkouts(todo: list[tuple[Measurement, int]], given: dict[str, Path | None]) -> dict[str, Path]:
    """The checkout of each paper mode that has a run to do, at its declared commit; ConfigError naming the fix."""
    dirs: dict[str, Path] = {}
    for m, _ in todo:
        if m.mode == "ours" or m.mode in dirs:
            continue
        flag, env = CODE_FLAG[m.mode]
        where = given.get(m.mode) or (Path(os.environ[env]) if os.environ.get(env) else None)
        fix = CHECKOUT[m.mode].format(commit=m.code)
        if where is None or not where.is_dir():
            what = f"{where} is not a folder" if where is not None else f"{flag} DIR or {env}=DIR is not given"
            raise ConfigError(f"measurement {m.name} (mode {m.mode}) needs the paper's code at {m.code}, but {what}; "
                              f"check it out: {fix}, then pass {flag} DIR or set {env}=DIR")
        res = subprocess.run(["git", "-C", str(where), "rev-parse", "HEAD"], capture_output=True, text=True)
        head = res.stdout.strip()
        if res.returncode != 0 or not head.startswith(m.code):
            raise ConfigError(f"measurement {m.name} (mode {m.mode}) needs the paper's code at {m.code}; {where} is "
                              f"at {head[:7] or 'no git commit'}: git -C {where} checkout {m.code}")
        dirs[m.mode] = where.resolve()
    return dirs


Runner = Callable[[Measurement, int, Path | None], dict[str, Any]]


def run_in_process(m: Measurement, seed: int, code: Path | None) -> dict[str, Any]:
    """One run of sims/paper_digits_reference.py in its own process (the paper modes patch and import modules; a
    process each keeps the runs apart); returns its JSON line. RuntimeError with the run's last error line if it
    fails."""
    argv = m.argv(seed) + (["--paper-code", str(code)] if code is not None else [])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    res = subprocess.run([sys.executable, str(REFERENCE), *argv], capture_output=True, text=True,
                         cwd=ROOT, env=env)
    lines = res.stdout.strip().splitlines()
    if res.returncode != 0 or not lines:
        last = (res.stderr.strip().splitlines() or lines or ["no output"])[-1]
        raise RuntimeError(f"exit {res.returncode}: {last}")
    return json.loads(lines[-1])


def measure(measurements: list[Measurement], out: Path, *, jobs: int = 1, given: dict[str, Path | None] | None = None,
            runner: Runner = run_in_process, log: Callable[[str], None] = print) -> int:
    """Run every declared (measurement, seed) without a matching stored result, ``jobs`` at a time, storing each
    as it finishes; returns the number that failed. The paper checkouts are checked before the first run."""
    todo = pending(measurements, out)
    dirs = paper_checkouts(todo, given or {})
    out.mkdir(parents=True, exist_ok=True)

    def one(item: tuple[Measurement, int]) -> bool:
        m, seed = item
        try:
            result = runner(m, seed, dirs.get(m.mode))
        except Exception as e:  # noqa: BLE001 (a failed run is reported; the others go on)
            log(f"failed: {m.name} seed {seed}: {e}")
            return False
        echoed = {k: result.get(k) for k in ("mode", "seed", "adam_beta2", "set", "fix_np", "demean")}
        if echoed != {k: v for k, v in m.flags(seed).items() if k != "code"}:
            log(f"failed: {m.name} seed {seed}: the run echoed other flags ({echoed})")
            return False
        record = {"name": m.name, "flags": m.flags(seed), "val_acc": result["val_acc"],
                  "test_acc": result["test_acc"], "seconds": result.get("seconds")}
        if m.code is not None:
            record["paper_code"] = str(dirs[m.mode])
        write_json_atomic(m.path(out, seed), record)
        log(f"{m.name} seed {seed}: test {result['test_acc'][-1]:.3f} (val {result['val_acc'][-1]:.3f}), "
            f"{result.get('seconds')} s")
        return True

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        ok = list(pool.map(one, todo))
    return ok.count(False)


def _acc(x: float) -> str:
    return f"{x:.3f}".removeprefix("0")


def _points(difference: float) -> str:
    text = f"{100 * difference:+.1f}"
    return "0.0" if text in ("+0.0", "-0.0") else text


def table(measurements: list[Measurement], out: Path) -> str:
    """The Markdown table of the stored results: per measurement its seeds' test accuracy at the last epoch
    (validation in brackets), their mean, and per seed the test Δ in points against the reference's same seed
    (– where the reference has no such seed or a run is not stored)."""
    results = {(m.name, s): stored(m, s, out) for m in measurements for s in m.seeds}
    epochs = {len(r["test_acc"]) for r in results.values() if r is not None}
    at = f"epoch {epochs.pop()}" if len(epochs) == 1 else "the last epoch"
    ref = next((m for m in measurements if m.reference), None)
    lines = [f"| # | change | code | seeds | test (validation) at {at} | mean test | Δ test vs the package, "
             "points (same seed) |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for m in measurements:
        done = {s: r for s in m.seeds if (r := results[(m.name, s)]) is not None}
        cells = " / ".join(f"{_acc(r['test_acc'][-1])} ({_acc(r['val_acc'][-1])})" if (r := done.get(s)) else "–"
                           for s in m.seeds)
        mean = _acc(sum(r["test_acc"][-1] for r in done.values()) / len(done)) if done else "–"
        delta = "–"
        if ref is not None and m is not ref:
            delta = " / ".join(_points(done[s]["test_acc"][-1] - base["test_acc"][-1])
                               if s in done and s in ref.seeds and (base := results[(ref.name, s)]) else "–"
                               for s in m.seeds)
        seeds = ", ".join(map(str, m.seeds))
        label = MODE_LABEL[m.mode].format(commit=m.code)
        lines.append(f"| {m.row if m.row is not None else ''} | {m.change} | {label} | {seeds} | {cells} | {mean} "
                     f"| {delta} |")
    return "\n".join(lines) + "\n"


def write_table(measurements: list[Measurement], out: Path) -> Path:
    path = out / "table.md"
    with atomic_write(path) as f:
        f.write("# What the paper's code does differently, measured\n\n"
                "One change at a time (sims/paper_differences.toml), NP + `scaled` on the package's digits split; "
                "written by `sims/paper_differences.py`.\n\n")
        f.write(table(measurements, out))
    return path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="paper_differences.py",
                                description="run the declared measurements (resuming) and write their table")
    p.add_argument("--file", type=Path, default=DECLARATION, help="the declaration (default: %(default)s)")
    p.add_argument("--out", type=Path, default=OUT, help="where the results and table.md go")
    p.add_argument("--jobs", type=int, default=1, help="runs at a time (each a process on one thread)")
    p.add_argument("--paper-code", type=Path, help="checkout of the paper's code at [paper_code] paper "
                   "(or PAPER_CODE=DIR)")
    p.add_argument("--paper-code-iclr", type=Path, help="checkout at [paper_code] paper-iclr (or PAPER_CODE_ICLR=DIR)")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--dry-run", action="store_true", help="print 'N runs, F finished, T to do' and the to-do; exit")
    what.add_argument("--tables-only", action="store_true", help="only write table.md from the stored results")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        measurements = load_measurements(args.file)
        todo = pending(measurements, args.out)
        runs = sum(len(m.seeds) for m in measurements)
        if args.dry_run:
            print(f"{runs} runs, {runs - len(todo)} finished, {len(todo)} to do")
            for m, seed in todo:
                print(f"to do: {m.name} seed {seed}: paper_digits_reference.py {' '.join(m.argv(seed))}")
            return 0
        failed = 0
        if not args.tables_only:
            print(f"{runs} runs, {runs - len(todo)} finished, {len(todo)} to do", flush=True)
            given = {"paper": args.paper_code, "paper-iclr": args.paper_code_iclr}
            failed = measure(measurements, args.out, jobs=args.jobs, given=given,
                             log=lambda s: print(s, flush=True))
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {write_table(measurements, args.out)}")
    return 1 if failed else 0



if __name__ == "__main__":
    raise SystemExit(main())
