"""What decorrelation costs and what it buys, in one run (issue 2, item 7).

(a) **Share of a decorrelated training step spent updating R.** For each width W (hidden layers of W units,
    inputs of W features so every decorrelator is W×W, batch 256) and for BP+decor and NP+decor, three set-ups
    are timed on the same synthetic batch:

    - ``plain``:  the rule without decorrelation;
    - ``frozen``: with decorrelators, but ``analogdecorr.decor.decor_update`` replaced by ``lambda R, ...: R``
                  (z = (x − μ) Rᵀ is still computed, R is never updated);
    - ``full``:   with decorrelators updating R every step, ``decor_update`` wrapped in a perf_counter timer.

    Two estimates of the update's share of a full step: ``(t_full − t_frozen) / t_full`` (ablation) and
    ``Σ time inside decor_update / t_full`` (explicit timers; torch on CPU is synchronous, so wall-clock around
    the call is its cost). A step is one ``rule.step(net, x, y)`` (forward(s), backward or perturbation, the
    Adam step); the trainer's per-step finiteness checks are not included. Each set-up gets warm-up steps, then
    the set-ups are timed in ``--repeats`` rounds, each round one block of ``--steps`` steps per set-up (order
    rotated between rounds). Shares are computed within a round (paired, so a burst of load from other processes
    that spans a round hits all three set-ups) and the median over rounds is reported; the per-step times are
    medians over blocks.

(b) **Wall-clock time-to-accuracy on digits** (4 hidden layers of W LeakyReLU units, Adam 1e-4, batch 64,
    ``scaled`` decorrelation lr 1e-4, the acceptance settings of sims/reproduce_float.py): for BP vs BP+decor and
    NP vs NP+decor, the target is the plain rule's test accuracy after ``--tta-epochs`` epochs; the time to target
    is the training time (evaluation excluded) until the test accuracy, evaluated every ``--eval-every`` steps,
    first reaches the target. Speed-up = t_plain / t_decor (> 1: decorrelation is faster). Reported per seed and
    as the median over seeds, both from the measured cumulative clock and from steps-to-target × the run's median
    step time (less sensitive to other processes on the machine). A target within 10 points of chance (plain NP,
    which does not learn) is reached by noise, so such seeds are flagged and left out of the median; for them the
    informative figure is the second one reported: the decorrelated run's test accuracy after the plain run's
    whole training time (equal wall-clock budget).

Everything is single-threaded (``torch.set_num_threads(1)``). Results are printed and written as JSON
(default ``benchmarks/out/decor_cost.json``).

    .venv/bin/python benchmarks/decor_cost.py                      # both parts, widths 256 and 1000
    .venv/bin/python benchmarks/decor_cost.py --skip-tta           # only the step-cost part
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # allow running from a checkout without installing the package
    sys.path.insert(0, str(ROOT))

import analogdecorr.decor as decor_mod  # noqa: E402
from analogdecorr.backends.float import GradientUpdater, make_optimizer  # noqa: E402
from analogdecorr.config import RunConfig, resolve  # noqa: E402
from analogdecorr.data import batches  # noqa: E402
from analogdecorr.metrics import evaluate  # noqa: E402
from analogdecorr.models import Network, build_model  # noqa: E402
from analogdecorr.rules import Rule, make_rule  # noqa: E402
from analogdecorr.train import Trainer  # noqa: E402

DEFAULT_OUT = ROOT / "benchmarks" / "out" / "decor_cost.json"


# ---------------------------------------------------------------------------------- decor_update hook
class UpdateHook:
    """Replaces ``analogdecorr.decor.decor_update`` (looked up by Decorrelator.forward at call time) with a
    wrapper that either skips the update (``frozen``) or runs and times it (``seconds`` accumulates)."""

    def __init__(self) -> None:
        self.original: Callable[..., torch.Tensor] = decor_mod.decor_update
        self.frozen = False
        self.seconds = 0.0
        self.calls = 0

    def __call__(self, R: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if self.frozen:
            return R
        t0 = time.perf_counter()
        out = self.original(R, *args, **kwargs)
        self.seconds += time.perf_counter() - t0
        self.calls += 1
        return out

    def install(self) -> None:
        decor_mod.decor_update = self

    def remove(self) -> None:
        decor_mod.decor_update = self.original


HOOK = UpdateHook()


def load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:  # pragma: no cover - not on every platform
        return None


# ------------------------------------------------------------------------------------- (a) step cost
def make_setup(rule: str, decor: str, width: int, layers: int, batch: int, seed: int) -> tuple[Network, Rule]:
    """A network with ``layers`` hidden layers of ``width`` units on ``width`` inputs, and its rule."""
    cfg = resolve({}, {"rule": rule, "decor": decor, "hidden": ",".join([str(width)] * layers),
                       "batch_size": batch, "seed": seed, "dataset": "digits"})
    torch.manual_seed(seed)
    net = build_model(cfg, (width,), 10)
    net.train()
    optimizer = make_optimizer(cfg, net.parameters())
    r = make_rule(cfg.rule, net, optimizer=optimizer, updater=GradientUpdater(optimizer), sigma=cfg.sigma,
                  seed=seed)
    return net, r


def time_steps(net: Network, rule: Rule, x: torch.Tensor, y: torch.Tensor, steps: int) -> float:
    """Seconds per step over ``steps`` consecutive steps on the batch (x, y)."""
    t0 = time.perf_counter()
    for _ in range(steps):
        rule.step(net, x, y)
    return (time.perf_counter() - t0) / steps


def step_cost(width: int, rule: str, *, layers: int, batch: int, warmup: int, repeats: int, steps: int,
              seed: int = 0) -> dict[str, Any]:
    """Median seconds per step of plain / frozen / full and the update's share of the full step."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, width, generator=gen)
    y = torch.randint(0, 10, (batch,), generator=gen)
    setups = {name: make_setup(rule, "none" if name == "plain" else "scaled", width, layers, batch, seed)
              for name in ("plain", "frozen", "full")}

    def run(name: str, n: int) -> tuple[float, float]:
        HOOK.frozen = name == "frozen"
        HOOK.seconds = 0.0
        per_step = time_steps(*setups[name], x, y, n)
        return per_step, HOOK.seconds / n

    for name in setups:  # warm-up
        run(name, warmup)
    names = list(setups)
    per: dict[str, list[float]] = {name: [] for name in names}
    in_update: list[float] = []
    for r in range(repeats):
        for name in names[r % 3:] + names[: r % 3]:  # rotate the order so no set-up always goes first
            t, u = run(name, steps)
            per[name].append(t)
            if name == "full":
                in_update.append(u)
    HOOK.frozen = False
    med = {name: statistics.median(v) for name, v in per.items()}
    # paired per round (the three blocks of a round ran within seconds of each other), then the median
    paired = [(f - z) / f for f, z in zip(per["full"], per["frozen"], strict=True)]
    overhead = [(f - p) / p for f, p in zip(per["full"], per["plain"], strict=True)]
    return {
        "width": width,
        "rule": rule,
        "layers": layers,
        "batch": batch,
        "update_rows": decor_mod.num_update_rows(batch, RunConfig.sample_frac),
        "seconds_per_step": med,
        "seconds_per_step_all": per,
        "update_seconds_per_step": statistics.median(in_update),
        "share_update_ablation": statistics.median(paired),
        "share_update_ablation_of_medians": (med["full"] - med["frozen"]) / med["full"],
        "share_update_timer": statistics.median(u / t for u, t in zip(in_update, per["full"], strict=True)),
        "decor_overhead_vs_plain": statistics.median(overhead),
    }


