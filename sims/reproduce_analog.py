"""Analog co-simulation study (issue 3): learning rules × aihwkit devices × datasets, 3 seeds each.

Every run is ``analogdecorr.train.train`` on the analog backend with ``config.ANALOG_DEFAULTS`` (pulsed SGD
learning rate, schedule, weight decay, σ, decorrelation lr) plus the row's dataset/network/rule/device. The
study writes one run folder per (dataset, device, rule, seed) under ``--out``/runs, named by a hash of the
complete configuration, so re-running skips every run whose results.json is complete and resumes a run that
was interrupted (its checkpoint.pt is used). Changing a default or ``--set`` gives new folders, never a mix.

Rows
  datasets  digits (64-100-10), mnist1d (40-100-100-10)
  rules     bp, np, np+centre (demeaning only, R = I: what centring alone gives), np+decor and fa+decor (the
            analog default decorrelation, ANALOG_DEFAULTS["decor"]), np+scaled (the seed paper's ``scaled`` rule
            at the same settings), fa
  devices   fp (FloatingPointPreset: exact tile), idealized/constantstep/ecram with ideal IO
            (io is_perfect = true; suffix -ideal) and with the preset's own noisy periphery (suffix -noisy);
            the other aihwkit training presets (ReRamESPreset, CapacitorPreset, PCMPreset, GokmenVlasovPreset)
            with ideal IO, NP rows only (np, np+centre, np+decor), reported as they come out
  fidelity  the float backend (torch SGD, same lr/σ/schedule/weight decay/seeds) for bp and np+decor on
            mnist1d, compared with the analog fp rows at epoch 20

Outputs: ``--out``/table.md (best- and last-epoch test accuracy mean ± std over seeds, PCM drift accuracy at
1 day / 1 year, mean pulsed-update cosine of NP rows, the acceptance checks) and ``--out``/plots/*.png.

Examples::

    .venv/bin/python sims/reproduce_analog.py --jobs 2                      # everything (acceptance rows first)
    .venv/bin/python sims/reproduce_analog.py --acceptance --jobs 2         # only the acceptance rows
    .venv/bin/python sims/reproduce_analog.py --datasets digits --devices ecram-ideal ecram-noisy
    .venv/bin/python sims/reproduce_analog.py --table-only                  # rebuild table/plots from disk
    .venv/bin/python sims/reproduce_analog.py --acceptance --set lr=0.03 --set weight_decay=1e-3 \
        --out sims/out/analog_sweep/lr0.03                                   # a hyperparameter variant
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import statistics
import sys
import time
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from analogdecorr.config import ANALOG_DEFAULTS, resolve  # noqa: E402

DATASETS = {"mnist1d": "100,100", "digits": "100"}  # hidden widths: 40-100-100-10 and 64-100-10
RULES = {  # label -> (rule, decor); decor None = the analog default decorrelation (ANALOG_DEFAULTS["decor"])
    "bp": ("bp", "none"),
    "np": ("np", "none"),
    "np+centre": ("np", "centre"),
    "np+decor": ("np", None),
    "np+scaled": ("np", "scaled"),
    "fa": ("fa", "none"),
    "fa+decor": ("fa", None),
}
DEVICES = {  # label -> (backend, preset, io)
    "fp": ("analog", "FloatingPointPreset", {}),
    "idealized-ideal": ("analog", "IdealizedPreset", {"is_perfect": True}),
    "constantstep-ideal": ("analog", "ConstantStep", {"is_perfect": True}),
    "ecram-ideal": ("analog", "EcRamPreset", {"is_perfect": True}),
    "idealized-noisy": ("analog", "IdealizedPreset", {}),
    "constantstep-noisy": ("analog", "ConstantStep", {}),
    "ecram-noisy": ("analog", "EcRamPreset", {}),
    "reram-ideal": ("analog", "ReRamESPreset", {"is_perfect": True}),
    "capacitor-ideal": ("analog", "CapacitorPreset", {"is_perfect": True}),
    "pcm-ideal": ("analog", "PCMPreset", {"is_perfect": True}),
    "gokmenvlasov-ideal": ("analog", "GokmenVlasovPreset", {"is_perfect": True}),
    "float": ("float", "IdealizedPreset", {}),  # float backend, for the pipeline-fidelity check only
}
#: The devices the issue's no-collapse criterion names (exact tile and the three pulsed presets, ideal IO).
CORE_DEVICES = ("fp", "idealized-ideal", "constantstep-ideal", "ecram-ideal")
#: The remaining aihwkit training presets: reported as they come out.
OTHER_PRESETS = ("reram-ideal", "capacitor-ideal", "pcm-ideal", "gokmenvlasov-ideal")
#: The rows run on the other presets: the NP variants at the defaults.
OTHER_PRESET_RULES = ("np", "np+centre", "np+decor")
FIDELITY_RULES = ("bp", "np+decor")
FIDELITY_EPOCH = 20
DRIFT_TIMES = (86400.0, 31536000.0)  # 1 day, 1 year
#: Rows the acceptance criteria name, run first: (dataset, device, rule).
ACCEPTANCE = (
    ("mnist1d", "fp", "np"),
    ("mnist1d", "fp", "np+decor"),
    ("mnist1d", "fp", "np+centre"),
    ("digits", "ecram-ideal", "np"),
    ("digits", "ecram-ideal", "np+decor"),
    ("mnist1d", "fp", "bp"),
    ("mnist1d", "float", "bp"),
    ("mnist1d", "float", "np+decor"),
)


@dataclass(frozen=True)
class Run:
    dataset: str
    device: str
    rule: str
    seed: int
    overrides: dict

    @property
    def out(self) -> Path:
        return Path(self.overrides["out"])

    def label(self) -> str:
        return f"{self.dataset}/{self.device}/{self.rule}/seed{self.seed}"


def _parse_set(items: list[str]) -> dict:
    out = {}
    for item in items:
        if "=" not in item:
            raise SystemExit(f"--set expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip().replace("-", "_")] = value.strip()
    return out


def make_run(dataset: str, device: str, rule: str, seed: int, epochs: int, root: Path, extra: dict) -> Run:
    backend, preset, io = DEVICES[device]
    rule_name, decor = RULES[rule]
    ov: dict = {
        "backend": "analog",  # analog defaults apply to the float fidelity rows too (same lr/σ/schedule)
        "dataset": dataset,
        "hidden": DATASETS[dataset],
        "rule": rule_name,
        "decor": decor,
        "seed": seed,
        "epochs": epochs,
        "preset": preset,
        "io": dict(io),
        "drift_times": ",".join(f"{t:g}" for t in DRIFT_TIMES),
        **extra,
    }
    cfg = resolve({}, ov)
    if backend == "float":
        cfg = resolve({}, {**cfg.to_dict(), "backend": "float", "io": {}, "device": {}})
    d = cfg.to_dict()
    d.pop("out")
    key = hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:10]
    out = root / "runs" / dataset / device / rule / f"seed{seed}-{key}"
    return Run(dataset, device, rule, seed, {**d, "out": str(out)})


def is_complete(run: Run) -> bool:
    if (run.out / "diverged.json").exists():
        return True
    path = run.out / "results.json"
    if not path.exists():
        return False
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    if len(data.get("epochs", [])) < run.overrides["epochs"]:
        return False
    return run.overrides["backend"] != "analog" or "drift" in data


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")


def execute(run: Run) -> tuple[str, str, float]:
    """Train (or resume) one run in this process; returns (label, status, seconds)."""
    from analogdecorr.errors import DivergenceError
    from analogdecorr.train import CHECKPOINT_NAME, train

    t0 = time.perf_counter()
    cfg = resolve({}, run.overrides)
    ckpt = run.out / CHECKPOINT_NAME
    try:
        resume = ckpt.exists()
        if resume and not (run.out / "results.json").exists():
            shutil.rmtree(run.out)
            resume = False
        train(cfg, resume=resume, progress=False, log=lambda _msg: None)
        status = "ok"
    except DivergenceError as exc:
        run.out.mkdir(parents=True, exist_ok=True)
        (run.out / "diverged.json").write_text(json.dumps({"error": str(exc)}))
        status = f"diverged: {exc}"
    except Exception as exc:  # keep the study going; report the failure
        status = f"failed: {type(exc).__name__}: {exc}\n{traceback.format_exc()}"
    return run.label(), status, time.perf_counter() - t0


# ----------------------------------------------------------------------------------------------- summary
def _load(run: Run) -> dict | None:
    if (run.out / "diverged.json").exists():
        return {"diverged": True}
    path = run.out / "results.json"
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    return data if len(data.get("epochs", [])) >= run.overrides["epochs"] else None


def _acc(rows: list[dict]) -> list[float]:
    return [float("nan") if r.get("test_acc") is None else r["test_acc"] for r in rows]


def _ms(values: list[float]) -> str:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return "–"
    if len(vals) == 1:
        return f"{vals[0]:.3f}"
    return f"{statistics.mean(vals):.3f} ± {statistics.stdev(vals):.3f}"


def _mean(values: list[float]) -> float:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return statistics.mean(vals) if vals else float("nan")


def summarise(runs: list[Run]) -> dict:
    """(dataset, device, rule) -> figures over the seeds that have finished."""
    groups: dict[tuple, list] = {}
    for run in runs:
        groups.setdefault((run.dataset, run.device, run.rule), []).append(run)
    out = {}
    for key, members in groups.items():
        rec: dict = {"seeds": 0, "diverged": 0, "best": [], "last": [], "best_epoch": [], "gap": [],
                     "acc20": [], "day": [], "year": [], "cos": [], "curves": [], "seconds": [], "corr": []}
        for run in members:
            data = _load(run)
            if data is None:
                continue
            rec["seeds"] += 1
            if data.get("diverged"):
                rec["diverged"] += 1
                continue
            acc = _acc(data["epochs"])
            best = max(acc)
            rec["best"].append(best)
            rec["last"].append(acc[-1])
            rec["best_epoch"].append(acc.index(best) + 1)
            rec["gap"].append(best - acc[-1])
            if len(acc) >= FIDELITY_EPOCH:
                rec["acc20"].append(acc[FIDELITY_EPOCH - 1])
            rec["curves"].append(acc)
            rec["seconds"].append(sum(r.get("seconds", 0.0) for r in data["epochs"]) / len(acc))
            drift = {(d["t_seconds"], d["compensated"]): d["acc"] for d in data.get("drift", [])}
            rec["day"].append(drift.get((86400.0, True), float("nan")))
            rec["year"].append(drift.get((31536000.0, True), float("nan")))
            corr = data["epochs"][-1].get("corr_after")
            if corr:
                rec["corr"].append(statistics.mean(corr))
            cos = [r["update_cosine"] for r in data["epochs"] if r.get("update_cosine") is not None]
            if cos:
                rec["cos"].append(statistics.mean(cos))
        out[key] = rec
    return out


def write_table(runs: list[Run], root: Path, args: argparse.Namespace) -> str:
    summ = summarise(runs)
    lines = ["# Analog co-simulation: rules × devices", ""]
    d = {k: v for k, v in ANALOG_DEFAULTS.items() if k not in ("out", "hidden")}
    lines.append(f"Defaults (config.ANALOG_DEFAULTS): `{json.dumps(d, default=str)}`")
    if args.set:
        lines.append(f"Overrides (--set): `{' '.join(args.set)}`")
    lines.append(f"Epochs {args.epochs}, seeds {args.seeds}. Accuracy = test accuracy (mean ± std over the "
                 "seeds finished). gap = best − last (mean). Drift: PCM inference tiles, global drift "
                 "compensation, 1 day / 1 year after programming. cos: mean cosine between the intended update "
                 "−lr·G and the weight change the tile made (first fidelity_steps steps of every epoch).")
    lines.append("")
    for dataset in args.datasets:
        net = "40-100-100-10" if dataset == "mnist1d" else "64-100-10"
        lines += [f"## {dataset} ({net})", "",
                  "| device | rule | seeds | best acc | best epoch | last acc | gap | 1 day | 1 year | cos | z corr "
                  "| s/epoch |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for device in args.devices:
            for rule in args.rules:
                rec = summ.get((dataset, device, rule))
                if rec is None or rec["seeds"] == 0:
                    continue
                seeds = f"{rec['seeds']}" + (f" ({rec['diverged']} diverged)" if rec["diverged"] else "")
                cos = _ms(rec["cos"]) if rule.startswith("np") else ""
                lines.append(
                    f"| {device} | {rule} | {seeds} | {_ms(rec['best'])} | {_mean(rec['best_epoch']):.0f} | "
                    f"{_ms(rec['last'])} | {_mean(rec['gap']):.3f} | {_ms(rec['day'])} | {_ms(rec['year'])} | "
                    f"{cos} | {_mean(rec['corr']):.3f} | {_mean(rec['seconds']):.2f} |"
                )
        lines.append("")
    lines += acceptance_lines(summ)
    text = "\n".join(lines) + "\n"
    (root / "table.md").write_text(text)
    return text


def acceptance_lines(summ: dict) -> list[str]:
    def get(ds, dev, rule, what):
        rec = summ.get((ds, dev, rule))
        return _mean(rec[what]) if rec and rec[what] else float("nan")

    lines = ["## Acceptance checks", "", "| check | measured | target | pass |", "| --- | --- | --- | --- |"]

    def row(name, measured, target, ok):
        flag = "–" if ok is None else ("yes" if ok else "NO")
        lines.append(f"| {name} | {measured} | {target} | {flag} |")

    a, b = get("mnist1d", "fp", "np+decor", "last"), get("mnist1d", "fp", "np", "last")
    ok = None if math.isnan(a) or math.isnan(b) else a >= b + 0.10
    row("mnist1d fp: NP+decor − NP (last epoch)", f"{a:.3f} − {b:.3f} = {a - b:+.3f}", "≥ +0.10", ok)
    a, b = get("digits", "ecram-ideal", "np+decor", "last"), get("digits", "ecram-ideal", "np", "last")
    ok = None if math.isnan(a) or math.isnan(b) else a >= b
    row("digits ecram-ideal: NP+decor − NP (last epoch)", f"{a:.3f} − {b:.3f} = {a - b:+.3f}", "≥ 0", ok)
    for rule in FIDELITY_RULES:
        a, b = get("mnist1d", "fp", rule, "acc20"), get("mnist1d", "float", rule, "acc20")
        ok = None if math.isnan(a) or math.isnan(b) else abs(a - b) <= 0.02
        row(f"mnist1d {rule}: analog fp vs float backend, epoch {FIDELITY_EPOCH}",
            f"{a:.3f} vs {b:.3f} (Δ {a - b:+.3f})", "|Δ| ≤ 0.02", ok)
    a, b = get("mnist1d", "fp", "np+decor", "last"), get("mnist1d", "fp", "np+centre", "last")
    if not (math.isnan(a) or math.isnan(b)):
        row("mnist1d fp: NP+decor − NP+centre (what decorrelation adds to centring)",
            f"{a:.3f} − {b:.3f} = {a - b:+.3f}", "(reported)", None)
    for label, keep in (("fp + ideal-IO Idealized/ConstantStep/EcRAM", lambda dev: dev in CORE_DEVICES),
                        ("noisy IO", lambda dev: dev.endswith("-noisy")),
                        ("other presets (reported)", lambda dev: dev in OTHER_PRESETS)):
        for rules, what in ((("np", "np+centre", "np+decor"), "NP rows at the defaults"),
                            (("np+scaled",), "NP + scaled rule")):
            worst = [(_mean(rec["gap"]), f"{ds}/{dev}/{rule}") for (ds, dev, rule), rec in sorted(summ.items())
                     if rule in rules and dev != "float" and keep(dev) and rec["gap"]]
            if worst:
                g, name = max(worst)
                row(f"{what}, {label}: largest best − last gap (mean over seeds)", f"{g:.3f} ({name})",
                    "≤ 0.03", g <= 0.03)
    lines.append("")
    return lines


def plot(runs: list[Run], root: Path, args: argparse.Namespace) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    summ = summarise(runs)
    (root / "plots").mkdir(parents=True, exist_ok=True)
    paths = []
    for dataset in args.datasets:
        devices = [dv for dv in args.devices if any(summ.get((dataset, dv, r), {}).get("curves")
                                                       for r in args.rules)]
        if not devices:
            continue
        cols = min(4, len(devices))
        rows_n = math.ceil(len(devices) / cols)
        fig, axes = plt.subplots(rows_n, cols, figsize=(4 * cols, 3.2 * rows_n), squeeze=False, sharey=True)
        for ax, device in zip(axes.flat, devices, strict=False):
            for rule in args.rules:
                rec = summ.get((dataset, device, rule))
                if not rec or not rec["curves"]:
                    continue
                n = min(len(c) for c in rec["curves"])
                c = np.array([cc[:n] for cc in rec["curves"]])
                x = np.arange(1, n + 1)
                color = f"C{list(RULES).index(rule)}"  # one colour per rule in every panel
                ax.plot(x, c.mean(0), label=rule, color=color)
                ax.fill_between(x, c.min(0), c.max(0), alpha=0.2, color=color)
            ax.set(title=device, xlabel="epoch", ylim=(0, 1))
            ax.grid(alpha=0.3)
            ax.legend(fontsize="small")
        for ax in axes.flat[len(devices):]:
            ax.axis("off")
        axes[0][0].set_ylabel("test accuracy")
        fig.suptitle(f"{dataset}: test accuracy (mean over seeds, band = min..max)")
        fig.tight_layout()
        path = root / "plots" / f"{dataset}_curves.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


# --------------------------------------------------------------------------------------------------- main
def build_runs(args: argparse.Namespace, root: Path) -> list[Run]:
    extra = _parse_set(args.set)
    wanted = []
    for dataset in args.datasets:
        for device in args.devices:
            for rule in args.rules:
                if device == "float" and (dataset != "mnist1d" or rule not in FIDELITY_RULES):
                    continue
                if device in OTHER_PRESETS and rule not in OTHER_PRESET_RULES:
                    continue
                if args.acceptance and (dataset, device, rule) not in ACCEPTANCE:
                    continue
                wanted.append((dataset, device, rule))
    # acceptance rows first, then by device and rule order; seeds innermost-last so every row gets seed 0 early
    def order(key):
        return (0 if key in ACCEPTANCE else 1, ACCEPTANCE.index(key) if key in ACCEPTANCE else 0)

    wanted.sort(key=order)
    runs = []
    for seed in range(args.seeds):
        for key in wanted:
            runs.append(make_run(*key, seed, args.epochs, root, extra))
    runs.sort(key=lambda r: (order((r.dataset, r.device, r.rule))[0], r.seed))
    return runs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    p.add_argument("--rules", nargs="+", default=list(RULES), choices=list(RULES))
    p.add_argument("--devices", nargs="+", default=list(DEVICES), choices=list(DEVICES))
    p.add_argument("--seeds", type=int, default=3, help="number of seeds (0..n-1)")
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--jobs", type=int, default=2, help="parallel runs (1 torch thread each)")
    p.add_argument("--acceptance", action="store_true", help="only the rows the acceptance criteria name")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a run configuration key for every run (e.g. lr=0.03); repeatable")
    p.add_argument("--out", default=str(ROOT / "sims" / "out" / "analog"))
    p.add_argument("--table-only", action="store_true", help="do not train; rebuild table and plots")
    p.add_argument("--dry-run", action="store_true", help="list the runs still to do and exit")
    args = p.parse_args(argv)
    root = Path(args.out)
    root.mkdir(parents=True, exist_ok=True)
    runs = build_runs(args, root)
    todo = [r for r in runs if not is_complete(r)]
    # the table and plots show every finished row of the whole study, not only the subset selected here
    full = argparse.Namespace(**{**vars(args), "datasets": list(DATASETS), "rules": list(RULES),
                                 "devices": list(DEVICES), "acceptance": False})
    table_runs = build_runs(full, root)
    print(f"{len(runs)} runs, {len(runs) - len(todo)} complete, {len(todo)} to do", flush=True)
    if args.dry_run:
        for r in todo:
            print(r.label(), r.out)
        return 0
    if todo and not args.table_only:
        from tqdm.auto import tqdm

        failures = []
        if args.jobs <= 1:
            _init_worker()
            results = map(execute, todo)
        else:
            import multiprocessing as mp

            pool = mp.get_context("spawn").Pool(args.jobs, initializer=_init_worker)
            results = pool.imap_unordered(execute, todo)
        bar = tqdm(results, total=len(todo), desc="runs")
        for label, status, seconds in bar:
            bar.set_postfix_str(f"{label} {status.splitlines()[0][:40]} {seconds:.0f}s")
            if status != "ok":
                failures.append((label, status))
                tqdm.write(f"{label}: {status.splitlines()[0]}")
            write_table(table_runs, root, full)
        if args.jobs > 1:
            pool.close()
            pool.join()
        for label, status in failures:
            print(f"--- {label}\n{status}", file=sys.stderr)
    text = write_table(table_runs, root, full)
    plot(table_runs, root, full)
    print(text)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    raise SystemExit(main())
