"""Reproduce the float-reference comparison of issue 2 (item 6): BP, FA, NP, each with and without decorrelation.

Every (dataset, rule, decorrelation, seed) is one ordinary training run of the package (``analogdecorr.train``)
with the acceptance settings: 4 hidden layers of 1000 LeakyReLU units, Adam lr 1e-4, ``scaled`` decorrelation
with lr 1e-4, batch 64, 10 epochs (the RunConfig defaults); NP's sigma is ``--sigma`` (default 1e-3).

Runs go to ``<out>/<dataset>/<rule>+<decor>/seed<k>/``. A run whose results.json already holds all epochs is
skipped, one with a checkpoint but fewer epochs is resumed, so re-running the script continues an interrupted
sweep. Afterwards the script writes ``<out>/table.md`` (test accuracy mean ± std over seeds at epochs 2, 4 and
10), one ``<dataset>_test_acc.png`` per dataset (mean ± std over seeds) plus ``<dataset>_seed<k>.png``
(``analogdecorr.plots.plot_comparison`` of the first seed), and prints the issue's acceptance checks.

    .venv/bin/python sims/reproduce_float.py                          # digits + mnist1d, seeds 0,1,2
    .venv/bin/python sims/reproduce_float.py --datasets digits --seeds 0 --jobs 1
    .venv/bin/python sims/reproduce_float.py --report-only            # table/plots/checks from finished runs
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # allow running from a checkout without installing the package
    sys.path.insert(0, str(ROOT))

#: (rule, decor) pairs in table order.
VARIANTS: tuple[tuple[str, str], ...] = (
    ("bp", "none"),
    ("bp", "scaled"),
    ("fa", "none"),
    ("fa", "scaled"),
    ("np", "none"),
    ("np", "scaled"),
)


def variants(decor_rule: str = "scaled") -> tuple[tuple[str, str], ...]:
    """VARIANTS with the decorrelated ones using ``decor_rule`` instead of ``scaled``."""
    return tuple((r, decor_rule if d != "none" else d) for r, d in VARIANTS)
REPORT_EPOCHS = (2, 4, 10)
DEFAULT_OUT = ROOT / "sims" / "out" / "float"


@dataclass(frozen=True)
class RunSpec:
    """One training run of the sweep."""

    dataset: str
    rule: str
    decor: str
    seed: int
    epochs: int
    sigma: float
    decor_lr: float
    out: str

    @property
    def label(self) -> str:
        return variant_label(self.rule, self.decor)


def variant_label(rule: str, decor: str) -> str:
    """Human label, e.g. "NP+decor" for ("np", "scaled"), "NP+offdiag" for ("np", "offdiag")."""
    return rule.upper() + ("" if decor == "none" else "+decor" if decor == "scaled" else f"+{decor}")


def run_dir(out: Path, dataset: str, rule: str, decor: str, seed: int) -> Path:
    return out / dataset / f"{rule}+{decor}" / f"seed{seed}"


def completed_epochs(results_json: Path) -> int:
    """Number of epoch rows in a results.json (0 if absent or unreadable)."""
    try:
        data = json.loads(results_json.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return 0
    return len([r for r in data.get("epochs", []) if isinstance(r, dict)])


def config_mismatch(spec: RunSpec) -> str | None:
    """If the run folder already holds a run with other settings (e.g. another --sigma), say which."""
    try:
        cfg = json.loads((Path(spec.out) / "results.json").read_text(encoding="utf-8"))["config"]
    except (OSError, ValueError, KeyError):
        return None
    wanted = {"sigma": spec.sigma, "decor_lr": spec.decor_lr, "decor": spec.decor, "rule": spec.rule}
    diffs = [f"{k}={cfg.get(k)!r} (wanted {v!r})" for k, v in wanted.items() if cfg.get(k) != v]
    return f"{spec.out} holds a run with {', '.join(diffs)}" if diffs else None


def run_one(spec: RunSpec) -> dict[str, Any]:
    """Train one run (worker process, one torch thread); return a status dict, never raise."""
    import torch

    torch.set_num_threads(1)
    from analogdecorr.config import resolve
    from analogdecorr.train import CHECKPOINT_NAME, train

    out = Path(spec.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with open(out / "train.log", "a", encoding="utf-8") as logf:

        def log(msg: str) -> None:
            logf.write(msg + "\n")
            logf.flush()

        try:
            cfg = resolve(
                {},
                {
                    "dataset": spec.dataset,
                    "rule": spec.rule,
                    "decor": spec.decor,
                    "hidden": "1000,1000,1000,1000",
                    "activation": "leaky_relu",
                    "optimizer": "adam",
                    "lr": 1e-4,
                    "decor_lr": spec.decor_lr,
                    "batch_size": 64,
                    "sigma": spec.sigma,
                    "epochs": spec.epochs,
                    "seed": spec.seed,
                    "out": str(out),
                },
            )
            resume = (out / CHECKPOINT_NAME).exists()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                train(cfg, resume=resume, progress=False, log=log)
            for w in caught:
                log(f"warning: {w.message}")
            status = "ok"
        except Exception as exc:  # a diverged run is a result, not a crash of the sweep
            log(traceback.format_exc())
            status = f"{type(exc).__name__}: {exc}"
    return {"spec": spec, "status": status, "seconds": time.perf_counter() - t0}


# ------------------------------------------------------------------------------------------------ summary
def load_curves(out: Path, dataset: str, rule: str, decor: str, seeds: Sequence[int]) -> list[list[float]]:
    """Per seed, the test accuracy per epoch (runs without a results.json are left out)."""
    curves = []
    for seed in seeds:
        path = run_dir(out, dataset, rule, decor, seed) / "results.json"
        if not path.exists():
            continue
        data = json.loads(path.read_text(encoding="utf-8"))
        acc = [r.get("test_acc") for r in data.get("epochs", []) if isinstance(r, dict)]
        curves.append([math.nan if a is None else float(a) for a in acc])
    return curves


def at_epoch(curves: list[list[float]], epoch: int) -> list[float]:
    """Test accuracies of all seeds at (1-based) ``epoch`` (seeds that did not get there are left out)."""
    return [c[epoch - 1] for c in curves if len(c) >= epoch]


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0 for a single value); NaN for none."""
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def fmt_cell(values: Sequence[float]) -> str:
    if not values:
        return "–"
    m, s = mean_std(values)
    return f"{100 * m:.1f} ± {100 * s:.1f}"