# -------------------------------------------------------------------------------- (b) time to accuracy
def tta_trace(width: int, rule: str, decor: str, seed: int, epochs: int, eval_every: int) -> dict[str, Any]:
    """Train on digits as the trainer does; record (step, training seconds, test acc) every ``eval_every``
    steps and at every epoch end. Evaluation time is excluded from the clock."""
    cfg = resolve({}, {"dataset": "digits", "rule": rule, "decor": decor, "hidden": ",".join([str(width)] * 4),
                       "epochs": epochs, "seed": seed, "out": str(ROOT / "benchmarks" / "out" / "unused")})
    trainer = Trainer(cfg, progress=False, log=lambda _: None)  # builds data, network, rule; writes nothing
    net, r, d = trainer.net, trainer.rule, trainer.data
    net.train()
    clock, step = 0.0, 0
    step_times: list[float] = []
    trace = [(0, 0.0, evaluate(net, d.x_test, d.y_test)[1])]
    for epoch in range(epochs):
        trainer._set_lr(epoch)  # constant schedule by default; kept so the run matches the trainer's
        gen = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)  # the trainer's shuffling
        n_batches = math.ceil(d.x_train.shape[0] / cfg.batch_size)
        for i, (xb, yb) in enumerate(batches(d.x_train, d.y_train, cfg.batch_size, shuffle=True, generator=gen)):
            t0 = time.perf_counter()
            r.step(net, xb, yb)
            dt = time.perf_counter() - t0
            clock += dt
            step += 1
            step_times.append(dt)
            if step % eval_every == 0 or i == n_batches - 1:
                trace.append((step, clock, evaluate(net, d.x_test, d.y_test)[1]))
    return {"rule": rule, "decor": decor, "seed": seed, "width": width, "trace": trace,
            "final_acc": trace[-1][2], "median_step_seconds": statistics.median(step_times),
            "chance": 1.0 / d.n_classes}


