"""Measure, one at a time, what the paper's code does differently on the digits claim (sims/README.md,
"paper_digits.toml"; issue 10, acceptance row 4).

Three kinds of run, all on the package's digits split of the given seed (the same train/validation/test rows,
10 % of the training set held out), 10 epochs, and one JSON line each (validation and test accuracy per epoch):

* ``ours``: the package's trainer at sims/paper_digits.toml's settings (NP + `scaled`); ``--set KEY=VALUE`` changes
  any RunConfig key (e.g. ``model=paper_mlp``, ``sigma=1e-6``, ``sample_frac=0.2``, ``decor=scaled_left``,
  ``input_scale=max``: the paper code's input scalings are the package's ``input_scale``, measured by
  sims/paper_digits_scaling.toml); the one knob the package has no key for is patched in for the measurement:
  ``--adam-beta2`` (the paper uses 0.9999). ``--set input_scale=...`` applies to the paper modes too.
* ``paper``: the paper's public code (github nasiryahm/CorrelationsRuinGD at HEAD, package ``crgd``: DenseNet of
  4x1000 NPLinear layers wrapped in DecorLinear) from a checkout given by ``--paper-code``. ``--fix-np`` makes
  DecorLinear pass NP's ``update_grads`` to its linear layer, without which that code never sets a weight gradient.
* ``paper-iclr``: the same code at commit abb7e13 ("Repo for ICLR submission", flat modules models.py, decor.py,
  np.py: PerturbNet of HalfBatchDecorLinear, R trained by SGD at the decor lr), ``--demean`` for its
  "demeaned-scaled" method (its "scaled", which the paper's sweep used, does not centre).

The paper's code is imported from the checkout, never copied. Example (one core, about 25 s a run when idle)::

    git clone https://github.com/nasiryahm/CorrelationsRuinGD /tmp/crgd
    git -C /tmp/crgd worktree add /tmp/crgd-iclr abb7e13
    .venv/bin/python sims/paper_digits_reference.py ours --seed 1 --set model=paper_mlp
    .venv/bin/python sims/paper_digits_reference.py paper --seed 1 --paper-code /tmp/crgd --fix-np --adam-beta2 0.9999
    .venv/bin/python sims/paper_digits_reference.py paper-iclr --seed 1 --paper-code /tmp/crgd-iclr --adam-beta2 0.9999

``measure`` runs the measurements declared in sims/paper_differences.toml (one per measured row of sims/README.md's
"What the paper's code does differently"), each (measurement, seed) as one run of this script in its own process,
stores each result as ``<name>-seed<N>.json`` in sims/out/paper_differences/ (atomically) and writes ``table.md``
there (the study part ``paper_differences`` puts it into the README). A stored result whose flags match the
declaration is not run again; the paper modes need their checkout only for a measurement that still has to run
(``--paper-code`` / ``--paper-code-iclr`` or the environment variables PAPER_CODE / PAPER_CODE_ICLR)::

    nice -n 10 .venv/bin/python sims/paper_digits_reference.py measure --jobs 2    # resumes; then table.md
    .venv/bin/python sims/paper_digits_reference.py measure --dry-run              # N runs, F finished, T to do
    .venv/bin/python sims/paper_digits_reference.py measure --tables-only          # table.md from the stored runs
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

import analogdecorr.data as data
from analogdecorr.atomic import atomic_write
from analogdecorr.errors import ConfigError
from analogdecorr.results import write_json_atomic

MODES = ("ours", "paper", "paper-iclr")
BASE = {"dataset": "digits", "rule": "np", "decor": "scaled", "epochs": 10, "probe_size": 0, "drift_times": []}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter,
                                epilog="or: paper_digits_reference.py measure [--dry-run | --tables-only] [--jobs N]: "
                                "the declared measurements (measure --help)")
    p.add_argument("mode", choices=MODES)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--adam-beta2", type=float, default=0.999, help="Adam's beta2 (torch default 0.999; paper 0.9999)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="ours: RunConfig keys; paper modes: sigma, decor_lr, lr, batch_size, epochs, input_scale")
    p.add_argument("--paper-code", type=Path, help="checkout of nasiryahm/CorrelationsRuinGD (paper modes)")
    p.add_argument("--fix-np", action="store_true", help="paper: pass NP's update_grads through DecorLinear")
    p.add_argument("--demean", action="store_true", help="paper-iclr: the 'demeaned-scaled' method")
    return p.parse_args(argv)


def _settings(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"error: --set takes KEY=VALUE, got {pair!r}")
        out[key] = value
    return out


def run_ours(args: argparse.Namespace, sets: dict[str, str]) -> tuple[list[float], list[float]]:
    """The package's trainer; Adam's beta2 patched into the float backend's optimizer factory."""
    import analogdecorr.backends.float as float_backend
    from analogdecorr.config import resolve
    from analogdecorr.train import Trainer

    def make_optimizer(cfg, params) -> torch.optim.Optimizer:
        params = [q for q in params if q.requires_grad]
        return torch.optim.Adam(params, lr=cfg.lr, betas=(0.9, args.adam_beta2), weight_decay=cfg.weight_decay)

    float_backend.make_optimizer = make_optimizer
    with tempfile.TemporaryDirectory() as out:
        cfg = resolve({**BASE, "seed": args.seed, "out": out}, sets)
        if cfg.optimizer != "adam":
            raise SystemExit("error: ours patches Adam's beta2; drop optimizer from --set")
        epochs = Trainer(cfg, progress=False, log=lambda message: None).run()["epochs"]
    return [e["val_acc"] for e in epochs], [e["test_acc"] for e in epochs]


