"""Time to accuracy: a rule with and without decorrelation, trained side by side, in wall-clock seconds.

For each task, learning rule and seed, two runs are built as ``analogdecorr train`` builds them (same data split,
initial weights and batch order), one plain (``decor = none``) and one decorrelated, and trained **side by side**:
blocks of ``--eval-every`` steps in alternation, so that load from other processes hits both alike. After every
block (and at every epoch end) each run's **validation** accuracy is measured off the clock. The target is the plain
run's final accuracy as the study selects it: its best validation accuracy over training (a last-step value would
reward a plain run that collapses late, as NP without decorrelation does on correlated inputs). A run's time to
target is its training seconds (evaluation excluded) at its first evaluation at or above it. Speed-up = plain time /
decorrelated time (> 1: decorrelation is faster), from the clock and from steps-to-target × the run's median step
time (less sensitive to other processes). Also reported: the decorrelated run's validation accuracy after the plain
run's whole training time (equal wall-clock budget). A target within 10 points of chance (a rule that does not
learn) is reached by noise: such seeds are flagged and left out of the median speed-up.

Tasks (the data and the settings both runs share; each variant's lr is the one ``--search`` chose on validation,
on seeds 100 and 101, not the seeds measured here; benchmarks/README.md gives the command):

- ``correlated``: rho 0.9, 64-100-10, SGD, NP σ 0.3; decorrelated: ``whiten`` at decor lr 1e-3.
- ``mnist1d``: 40-100-100-10, SGD, NP σ 0.3; decorrelated: ``whiten`` at decor lr 1e-3.
- ``digits4x1000``: the float study's settings (4×1000 LeakyReLU, Adam 1e-4, NP σ 1e-3, ``scaled`` at decor lr
  1e-4, 10 epochs; sims/reproduce_float.py); its lrs are the study's, not searched.

``--set key=value`` (both runs), ``--plain key=value``, ``--decor key=value`` and ``--plain-recipe``/
``--decor-recipe`` (named recipes, ``analogdecorr recipes``) change the settings.

    .venv/bin/python benchmarks/time_to_accuracy.py                    # correlated + mnist1d, NP and BP, 3 seeds
    .venv/bin/python benchmarks/time_to_accuracy.py --tasks digits4x1000 --eval-every 5
    .venv/bin/python benchmarks/time_to_accuracy.py --tasks correlated --rules np --seeds 0 --plot tta.png

It writes the JSON (every pair with its traces), a Markdown table (per task and rule: medians over seeds; then every
pair) and a plot. A second call with the same settings finds them in the JSON and only rebuilds the table and plot
(``--force`` measures again); ``--tables-only`` rebuilds them from the JSON whatever its settings; ``--dry-run``
prints how many pairs are measured already. sims/study.py runs it as a part of the study.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from analogdecorr.config import resolve  # noqa: E402
from analogdecorr.data import batches  # noqa: E402
from analogdecorr.errors import AnalogDecorrError  # noqa: E402
from analogdecorr.metrics import evaluate  # noqa: E402
from analogdecorr.train import Trainer  # noqa: E402

#: Per task: the settings both runs share, per rule the plain and decorrelated runs' own, and the decorrelation.
TASKS: dict[str, dict[str, Any]] = {
    "correlated": {
        "shared": {"dataset": "correlated", "rho": 0.9, "n_features": 64, "hidden": [100], "optimizer": "sgd",
                   "sigma": 0.3, "epochs": 20},
        "decor": {"decor": "whiten", "decor_lr": 1e-3},
        "lr": {"np": (0.02, 0.05), "bp": (0.2, 0.2)},  # (plain, decorrelated), chosen on validation
    },
    "mnist1d": {
        "shared": {"dataset": "mnist1d", "hidden": [100, 100], "optimizer": "sgd", "sigma": 0.3, "epochs": 20},
        "decor": {"decor": "whiten", "decor_lr": 1e-3},
        "lr": {"np": (0.02, 0.02), "bp": (1.0, 0.5)},  # BP plain: the top of the searched grid
    },
    "digits4x1000": {
        "shared": {"dataset": "digits", "hidden": [1000] * 4, "optimizer": "adam", "sigma": 1e-3, "epochs": 10,
                   "lr": 1e-4},
        "decor": {"decor": "scaled", "decor_lr": 1e-4},
        "lr": {"np": (1e-4, 1e-4), "bp": (1e-4, 1e-4)},
    },
}
RULES = ("np", "bp")


def parse_sets(items: list[str], flag: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SystemExit(f"error: {flag} {item!r} is not key=value; e.g. {flag} lr=0.01")
        out[key.strip()] = value.strip()
    return out


def recipe_values(name: str | None) -> dict[str, Any]:
    """The settings of a named recipe (analogdecorr.recipes), or {} without a name."""
    if not name:
        return {}
    try:
        from analogdecorr import recipes  # the named, tuned settings (issue 10)
    except ImportError:
        raise SystemExit("error: this checkout has no analogdecorr.recipes; give the settings with --plain/--decor"
                         ) from None
    return dict(recipes.load_recipe(name))


class Run:
    """One training run stepped from outside: the trainer's data, network, rule, lr schedule and batch order."""

    def __init__(self, values: dict[str, Any], out: Path) -> None:
        self.cfg = resolve({}, {**values, "out": str(out), "drift_times": []})
        self.trainer = Trainer(self.cfg, progress=False, log=lambda _msg: None)  # writes nothing until run()
        d = self.trainer.data
        if not len(d.x_val):
            raise SystemExit("error: the runs have no validation split (val_frac = 0); time to accuracy needs one")
        self.chance = 1.0 / d.n_classes
        self.clock, self.steps, self.step_times = 0.0, 0, []
        self.trace = [(0, 0.0, self.val_acc())]  # (step, training seconds, validation accuracy)
        self._epochs = self._batches()

    def val_acc(self) -> float:
        d = self.trainer.data
        acc = evaluate(self.trainer.net, d.x_val, d.y_val)[1]
        self.trainer.net.train()
        return acc

    def _batches(self):
        cfg, d = self.cfg, self.trainer.data
        for epoch in range(cfg.epochs):
            self.trainer._set_lr(epoch)
            gen = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)  # the trainer's shuffling
            n = math.ceil(d.x_train.shape[0] / cfg.batch_size)
            for i, batch in enumerate(batches(d.x_train, d.y_train, cfg.batch_size, shuffle=True, generator=gen)):
                yield batch, i == n - 1

    def advance(self, steps: int) -> bool:
        """Train up to ``steps`` steps (stopping at an epoch end), then evaluate; False once training is over."""
        net, rule = self.trainer.net, self.trainer.rule
        net.train()
        for _ in range(steps):
            try:
                (xb, yb), epoch_end = next(self._epochs)
            except StopIteration:
                return False
            t0 = time.perf_counter()
            rule.step(net, xb, yb)
            dt = time.perf_counter() - t0
            self.clock += dt
            self.steps += 1
            self.step_times.append(dt)
            if epoch_end:
                break
        self.trace.append((self.steps, self.clock, self.val_acc()))
        return True


