"""What decorrelation costs per training step (issue 2, item 7).

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

Time to accuracy (what decorrelation buys) is benchmarks/time_to_accuracy.py (validation targets, side by side).

Everything is single-threaded (``torch.set_num_threads(1)``). Results are printed and written as JSON
(default ``benchmarks/out/decor_cost.json``).

    .venv/bin/python benchmarks/decor_cost.py                      # widths 256 and 1000
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
from analogdecorr.atomic import write_text  # noqa: E402
from analogdecorr.backends.float import GradientUpdater, make_optimizer  # noqa: E402
from analogdecorr.config import RunConfig, resolve  # noqa: E402
from analogdecorr.models import Network, build_model  # noqa: E402
from analogdecorr.rules import Rule, make_rule  # noqa: E402

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
    finally:
        HOOK.remove()
    report["load_average_end"] = load_average()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_text(args.out, json.dumps(strict_json(report), indent=1, allow_nan=False))
    print(f"load average start {report['load_average_start']}, end {report['load_average_end']}; "
          f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
