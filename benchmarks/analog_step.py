"""Time one training step of analog NP+decor against an AnalogSGD BP step on the same network.

Both networks are built from the same configuration (same preset, same initial weights, batch 64) and are
stepped alternately (BP, NP+decor, BP, ...) on the same batches, so machine load hits both alike. Reports the
median step time of each after warm-up, their ratio (target ≤ 1.2), and the share of the NP+decor step spent
in the decorrelators (their forward + R update and the perturbed rows' transform, timed by wrapping both).
Steps are timed in the process's CPU time by default (``--clock cpu``): on a machine shared with other jobs,
wall time also counts the time slices other processes ran in, which drowns both steps alike and pulls the ratio
towards 1. torch, OpenMP and BLAS are pinned to one thread (``--threads``), as in one run of a sweep.
``--profile`` adds a cProfile of the NP+decor steps (top functions by own time).

    .venv/bin/python benchmarks/analog_step.py                          # 40-100-100-10, EcRamPreset
    .venv/bin/python benchmarks/analog_step.py --hidden 512,512 --preset ConstantStep --profile
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import statistics
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):  # before torch/aihwkit load them
    os.environ.setdefault(_var, "1")

import torch  # noqa: E402

from analogdecorr.config import resolve  # noqa: E402
from analogdecorr.train import Trainer  # noqa: E402

CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}


class DecorTimer:
    """Wraps every decorrelator's forward (z = (x − μ) Rᵀ plus the R update in training) and its transform (the
    perturbed pass's rows through the same μ and R), and sums their time on ``clock``."""

    def __init__(self, net, clock=time.process_time) -> None:
        self.seconds = 0.0
        self.clock = clock
        for _, decor in net.decorrelators:
            for name in ("forward", "transform"):
                setattr(decor, name, self._timed(getattr(decor, name)))

    def _timed(self, original):
        def timed(*args, **kwargs):
            t0 = self.clock()
            out = original(*args, **kwargs)
            self.seconds += self.clock() - t0
            return out

        return timed


def build(args, rule: str, decor: str):
    """A Trainer exactly as `analogdecorr train` builds it (ANALOG_DEFAULTS: lr, weight decay, σ, decor lr)."""
    cfg = resolve({}, {"backend": "analog", "dataset": args.dataset, "hidden": args.hidden, "rule": rule,
                       "decor": decor, "preset": args.preset, "io": args.io, "seed": 0,
                       "batch_size": args.batch, "out": "/tmp/analog_step_bench", **args.extra})
    trainer = Trainer(cfg, progress=False, log=lambda _msg: None)
    trainer.net.train()
    return cfg, trainer.data, trainer.net, trainer.rule


def _median_time(fn, clock, repeats: int = 300) -> float:
    times = []
    for _ in range(repeats):
        t0 = clock()
        fn()
        times.append(clock() - t0)
    return statistics.median(times)