def first_reach(trace: list[tuple[int, float, float]], target: float) -> tuple[int, float] | None:
    """(step, seconds) of the first evaluation with accuracy >= target (None if never)."""
    for step, sec, acc in trace:
        if acc >= target - 1e-12:
            return step, sec
    return None


def acc_at(trace: list[tuple[int, float, float]], seconds: float) -> float:
    """Validation accuracy at the last evaluation at or before ``seconds`` of training."""
    best = trace[0][2]
    for _, sec, acc in trace:
        if sec > seconds:
            break
        best = acc
    return best


def pair_values(task: str, rule: str, seed: int, args: argparse.Namespace,
                lrs: tuple[float, float] | None = None) -> dict[str, dict[str, Any]]:
    """The plain and decorrelated runs' settings (``lrs``: their lrs in place of the task table's)."""
    spec = TASKS[task]
    lr_plain, lr_decor = lrs or spec["lr"][rule]
    shared = {**spec["shared"], "rule": rule, "seed": seed, **args.shared}
    if args.epochs:
        shared["epochs"] = args.epochs
    return {
        "plain": {**shared, "lr": lr_plain, "decor": "none", **recipe_values(args.plain_recipe), **args.plain},
        "decor": {**shared, "lr": lr_decor, **spec["decor"], **recipe_values(args.decor_recipe), **args.decor},
    }