def run_paper(args: argparse.Namespace, sets: dict[str, str]) -> tuple[list[float], list[float]]:
    """The paper's code (HEAD or the ICLR commit) on the package's split, trained as its utils.train does."""
    if args.paper_code is None or not args.paper_code.is_dir():
        commit = " && git -C /tmp/crgd worktree add /tmp/crgd-iclr abb7e13" if args.mode == "paper-iclr" else ""
        raise SystemExit(f"error: the paper modes need --paper-code DIR, a checkout of nasiryahm/CorrelationsRuinGD: "
                         f"{CHECKOUT['paper']}{commit}, then --paper-code /tmp/crgd{'-iclr' if commit else ''}")
    sys.path.insert(0, str(args.paper_code.resolve()))
    x, y = data._digits_arrays()
    x_tr, y_tr, x_te, y_te = data._split(x, y, 0.2, args.seed, "digits")
    x_tr, y_tr, x_va, y_va = data._split_validation(x_tr, y_tr, float(sets.get("val_frac", 0.1)), args.seed, "digits")
    xs_tr, xs_va, xs_te = data._scale(sets.get("input_scale", "feature"), x_tr, x_va, x_te)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    random.seed(args.seed)
    arrays = (xs_tr, y_tr, xs_va, y_va, xs_te, y_te)
    xt, yt, xv, yv, xe, ye = (torch.from_numpy(np.ascontiguousarray(a)) for a in arrays)
    sigma, decor_lr = float(sets.get("sigma", 1e-3)), float(sets.get("decor_lr", 1e-4))
    lr, batch, epochs = float(sets.get("lr", 1e-4)), int(sets.get("batch_size", 64)), int(sets.get("epochs", 10))
    normal = torch.distributions.Normal(torch.tensor([0.0]), torch.tensor([1.0]))

    def sampler(shape: list[int]) -> torch.Tensor:  # the paper's dist_sampler: N(0, 1) of the given shape
        return normal.sample([1] + shape).squeeze_(-1).sum(0)

    kwargs = {"sigma": sigma, "dist_sampler": sampler}
    with contextlib.redirect_stdout(io.StringIO()):  # the paper's models print themselves
        if args.mode == "paper-iclr":
            from models import PerturbNet  # the ICLR commit's flat modules
            from np import NPLinear

            model = PerturbNet(in_size=64, out_size=10, hidden_size=1000, n_hidden_layers=4, layer_type=NPLinear,
                               activation_function=torch.nn.LeakyReLU, layer_kwargs=kwargs,
                               decorrelation_method="demeaned-scaled" if args.demean else "scaled")
            optimizers = [torch.optim.Adam(model.get_fwd_params(), betas=(0.9, args.adam_beta2), eps=1e-8, lr=lr),
                          torch.optim.SGD(model.get_decor_params(), lr=decor_lr)]
        else:
            import crgd.decor
            from crgd.models import DenseNet
            from crgd.np import NPLinear

            if args.fix_np:
                crgd.decor.DecorLinear.update_grads = lambda self, factor: self.linear.update_grads(factor)
            model = DenseNet(in_size=64, out_size=10, layer_type=NPLinear, decor_lr=decor_lr,
                             activation_function=torch.nn.LeakyReLU, layer_kwargs=kwargs)
            optimizers = [torch.optim.Adam(model.parameters(), betas=(0.9, args.adam_beta2), eps=1e-8, lr=lr)]
    loss = torch.nn.CrossEntropyLoss(reduction="none")
    loss_func: Callable = lambda output, target, onehots: loss(output, target)  # noqa: E731 (the paper's signature)

    def accuracy(xs: torch.Tensor, ys: torch.Tensor) -> float:
        _, output = model.test_step(xs, ys, None, loss_func)
        return float((output.argmax(1) == ys).float().mean())

    val, test = [], []
    for _ in range(epochs):
        order = torch.randperm(len(xt))
        for start in range(0, len(xt), batch):
            idx = order[start : start + batch]
            for opt in optimizers:
                opt.zero_grad()
            model.train_step(xt[idx], yt[idx], None, loss_func)
            for opt in optimizers:
                opt.step()
        val.append(accuracy(xv, yv))
        test.append(accuracy(xe, ye))
    return val, test