def parts(args, clock) -> None:
    """Per-call costs behind the step (100×100 tile of the preset, lr 0.02): a read of 128 rows through aihwkit's
    autograd Function and directly (DirectReadAnalogLinear), and a pulsed update of 64 rows against the size of
    d under the preset's update management, with fixed 31-pulse trains, and with the train cap raised to 100."""
    from aihwkit.nn import AnalogLinear

    from analogdecorr.backends.analog import DirectReadAnalogLinear, make_rpu_config

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(128, 100, generator=gen)
    with torch.no_grad():
        for cls in (AnalogLinear, DirectReadAnalogLinear):
            layer = cls(100, 100, rpu_config=make_rpu_config(args.preset))
            seconds = _median_time(lambda layer=layer: layer(x), clock)
            print(f"read 128x100 rows, {cls.__name__:23s} {seconds * 1e6:8.0f} us")
    x64 = torch.randn(64, 100, generator=gen)
    settings = (("preset's update management", {}), ("fixed 31-pulse trains", {"update_bl_management": False}),
                ("train cap 100", {"desired_bl": 100}))
    for label, update in settings:
        tile = next(AnalogLinear(100, 100, rpu_config=make_rpu_config(args.preset, update=update)).analog_tiles())
        tile.set_learning_rate(0.02)
        for std in (0.0075, 0.025, 0.1):
            d = torch.randn(64, 100, generator=gen) * std
            seconds = _median_time(lambda tile=tile, d=d: tile.update(x64, d), clock, 100)
            print(f"update 64 rows, d std {std:<6g} {label:27s} {seconds * 1e6:8.0f} us")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="mnist1d")
    p.add_argument("--hidden", default="100,100")
    p.add_argument("--preset", default="EcRamPreset")
    p.add_argument("--ideal-io", action="store_true", help="io is_perfect = true")
    p.add_argument("--decor", default=None,
                   help="decorrelation rule of the NP run (default: the analog default, ANALOG_DEFAULTS['decor'])")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--repeats", type=int, default=200)
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--clock", choices=sorted(CLOCKS), default="cpu",
                   help="cpu: process CPU time (default; robust to other jobs on the machine), wall: perf_counter")
    p.add_argument("--profile", action="store_true", help="cProfile the NP+decor steps, print the top 20")
    p.add_argument("--parts", action="store_true",
                   help="only the per-call costs: a tile read with and without autograd, pulsed updates vs |d|")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a configuration key for both runs (e.g. weight_decay=0); repeatable")
    args = p.parse_args(argv)
    args.extra = dict(item.split("=", 1) for item in args.set)
    args.io = {"is_perfect": True} if args.ideal_io else {}
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")

    if args.parts:
        parts(args, CLOCKS[args.clock])
        return 0
    cfg, data, bp_net, bp = build(args, "bp", "none")
    np_cfg, _, np_net, npd = build(args, "np", args.decor)
    clock = CLOCKS[args.clock]
    timer = DecorTimer(np_net, clock)
    gen = torch.Generator().manual_seed(0)
    n = data.x_train.shape[0]
    t_bp, t_np, t_dec = [], [], []
    prof = cProfile.Profile() if args.profile else None
    for i in range(args.warmup + args.repeats):
        idx = torch.randint(0, n, (args.batch,), generator=gen)
        xb, yb = data.x_train[idx], data.y_train[idx]
        t0 = clock()
        bp.step(bp_net, xb, yb)
        t1 = clock()
        timer.seconds = 0.0
        if prof is not None and i >= args.warmup:
            prof.enable()
        npd.step(np_net, xb, yb)
        t2 = clock()
        if prof is not None and i >= args.warmup:
            prof.disable()
        if i >= args.warmup:
            t_bp.append(t1 - t0)
            t_np.append(t2 - t1)
            t_dec.append(timer.seconds)
    m_bp, m_np, m_dec = (statistics.median(t) for t in (t_bp, t_np, t_dec))
    share = statistics.median(d / t for d, t in zip(t_dec, t_np, strict=True))
    widths = [data.n_features, *cfg.hidden, data.n_classes]
    print(f"network {'-'.join(map(str, widths))}, batch {args.batch}, preset {args.preset}"
          f"{' (ideal IO)' if args.ideal_io else ''}, torch threads {args.threads}, "
          f"{args.repeats} repeats after {args.warmup} warm-up, {args.clock} clock; lr {cfg.lr:g}, weight decay "
          f"{cfg.weight_decay:g}, sigma {cfg.sigma:g}, decor {np_cfg.decor} lr {np_cfg.decor_lr:g}")
    print(f"BP (AnalogSGD)     median step {m_bp * 1e3:8.3f} ms")
    print(f"NP+decor (pulsed)  median step {m_np * 1e3:8.3f} ms")
    print(f"ratio NP+decor / BP            {m_np / m_bp:8.3f}   (target <= 1.2: "
          f"{'met' if m_np / m_bp <= 1.2 else 'NOT met'})")
    print(f"decorrelation (forward+update) {m_dec * 1e3:8.3f} ms median, {share:.1%} of the NP+decor step")
    if prof is not None:
        s = io.StringIO()
        pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(20)
        print(s.getvalue())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