def write_table(
    out: Path,
    datasets: Sequence[str],
    seeds: Sequence[int],
    sigma: float,
    decor_lr: float,
    epochs: int,
    decor_rule: str = "scaled",
) -> str:
    """Markdown table of test accuracy (%) per dataset and variant at REPORT_EPOCHS; returns the text."""
    cols = [e for e in REPORT_EPOCHS if e <= epochs] or [epochs]
    lines = [
        "# Float reference: test accuracy (%), mean ± std over seeds",
        "",
        f"4 hidden layers × 1000 LeakyReLU, Adam lr 1e-4, `{decor_rule}` decorrelation lr {decor_lr:g}, batch 64, "
        f"NP σ = {sigma:g}. Std is the sample std (ddof = 1). Generated by `sims/reproduce_float.py`.",
    ]
    for ds in datasets:
        lines += ["", f"## {ds}", "", "| rule | seeds | " + " | ".join(f"epoch {e}" for e in cols) + " |"]
        lines.append("| --- | --- | " + " | ".join("---" for _ in cols) + " |")
        for rule, decor in variants(decor_rule):
            curves = load_curves(out, ds, rule, decor, seeds)
            if not curves:
                continue  # not part of this sweep (e.g. --variants np+decor)
            n_done = len([c for c in curves if len(c) >= epochs])
            cells = [fmt_cell(at_epoch(curves, e)) for e in cols]
            lines.append(f"| {variant_label(rule, decor)} | {n_done} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    return text


def acceptance_checks(out: Path, seeds: Sequence[int], decor_rule: str = "scaled") -> list[tuple[str, str, str]]:
    """The issue's checks on digits (means over seeds): (description, PASS/FAIL/SKIP, measured values)."""

    def mean_at(rule: str, decor: str, epoch: int) -> float:
        vals = at_epoch(load_curves(out, "digits", rule, decor, seeds), epoch)
        return statistics.fmean(vals) if vals else math.nan

    checks: list[tuple[str, Callable[[], tuple[bool, str]]]] = []

    def add(desc: str, fn: Callable[[], tuple[bool, str]]) -> None:
        checks.append((desc, fn))

    def ck_np() -> tuple[bool, str]:
        v = mean_at("np", "none", 10)
        return v <= 0.30, f"NP {100 * v:.1f}%"

    def ck_dnp() -> tuple[bool, str]:
        v = mean_at("np", decor_rule, 10)
        return v >= 0.80, f"NP+decor {100 * v:.1f}%"

    def ck_bp2() -> tuple[bool, str]:
        a, b = mean_at("bp", decor_rule, 2), mean_at("bp", "none", 2)
        return a >= b, f"BP+decor {100 * a:.1f}% vs BP {100 * b:.1f}%"

    def ck_bp10() -> tuple[bool, str]:
        v = mean_at("bp", decor_rule, 10)
        return v >= 0.97, f"BP+decor {100 * v:.1f}%"

    def ck_fa4() -> tuple[bool, str]:
        a, b = mean_at("fa", decor_rule, 4), mean_at("fa", "none", 4)
        return a >= b, f"FA+decor {100 * a:.1f}% vs FA {100 * b:.1f}%"

    add("digits: NP test acc at epoch 10 <= 30%", ck_np)
    add("digits: NP+decor test acc at epoch 10 >= 80%", ck_dnp)
    add("digits: BP+decor >= BP at epoch 2", ck_bp2)
    add("digits: BP+decor test acc at epoch 10 >= 97%", ck_bp10)
    add("digits: FA+decor >= FA at epoch 4", ck_fa4)
    results = []
    for desc, fn in checks:
        ok, measured = fn()
        if "nan" in measured:
            results.append((desc, "SKIP", "not run"))
        else:
            results.append((desc, "PASS" if ok else "FAIL", measured))
    return results


def plot_dataset(out: Path, dataset: str, seeds: Sequence[int], decor_rule: str = "scaled") -> list[Path]:
    """``<dataset>_test_acc.png`` (mean ± std over seeds) and ``<dataset>_seed<k>.png`` (plot_comparison)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from analogdecorr.plots import plot_comparison

    written = []
    fig = Figure(figsize=(8, 5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    any_line = False
    for i, (rule, decor) in enumerate(variants(decor_rule)):
        curves = load_curves(out, dataset, rule, decor, seeds)
        if not curves:
            continue
        n_ep = max(len(c) for c in curves)
        xs, ms, ss = [], [], []
        for e in range(1, n_ep + 1):
            m, s = mean_std(at_epoch(curves, e))
            xs.append(e)
            ms.append(m)
            ss.append(s)
        color = f"C{i // 2}"
        style = "-" if decor != "none" else "--"
        ax.plot(xs, ms, style, marker=".", color=color, label=f"{variant_label(rule, decor)} (n={len(curves)})")
        ax.fill_between(xs, [m - s for m, s in zip(ms, ss, strict=True)], [m + s for m, s in zip(ms, ss, strict=True)],
                        color=color, alpha=0.15)
        any_line = True
    if any_line:
        ax.set(xlabel="epoch", ylabel="test accuracy", ylim=(0, 1.02),
               title=f"{dataset}: test accuracy, mean ± std over seeds (dashed: no decorrelation)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
        path = out / f"{dataset}_test_acc.png"
        fig.savefig(path, dpi=110)
        written.append(path)
    if seeds:
        paths = [run_dir(out, dataset, r, d, seeds[0]) / "results.json" for r, d in variants(decor_rule)]
        paths = [p for p in paths if p.exists()]
        if paths:
            written.append(plot_comparison(paths, out / f"{dataset}_seed{seeds[0]}.png", metric="test_acc"))
    return written


# -------------------------------------------------------------------------------------------------- main
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", default="digits,mnist1d", help="comma-separated datasets (default: %(default)s)")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=10, help="epochs per run (default: %(default)s)")
    p.add_argument("--jobs", type=int, default=2, help="parallel runs, one torch thread each (default: %(default)s)")
    p.add_argument("--sigma", type=float, default=1e-3, help="NP perturbation std (default: %(default)s)")
    p.add_argument("--decor-lr", type=float, default=1e-4,
                   help="decorrelation lr (default: %(default)s; the acceptance setting)")
    p.add_argument("--decor-rule", default="scaled", choices=("scaled", "offdiag", "whiten", "kappa"),
                   help="decorrelation rule of the +decor variants (default: %(default)s; the acceptance setting)")
    p.add_argument("--variants", default=None,
                   help="comma-separated variants to run, e.g. np+none,np+decor (default: all six)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: sims/out/float)")
    p.add_argument("--report-only", action="store_true", help="only write table, plots and checks")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from tqdm.auto import tqdm

    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    all_variants = variants(args.decor_rule)
    wanted = set(all_variants)
    if args.variants:
        wanted = {tuple(v.strip().lower().replace("decor", args.decor_rule).split("+", 1))
                  for v in args.variants.split(",") if v.strip()}
    unknown = wanted - set(all_variants)
    if unknown:
        raise SystemExit(f"unknown variants {sorted(unknown)}; choose from "
                         + ", ".join(f"{r}+{d}" for r, d in all_variants))
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    specs = [
        RunSpec(ds, rule, decor, seed, args.epochs, args.sigma, args.decor_lr,
                str(run_dir(out, ds, rule, decor, seed)))
        for ds in datasets for seed in seeds for rule, decor in all_variants if (rule, decor) in wanted
    ]
    clashes = [m for m in map(config_mismatch, specs) if m]
    if clashes:
        raise SystemExit("; ".join(clashes[:3]) + "; choose another --out for these settings")
    todo = [s for s in specs if completed_epochs(Path(s.out) / "results.json") < s.epochs]
    failures: list[str] = []
    if not args.report_only and todo:
        print(f"{len(specs) - len(todo)} of {len(specs)} runs already complete; running {len(todo)} "
              f"with {args.jobs} job(s)")
        bar = tqdm(total=len(todo), desc="runs", unit="run")
        with ProcessPoolExecutor(max_workers=max(1, args.jobs), mp_context=get_context("spawn")) as pool:
            futures: list[Future] = [pool.submit(run_one, s) for s in todo]
            for fut in as_completed(futures):
                res = fut.result()
                spec: RunSpec = res["spec"]
                name = f"{spec.dataset} {spec.label} seed {spec.seed}"
                if res["status"] != "ok":
                    failures.append(f"{name}: {res['status']}")
                acc = load_curves(out, spec.dataset, spec.rule, spec.decor, [spec.seed])
                final = f"{100 * acc[0][-1]:.1f}%" if acc and acc[0] else "n/a"
                bar.write(f"{name}: {res['status']}, final test acc {final}, {res['seconds']:.0f}s")
                bar.update(1)
        bar.close()

    table = write_table(out, datasets, seeds, args.sigma, args.decor_lr, args.epochs, args.decor_rule)
    acceptance_settings = args.decor_rule == "scaled" and args.decor_lr == 1e-4 and args.epochs >= 10
    checks = acceptance_checks(out, seeds, args.decor_rule) if "digits" in datasets and acceptance_settings else []
    if "digits" in datasets and not acceptance_settings:
        print("acceptance checks skipped: they apply to `scaled` decorrelation, decor lr 1e-4, >= 10 epochs")
    if checks:
        table += "\n## Acceptance checks (digits, means over seeds)\n\n| check | result | measured |\n"
        table += "| --- | --- | --- |\n" + "".join(f"| {d} | {v} | {m} |\n" for d, v, m in checks)
    if failures:
        table += "\n## Failed runs\n\n" + "".join(f"- {f}\n" for f in failures)
    (out / "table.md").write_text(table, encoding="utf-8")
    for ds in datasets:
        plot_dataset(out, ds, seeds, args.decor_rule)
    print(table)
    for desc, verdict, measured in checks:
        print(f"{verdict}  {desc}  ({measured})")
    print(f"wrote {out / 'table.md'} and plots in {out}")
    return 1 if failures or any(v == "FAIL" for _, v, _ in checks) else 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