def first_reach(trace: Sequence[tuple[int, float, float]], target: float) -> tuple[int, float] | None:
    """(step, seconds) of the first evaluation with accuracy ≥ target (None if never)."""
    for step, sec, acc in trace:
        if acc >= target - 1e-12:
            return step, sec
    return None


def acc_at(trace: Sequence[tuple[int, float, float]], seconds: float) -> float:
    """Test accuracy of the last evaluation at or before ``seconds`` of training."""
    best = trace[0][2]
    for _, sec, acc in trace:
        if sec > seconds:
            break
        best = acc
    return best


def tta_pair(width: int, rule: str, seed: int, epochs: int, eval_every: int) -> dict[str, Any]:
    plain = tta_trace(width, rule, "none", seed, epochs, eval_every)
    dec = tta_trace(width, rule, "scaled", seed, epochs, eval_every)
    target = plain["final_acc"]
    out: dict[str, Any] = {"width": width, "rule": rule, "seed": seed, "target_acc": target,
                           "plain_final_acc": target, "decor_final_acc": dec["final_acc"],
                           "plain_median_step_s": plain["median_step_seconds"],
                           "decor_median_step_s": dec["median_step_seconds"]}
    # accuracy of the decorrelated run after the plain run's whole training time (equal wall-clock budget)
    out["plain_total_seconds"] = plain["trace"][-1][1]
    out["decor_acc_at_plain_budget"] = acc_at(dec["trace"], plain["trace"][-1][1])
    # a target within 10 points of chance is reached by noise: the time-to-accuracy ratio means nothing then
    out["target_near_chance"] = target < plain["chance"] + 0.10
    hp, hd = first_reach(plain["trace"], target), first_reach(dec["trace"], target)
    out["plain_steps"], out["plain_seconds"] = hp if hp else (None, None)
    out["decor_steps"], out["decor_seconds"] = hd if hd else (None, None)
    out["decor_reached"] = hd is not None
    if hp and hd:
        t_plain_med = hp[0] * plain["median_step_seconds"]
        t_decor_med = hd[0] * dec["median_step_seconds"]
        out["speedup_clock"] = hp[1] / hd[1] if hd[1] > 0 else math.inf  # inf: the untrained net already did
        out["speedup_median_step"] = t_plain_med / t_decor_med if t_decor_med > 0 else math.inf
    else:
        out["speedup_clock"] = out["speedup_median_step"] = None
    out["traces"] = {"plain": plain["trace"], "decor": dec["trace"]}
    return out