# ------------------------------------------------------------------------------------- declared measurements
ROOT = Path(__file__).resolve().parents[1]
DECLARATION = ROOT / "sims" / "paper_differences.toml"
OUT = ROOT / "sims" / "out" / "paper_differences"
PAPER_KEYS = ("sigma", "decor_lr", "lr", "batch_size", "epochs", "input_scale", "val_frac")  # run_paper reads these
CODE_FLAG = {"paper": ("--paper-code", "PAPER_CODE"), "paper-iclr": ("--paper-code-iclr", "PAPER_CODE_ICLR")}
CHECKOUT = {"paper": "git clone https://github.com/nasiryahm/CorrelationsRuinGD /tmp/crgd",
            "paper-iclr": "git clone https://github.com/nasiryahm/CorrelationsRuinGD /tmp/crgd && "
                          "git -C /tmp/crgd worktree add /tmp/crgd-iclr {commit}"}
MODE_LABEL = {"ours": "package", "paper": "paper code {commit}", "paper-iclr": "paper code {commit}"}
_ENTRY_KEYS = {"name", "row", "change", "mode", "seeds", "set", "adam_beta2", "fix_np", "demean", "reference"}


@dataclass(frozen=True)
class Measurement:
    """One declared measurement: a run of this script per seed with the same flags."""

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
    """One run of this script in its own process (the paper modes patch and import modules; a process each keeps
    the runs apart); returns its JSON line. RuntimeError with the run's last error line if it fails."""
    argv = m.argv(seed) + (["--paper-code", str(code)] if code is not None else [])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    res = subprocess.run([sys.executable, str(Path(__file__).resolve()), *argv], capture_output=True, text=True,
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
                "written by `sims/paper_digits_reference.py measure`.\n\n")
        f.write(table(measurements, out))
    return path


def parse_measure_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="paper_digits_reference.py measure",
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


def main_measure(argv: list[str]) -> int:
    args = parse_measure_args(argv)
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


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["measure"]:
        raise SystemExit(main_measure(argv[1:]))
    args = parse_args(argv)
    sets = _settings(args.set)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    val, test = run_ours(args, sets) if args.mode == "ours" else run_paper(args, sets)
    print(json.dumps({"mode": args.mode, "seed": args.seed, "adam_beta2": args.adam_beta2,
                      "set": sets, "fix_np": args.fix_np, "demean": args.demean, "val_acc": val, "test_acc": test,
                      "seconds": round(time.perf_counter() - t0, 1)}))


if __name__ == "__main__":
    main()