def search_lrs(task: str, rule: str, args: argparse.Namespace, tmp: Path) -> tuple[float, float]:
    """Each variant's lr from ``--search``: the best mean (over ``--search-seeds``) of the best validation
    accuracy over epochs; ties go to the smaller lr."""
    from analogdecorr.train import train

    chosen = []
    for variant in ("plain", "decor"):
        scores = []
        for lr in args.search:
            accs = []
            for seed in args.search_seeds:
                values = pair_values(task, rule, seed, args, (lr, lr))[variant]
                cfg = resolve({}, {**values, "drift_times": [], "out": str(tmp / f"search_{task}_{rule}_{variant}_"
                                                                                 f"{lr:g}_{seed}")})
                try:
                    accs.append(train(cfg, progress=False, log=lambda _m: None)["summary"]["best_val_acc"])
                except AnalogDecorrError:  # a diverging lr scores 0
                    accs.append(0.0)
            scores.append((statistics.mean(accs), -lr))
            print(f"  search {task} {rule} {variant} lr {lr:g}: mean best val acc {scores[-1][0]:.4f}", flush=True)
        best = -max(scores)[1]
        edge = " (the grid's edge: widen --search)" if best in (min(args.search), max(args.search)) else ""
        print(f"  chosen {task} {rule} {variant}: lr {best:g}{edge}", flush=True)
        chosen.append(best)
    return chosen[0], chosen[1]


def run_pair(task: str, rule: str, seed: int, args: argparse.Namespace, tmp: Path,
             lrs: tuple[float, float] | None = None) -> dict[str, Any]:
    values = pair_values(task, rule, seed, args, lrs)
    runs = {n: Run(v, tmp / f"{task}_{rule}_{seed}_{n}") for n, v in values.items()}
    active = dict(runs)
    block = 0
    while active:
        order = list(active.items()) if block % 2 == 0 else list(active.items())[::-1]
        for name, run in order:
            if not run.advance(args.eval_every):
                del active[name]
        block += 1
    plain, dec = runs["plain"], runs["decor"]
    target = max(t[2] for t in plain.trace)  # the validation-selected accuracy of the plain run
    hp, hd = first_reach(plain.trace, target), first_reach(dec.trace, target)
    med = {n: statistics.median(r.step_times) for n, r in runs.items()}
    out: dict[str, Any] = {
        "task": task, "rule": rule, "seed": seed, "target_val_acc": target,
        "target_near_chance": target < plain.chance + 0.10,
        "settings": {n: {k: values[n].get(k) for k in ("decor", "decor_lr", "lr")} for n in runs},
        "final_val_acc": {n: r.trace[-1][2] for n, r in runs.items()},
        "total_seconds": {n: r.clock for n, r in runs.items()},
        "median_step_seconds": med,
        "plain": {"steps": hp[0], "seconds": hp[1]} if hp else None,
        "decor": {"steps": hd[0], "seconds": hd[1]} if hd else None,
        "decor_acc_at_plain_budget": acc_at(dec.trace, plain.clock),
        "traces": {n: r.trace for n, r in runs.items()},
    }
    if hp and hd and hd[0] > 0:
        out["speedup_clock"] = hp[1] / hd[1]
        out["speedup_steps"] = (hp[0] * med["plain"]) / (hd[0] * med["decor"])
    else:  # not reached, or reached by the untrained net (step 0): no ratio
        out["speedup_clock"] = out["speedup_steps"] = None
    return out


