"""Cost of fixed-point decorrelation: the same analog NP+decor run with float and with fixed numerics.

Two Trainers are built from one configuration that differs only in ``decor_numerics`` (analog backend defaults:
offdiag at decor_lr 3e-5, 64-100-10 MLP on digits, EcRamPreset) and trained epoch by epoch in alternation
(float, fixed, float, ...), so machine load hits both alike. Reports the median per-epoch time of each (the
training loop alone and the whole epoch with its evaluation), their ratio (issue 8 target: <= 3), and the ratio
of the fastest epochs. Then both are trained as many epochs more with their training steps interleaved batch
by batch, which is the most load-robust ratio of the step cost on a shared machine.

    .venv/bin/python benchmarks/cosim_step.py                       # 5 epochs each, EcRamPreset
    .venv/bin/python benchmarks/cosim_step.py --epochs 3 --preset ConstantStep --json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

# One thread everywhere: the nets are tiny, and on a shared machine OpenMP/BLAS thread pools spinning against
# other processes cost far more than they gain (measured: 0.08 s vs 4 s per float epoch at load 11 on 2 cores).
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from analogdecorr.config import resolve  # noqa: E402
from analogdecorr.data import batches  # noqa: E402
from analogdecorr.train import Trainer  # noqa: E402


def build(args: argparse.Namespace, numerics: str, out: Path) -> Trainer:
    cfg = resolve({}, {"backend": "analog", "dataset": args.dataset, "hidden": args.hidden, "rule": "np",
                       "preset": args.preset, "seed": args.seed, "epochs": args.epochs, "drift_times": [],
                       "decor_numerics": numerics, "cosim_record": args.record, "out": str(out / numerics)})
    return Trainer(cfg, progress=False, log=lambda _msg: None)


def one_epoch(trainer: Trainer) -> tuple[float, float]:
    """Train the trainer's next epoch; (seconds of the training loop, seconds of the whole epoch)."""
    t0 = time.perf_counter()
    trainer.run(stop_when=lambda: True)
    wall = time.perf_counter() - t0
    trainer.start_epoch += 1
    return trainer.results.epochs[-1]["seconds"], wall


def interleaved_steps(runs: dict[str, Trainer], epochs: int, batch_size: int) -> dict[str, float]:
    """Seconds of training steps summed over ``epochs`` epochs, the two variants stepped batch by batch in
    alternation (order swapped every batch), so that load spikes of other processes hit both alike."""
    total = dict.fromkeys(runs, 0.0)
    data = next(iter(runs.values())).data
    for epoch in range(epochs):
        gen = torch.Generator().manual_seed(1000 + epoch)
        for i, (xb, yb) in enumerate(batches(data.x_train, data.y_train, batch_size, shuffle=True, generator=gen)):
            order = list(runs.items()) if i % 2 == 0 else list(runs.items())[::-1]
            for name, trainer in order:
                trainer.net.train()
                t0 = time.perf_counter()
                trainer.rule.step(trainer.net, xb, yb)
                total[name] += time.perf_counter() - t0
    return total


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="digits")
    p.add_argument("--hidden", default="100")
    p.add_argument("--preset", default="EcRamPreset")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--record", type=int, default=10_000, help="cosim_record of the fixed run (0: off)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="cosim_step_") as tmp:
        runs = {n: build(args, n, Path(tmp)) for n in ("float", "fixed")}
        times: dict[str, list[tuple[float, float]]] = {n: [] for n in runs}
        for _ in range(args.epochs):
            for name, trainer in runs.items():
                times[name].append(one_epoch(trainer))
        acc = {n: t.results.epochs[-1]["test_acc"] for n, t in runs.items()}
        steps = interleaved_steps(runs, args.epochs, runs["float"].cfg.batch_size)
    med = {n: (statistics.median(a for a, _ in v), statistics.median(b for _, b in v)) for n, v in times.items()}
    # the fastest epoch of each: the least disturbed by other processes on a shared machine
    best = {n: (min(a for a, _ in v), min(b for _, b in v)) for n, v in times.items()}
    out = {
        "config": vars(args),
        "train_seconds": {n: round(m[0], 3) for n, m in med.items()},
        "epoch_seconds": {n: round(m[1], 3) for n, m in med.items()},
        "ratio_train": round(med["fixed"][0] / med["float"][0], 3),
        "ratio_epoch": round(med["fixed"][1] / med["float"][1], 3),
        "step_seconds_interleaved": {n: round(v, 3) for n, v in steps.items()},
        "ratio_steps_interleaved": round(steps["fixed"] / steps["float"], 3),
        "ratio_train_fastest": round(best["fixed"][0] / best["float"][0], 3),
        "ratio_epoch_fastest": round(best["fixed"][1] / best["float"][1], 3),
        "test_acc_last_epoch": acc,
        "epochs_seconds": {n: [[round(a, 3), round(b, 3)] for a, b in v] for n, v in times.items()},
    }
    if args.json:
        print(json.dumps(out, indent=1))
        return
    print(f"{args.dataset} analog NP + offdiag, {args.preset}, hidden {args.hidden}, median of {args.epochs} epochs")
    for n in ("float", "fixed"):
        print(f"  {n:5s}: training loop {med[n][0]:.3f} s/epoch, whole epoch {med[n][1]:.3f} s  "
              f"(test acc after {args.epochs} epochs {acc[n]:.3f})")
    print(f"  fixed / float: {out['ratio_train']:.2f}x (training loop), {out['ratio_epoch']:.2f}x (whole epoch); "
          f"fastest epochs: {out['ratio_train_fastest']:.2f}x, {out['ratio_epoch_fastest']:.2f}x; target <= 3")
    print(f"  training steps interleaved batch by batch over {args.epochs} more epochs: float "
          f"{steps['float']:.3f} s, fixed {steps['fixed']:.3f} s, ratio {out['ratio_steps_interleaved']:.2f}x")


if __name__ == "__main__":
    main()