def summarise_tta(pairs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median speed-ups over the seeds where the decorrelated run reached the target, leaving out seeds whose
    target is near chance (there the ratio only measures noise) unless every seed's is."""
    reached = [p for p in pairs if p["decor_reached"]]
    meaningful = [p for p in reached if not p["target_near_chance"]]
    n_left_out = len(reached) - len(meaningful) if meaningful else 0
    reached = meaningful or reached
    return {
        "seeds": [p["seed"] for p in pairs],
        "reached": sum(p["decor_reached"] for p in pairs),
        "speedup_seeds": [p["seed"] for p in reached],
        "speedup_seeds_left_out_near_chance": n_left_out,
        "median_target_acc": statistics.median(p["target_acc"] for p in pairs),
        "median_speedup_clock": statistics.median(p["speedup_clock"] for p in reached) if reached else None,
        "median_speedup_median_step": (statistics.median(p["speedup_median_step"] for p in reached)
                                       if reached else None),
        "median_plain_seconds": statistics.median(p["plain_seconds"] for p in pairs),
        "median_decor_seconds": (statistics.median(p["decor_seconds"] for p in reached) if reached else None),
        "median_step_ratio_decor_over_plain": statistics.median(
            p["decor_median_step_s"] / p["plain_median_step_s"] for p in pairs),
        "median_plain_final_acc": statistics.median(p["plain_final_acc"] for p in pairs),
        "median_decor_acc_at_plain_budget": statistics.median(p["decor_acc_at_plain_budget"] for p in pairs),
        "seeds_with_target_near_chance": sum(p["target_near_chance"] for p in pairs),
    }


# ------------------------------------------------------------------------------------------------ main
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--widths", default="256,1000", help="hidden widths (default: %(default)s)")
    p.add_argument("--layers", type=int, default=4, help="hidden layers in part (a) (default: %(default)s)")
    p.add_argument("--batch", type=int, default=256, help="batch size in part (a) (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=5, help="warm-up steps per set-up (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=15, help="timed rounds (default: %(default)s)")
    p.add_argument("--steps", type=int, default=5, help="steps per timed block (default: %(default)s)")
    p.add_argument("--tta-seeds", default="0,1,2", help="seeds for part (b) (default: %(default)s)")
    p.add_argument("--tta-epochs", type=int, default=10, help="epochs in part (b) (default: %(default)s)")
    p.add_argument("--eval-every", type=int, default=1, help="steps between evaluations in (b) (default: 1)")
    p.add_argument("--skip-cost", action="store_true", help="skip part (a)")
    p.add_argument("--skip-tta", action="store_true", help="skip part (b)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON output (default: benchmarks/out/...)")
    return p.parse_args(argv)


def strict_json(obj: Any) -> Any:
    """``obj`` with non-finite floats written as the strings "inf", "-inf", "nan" (strict JSON)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, dict):
        return {k: strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(v) for v in obj]
    return obj


def fmt_ratio(v: float | None) -> str:
    return "never reached" if v is None else f"{v:.2f}x"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(1)
    widths = [int(w) for w in args.widths.split(",") if w.strip()]
    seeds = [int(s) for s in args.tta_seeds.split(",") if s.strip()]
    report: dict[str, Any] = {
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "load_average_start": load_average(),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    }
    HOOK.install()
    try:
        if not args.skip_cost:
            print(f"(a) share of a step spent in decor_update; {args.layers} hidden layers, batch {args.batch}, "
                  f"{args.warmup} warm-up steps, median of {args.repeats} rounds of {args.steps} steps per set-up")
            cost = []
            for w in widths:
                for rule in ("bp", "np"):
                    res = step_cost(w, rule, layers=args.layers, batch=args.batch, warmup=args.warmup,
                                    repeats=args.repeats, steps=args.steps)
                    cost.append(res)
                    s = res["seconds_per_step"]
                    verdict = ""
                    if w >= 1000:
                        ok = max(res["share_update_ablation"], res["share_update_timer"]) <= 0.25
                        verdict = "  PASS (<= 25%)" if ok else "  FAIL (> 25%)"
                    print(f"  width {w:5d} {rule.upper()}+decor: step plain {1e3 * s['plain']:.1f} ms, "
                          f"frozen R {1e3 * s['frozen']:.1f} ms, full {1e3 * s['full']:.1f} ms; "
                          f"R update share {100 * res['share_update_ablation']:.1f}% (ablation), "
                          f"{100 * res['share_update_timer']:.1f}% (timer); decorrelation overhead vs plain "
                          f"{100 * res['decor_overhead_vs_plain']:+.1f}%{verdict}")
            report["step_cost"] = cost
            report["load_average_after_cost"] = load_average()
        if not args.skip_tta:
            print(f"(b) time to the plain rule's final test accuracy on digits ({args.tta_epochs} epochs, "
                  f"batch 64, seeds {seeds}); speed-up = t_plain / t_decor")
            tta: dict[str, Any] = {}
            for w in widths:
                for rule in ("bp", "np"):
                    pairs = []
                    for seed in seeds:
                        p = tta_pair(w, rule, seed, args.tta_epochs, args.eval_every)
                        pairs.append(p)
                        reach = (f"{p['decor_seconds']:.2f}s ({p['decor_steps']} steps)" if p["decor_reached"]
                                 else f"never (final {100 * p['decor_final_acc']:.1f}%)")
                        note = "  [target near chance: ratio not meaningful]" if p["target_near_chance"] else ""
                        print(f"  width {w:5d} {rule.upper()} seed {seed}: target {100 * p['target_acc']:.1f}%; "
                              f"plain {p['plain_seconds']:.2f}s ({p['plain_steps']} steps), decor {reach}; "
                              f"speed-up {fmt_ratio(p['speedup_clock'])} (clock), "
                              f"{fmt_ratio(p['speedup_median_step'])} (steps x median step); "
                              f"decor acc at plain's total time {p['plain_total_seconds']:.2f}s: "
                              f"{100 * p['decor_acc_at_plain_budget']:.1f}%{note}")
                    summary = summarise_tta(pairs)
                    tta[f"{rule}_w{w}"] = {"summary": summary, "pairs": pairs}
                    print(f"  width {w:5d} {rule.upper()}+decor vs {rule.upper()}: median speed-up "
                          f"{fmt_ratio(summary['median_speedup_clock'])} (clock), "
                          f"{fmt_ratio(summary['median_speedup_median_step'])} (steps x median step); "
                          f"over seeds {summary['speedup_seeds']}; reached in {summary['reached']}/{len(pairs)} "
                          "seeds; decor step costs "
                          f"{summary['median_step_ratio_decor_over_plain']:.2f}x a plain step; equal time budget: "
                          f"plain {100 * summary['median_plain_final_acc']:.1f}%, decor "
                          f"{100 * summary['median_decor_acc_at_plain_budget']:.1f}% (medians)")
            report["time_to_accuracy"] = tta
    finally:
        HOOK.remove()
    report["load_average_end"] = load_average()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(strict_json(report), indent=1, allow_nan=False), encoding="utf-8")
    print(f"load average start {report['load_average_start']}, end {report['load_average_end']}; "
          f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