def summarise(pairs: list[dict[str, Any]]) -> str:
    """One line: median speed-ups over the seeds that reached the target and whose target is not near chance."""
    reached = [p for p in pairs if p["speedup_clock"] is not None]
    meaningful = [p for p in reached if not p["target_near_chance"]]
    use = meaningful or reached
    missed = sum(p["decor"] is None for p in pairs)
    if not use:
        speed = "no speed-up defined (the decorrelated run never reached the target)"
    else:
        speed = (f"median speed-up {statistics.median(p['speedup_clock'] for p in use):.2f}x (clock), "
                 f"{statistics.median(p['speedup_steps'] for p in use):.2f}x (steps x median step) over seeds "
                 f"{[p['seed'] for p in use]}")
    near = sum(p["target_near_chance"] for p in pairs)
    step_ratio = statistics.median(p["median_step_seconds"]["decor"] / p["median_step_seconds"]["plain"]
                                   for p in pairs)
    budget = statistics.median(p["decor_acc_at_plain_budget"] for p in pairs)
    return (f"{speed}; target missed in {missed}/{len(pairs)}, near chance in {near}; a decorrelated step costs "
            f"{step_ratio:.2f}x a plain one; at the plain run's total time: plain "
            f"{statistics.median(p['target_val_acc'] for p in pairs):.3f}, decorrelated {budget:.3f} (medians)")


PAIR_HEADER = ("| task | rule | seed | target: plain's best val acc | plain s (step) | decorrelated s (step) | "
               "speed-up clock / steps | decorrelated final val acc |\n"
               "| --- | --- | --- | --- | --- | --- | --- | --- |")
#: The flags that decide what is measured: a JSON holding the same values is this measurement, finished.
SETTING_KEYS = ("tasks", "rules", "seeds", "epochs", "eval_every", "shared", "plain", "decor", "search",
                "search_seeds", "plain_recipe", "decor_recipe")


def pair_row(r: dict[str, Any]) -> str:
    """One pair as a row of the PAIR_HEADER table."""

    def cell(side: dict | None) -> str:
        return "not reached" if side is None else f"{side['seconds']:.2f} ({side['steps']})"

    speed = "-" if r["speedup_clock"] is None else f"{r['speedup_clock']:.2f}x / {r['speedup_steps']:.2f}x"
    flag = " (near chance)" if r["target_near_chance"] else ""
    return (f"| {r['task']} | {r['rule']} | {r['seed']} | {r['target_val_acc']:.3f}{flag} | {cell(r['plain'])} | "
            f"{cell(r['decor'])} | {speed} | {r['final_val_acc']['decor']:.3f} |")


def _acc(v: float) -> str:
    return f"{v:.3f}".removeprefix("0")


def markdown(pairs: list[dict[str, Any]]) -> str:
    """Per (task, rule), medians over its seeds (speed-ups over the seeds that reached a target not near chance,
    as ``summarise``); then every pair; then the one-line summaries."""
    groups = list(dict.fromkeys((p["task"], p["rule"]) for p in pairs))
    lines = ["# Time to accuracy: plain vs decorrelated, trained side by side", "",
             "| task, rule | lr plain / decorrelated | target (plain's best val acc, median) | speed-up, clock "
             "(median, range) | steps × median step | decorrelated step / plain step | val acc at the plain run's "
             "total time, plain → decorrelated |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for task, rule in groups:
        mine = [p for p in pairs if (p["task"], p["rule"]) == (task, rule)]
        reached = [p for p in mine if p["speedup_clock"] is not None]
        use = [p for p in reached if not p["target_near_chance"]] or reached
        lrs = " / ".join(f"{mine[0]['settings'][n]['lr']:g}" for n in ("plain", "decor"))
        target = statistics.median(p["target_val_acc"] for p in mine)
        if use:
            clock = [p["speedup_clock"] for p in use]
            speed = (f"**{statistics.median(clock):.2f}×** ({min(clock):.2f}–{max(clock):.2f}, {len(use)} of "
                     f"{len(mine)} seeds)")
            steps = f"{statistics.median(p['speedup_steps'] for p in use):.2f}×"
        else:
            best = [max(t[2] for t in p["traces"]["decor"]) for p in mine]
            speed = (f"never (0 of {len(mine)} seeds reach it; best {_acc(min(best))}–{_acc(max(best))})")
            steps = "–"
        ratio = statistics.median(p["median_step_seconds"]["decor"] / p["median_step_seconds"]["plain"]
                                  for p in mine)
        budget = statistics.median(p["decor_acc_at_plain_budget"] for p in mine)
        lines.append(f"| {task}, {rule.upper()} | {lrs} | {_acc(target)} | {speed} | {steps} | {ratio:.2f}× | "
                     f"{_acc(target)} → {_acc(budget)} |")
    lines += ["", "## Every pair", "", PAIR_HEADER, *(pair_row(p) for p in pairs), ""]
    for task, rule in groups:
        lines.append(f"- {task} {rule.upper()}: "
                     f"{summarise([p for p in pairs if (p['task'], p['rule']) == (task, rule)])}")
    return "\n".join(lines) + "\n"


def settings_of(args: argparse.Namespace) -> dict[str, Any]:
    """The flags that decide what is measured, as the JSON stores them."""
    return json.loads(json.dumps({k: getattr(args, k) for k in SETTING_KEYS}, default=str))


def read_json(path: str) -> dict[str, Any] | None:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write_outputs(pairs: list[dict[str, Any]], args: argparse.Namespace) -> None:
    """The Markdown table and the plot of ``pairs`` (atomically)."""
    from analogdecorr.atomic import write_text

    Path(args.md).parent.mkdir(parents=True, exist_ok=True)
    write_text(args.md, markdown(pairs))
    Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
    plot(pairs, Path(args.plot))
    print(f"wrote {args.md} and {args.plot}")


def plot(pairs: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from analogdecorr.atomic import atomic_write

    groups = sorted({(p["task"], p["rule"]) for p in pairs})
    fig, axes = plt.subplots(1, len(groups), figsize=(4.8 * len(groups), 3.8), squeeze=False)
    for ax, (task, rule) in zip(axes[0], groups, strict=True):
        mine = [p for p in pairs if (p["task"], p["rule"]) == (task, rule)]
        for i, p in enumerate(mine):
            for name, colour, label in (("plain", "tab:grey", rule.upper()),
                                        ("decor", "tab:blue", f"{rule.upper()} + decorrelation")):
                trace = p["traces"][name]
                ax.plot([t[1] for t in trace], [t[2] for t in trace], color=colour, alpha=0.7,
                        label=label if i == 0 else None)
            ax.axhline(p["target_val_acc"], color="tab:grey", lw=0.6, ls=":")
        ax.set_title(f"{task}, {rule.upper()}")
        ax.set_xlabel("training seconds (evaluation excluded)")
        ax.set_ylabel("validation accuracy")
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=110)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tasks", default="correlated,mnist1d", help=f"comma-separated, of {', '.join(TASKS)}")
    p.add_argument("--rules", default="np,bp", help=f"comma-separated, of {', '.join(RULES)}")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--epochs", type=int, default=None, help="override the task's epochs")
    p.add_argument("--eval-every", type=int, default=10, help="steps between validation evaluations (default 10)")
    p.add_argument("--set", dest="shared", action="append", default=[], help="key=value for both runs")
    p.add_argument("--plain", action="append", default=[], help="key=value for the plain run only")
    p.add_argument("--decor", action="append", default=[], help="key=value for the decorrelated run only")
    p.add_argument("--search", default=None,
                   help="comma-separated lrs: choose each variant's lr on validation first (search seeds)")
    p.add_argument("--search-seeds", default="100,101", help="seeds of the --search runs (default 100,101)")
    p.add_argument("--plain-recipe", default=None, help="a named recipe for the plain run")
    p.add_argument("--decor-recipe", default=None, help="a named recipe for the decorrelated run")
    p.add_argument("--json", default="benchmarks/out/time_to_accuracy.json", help="every pair, with its traces")
    p.add_argument("--plot", default="benchmarks/out/time_to_accuracy.png", help="accuracy vs seconds (PNG)")
    p.add_argument("--md", default="benchmarks/out/time_to_accuracy.md", help="the tables (Markdown)")
    p.add_argument("--force", action="store_true", help="measure again even if --json holds these settings")
    p.add_argument("--tables-only", action="store_true", help="do not train: table and plot from --json")
    p.add_argument("--dry-run", action="store_true", help="print how many pairs are measured already; exit")
    args = p.parse_args()
    args.shared, args.plain, args.decor = (parse_sets(args.shared, "--set"), parse_sets(args.plain, "--plain"),
                                           parse_sets(args.decor, "--decor"))
    for name, known in (("tasks", TASKS), ("rules", RULES)):
        bad = [v for v in getattr(args, name).split(",") if v not in known]
        if bad:
            raise SystemExit(f"error: unknown {name[:-1]} {bad[0]!r}; choose from {', '.join(known)}")
    try:
        args.search = [float(v) for v in args.search.split(",")] if args.search else None
        args.search_seeds = [int(v) for v in args.search_seeds.split(",")]
    except ValueError:
        raise SystemExit(f"error: --search {args.search!r} / --search-seeds {args.search_seeds!r} must be "
                         "comma-separated numbers, e.g. --search 0.01,0.02,0.05") from None
    if args.eval_every < 1:
        raise SystemExit(f"error: --eval-every {args.eval_every} must be >= 1 (steps between evaluations)")
    stored = read_json(args.json)
    same = stored is not None and {k: stored.get("config", {}).get(k) for k in SETTING_KEYS} == settings_of(args)
    if args.dry_run:
        n = len(args.tasks.split(",")) * len(args.rules.split(",")) * len(args.seeds.split(","))
        done = n if same and not args.force else 0
        print(f"{n} runs, {done} finished, {n - done} to do (pairs; {args.json})")
        return
    if args.tables_only or (same and not args.force):
        if stored is None:
            raise SystemExit(f"error: --tables-only: no measurement in {args.json}; run without --tables-only")
        print(f"{args.json} holds {len(stored['pairs'])} pairs" + ("" if args.tables_only else
              " of these settings (--force measures again)") + "; rebuilding the table and plot", flush=True)
        write_outputs(stored["pairs"], args)
        return
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    started = time.perf_counter()
    pairs: list[dict[str, Any]] = []
    print(PAIR_HEADER, flush=True)
    with tempfile.TemporaryDirectory(prefix="tta_") as tmp:
        for task in args.tasks.split(","):
            for rule in args.rules.split(","):
                try:
                    lrs = search_lrs(task, rule, args, Path(tmp)) if args.search else None
                except AnalogDecorrError as e:
                    raise SystemExit(f"error: {e}") from None
                for seed in (int(s) for s in args.seeds.split(",")):
                    try:
                        r = run_pair(task, rule, seed, args, Path(tmp), lrs)
                    except AnalogDecorrError as e:
                        raise SystemExit(f"error: {e}") from None
                    pairs.append(r)
                    print(pair_row(r), flush=True)
    for task in args.tasks.split(","):
        for rule in args.rules.split(","):
            mine = [p for p in pairs if (p["task"], p["rule"]) == (task, rule)]
            print(f"{task} {rule.upper()}: {summarise(mine)}")
    print(f"({time.perf_counter() - started:.0f} s in all)")
    from analogdecorr.atomic import write_text

    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    write_text(args.json, json.dumps({"config": vars(args), "pairs": pairs}, indent=1, default=str))
    print(f"wrote {args.json}")
    write_outputs(pairs, args)


if __name__ == "__main__":
    main()
