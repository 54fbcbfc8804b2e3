"""Issue 8 acceptance 1, one cell: analog NP with the analog default decorrelation rule, float vs fixed (W = 16).

Trains the same configuration (analog defaults: 64-100-10 MLP, offdiag at decor_lr 3e-5, 50 epochs) with
``decor_numerics`` float and fixed (the unit's default format at ``--width``), per seed, and prints the last-epoch
test accuracy of each, their difference, and the fixed run's saturation counts and distance to float.

    .venv/bin/python benchmarks/cosim_accuracy.py                                  # digits, EcRamPreset, seed 0
    .venv/bin/python benchmarks/cosim_accuracy.py --dataset mnist1d --preset ConstantStep --seeds 0,1,2
    .venv/bin/python benchmarks/cosim_accuracy.py --seeds 0,1,2 --match-lr    # both at the unit's realisable lr

The unit steps R by a power of two per learning sample, η = 2^−s with s = round(log2(k / decor_lr)), so at the
analog default (decor_lr 3e-5, k = 7 rows) it learns at k·2^−18 = 2.67e-5, 11 % below the float run's 3e-5.
``--match-lr`` runs both at that realisable lr. The unit centres with its running mean (it cannot see a batch's
mean before the batch's samples); the float rule centres with the batch mean unless ``--float-centring running``
(``decor_centring``), which makes the float run centre the unit's way, so that the two differ in their arithmetic
and per-sample (instead of per-batch) updates only.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import warnings
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from analogdecorr.config import resolve  # noqa: E402
from analogdecorr.cosim.unit import rows_per_update, shift_for_lr  # noqa: E402
from analogdecorr.fixed.format import lr_for_shift  # noqa: E402
from analogdecorr.train import train  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="digits")
    p.add_argument("--preset", default="EcRamPreset")
    p.add_argument("--seeds", default="0")
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--epochs", type=int, default=None, help="default: the analog default (50)")
    p.add_argument("--out", default=None, help="folder for the runs (default: a temporary one)")
    p.add_argument("--float-centring", default="batch", choices=("batch", "running"),
                   help="the float run's decor_centring (default batch; running: the unit's streaming form)")
    p.add_argument("--numerics", default="float,fixed",
                   help="decor_numerics to train per seed, compared with the first (default float,fixed; add stream: "
                        "the unit's per-sample schedule in float64, which separates its arithmetic from its schedule)")
    p.add_argument("--match-lr", action="store_true",
                   help="run float and fixed at the unit's realisable decor lr k·2^-s (default: the analog default)")
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    out = Path(args.out or tempfile.mkdtemp(prefix="cosim_acc_"))
    decor_lr = None
    if args.match_lr:
        base = resolve({}, {"backend": "analog", "dataset": args.dataset, "preset": args.preset, "rule": "np"})
        k = rows_per_update(base)
        decor_lr = lr_for_shift(shift_for_lr(base.decor_lr, k), k)
        print(f"decor_lr {base.decor_lr:g} -> {decor_lr:.6g} (k = {k}, the unit's eta = 2^-"
              f"{shift_for_lr(base.decor_lr, k)} per sample) for both runs", flush=True)
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        accs = {}
        for numerics in args.numerics.split(","):
            cfg = resolve({}, {"decor_lr": decor_lr, "decor_centring": args.float_centring,
                               "backend": "analog", "dataset": args.dataset,
                               "preset": args.preset, "rule": "np",
                               "seed": seed, "epochs": args.epochs, "drift_times": [], "decor_numerics": numerics,
                               "unit_width": args.width, "cosim_record": 0,
                               "out": str(out / f"{args.dataset}_{args.preset}_{seed}_{numerics}"
                                                   f"{'_matched' if args.match_lr else ''}_{args.float_centring}")})
            res = train(cfg, progress=False, log=lambda _m: None)
            accs[numerics] = res["epochs"][-1]["test_acc"]
            if numerics == "fixed":
                last = res["epochs"][-1]["cosim"]
                accs["saturation"] = [sum(c["saturation"].values()) for c in last]
                accs["r_rel_dist"] = [round(c["r_rel_dist"], 4) for c in last]
                accs["z_rel_dist"] = [round(c["z_rel_dist"], 4) for c in last]
                accs["format"] = res["cosim"]["unit"]["fields"]
        rows.append({"seed": seed, **accs})
        print(json.dumps(rows[-1]), flush=True)
    names = args.numerics.split(",")
    ref = names[0]
    for other in names[1:]:
        diffs = [r[other] - r[ref] for r in rows]
        diff = statistics.mean(diffs)
        if len(diffs) > 1:  # noisy presets are not reproducible run to run (README): give the paired spread
            se = statistics.stdev(diffs) / len(diffs) ** 0.5
            print(f"paired {other} - {ref} per seed: {' '.join(f'{d:+.3f}' for d in diffs)}; mean {diff:+.4f} "
                  f"± {se:.4f} (standard error, {len(diffs)} seeds)")
    means = ", ".join(f"{n} {statistics.mean(r[n] for r in rows):.4f}" for n in names)
    print(f"{args.dataset} {args.preset} W={args.width}: {means} (mean of {len(rows)} seeds, last-epoch test "
          f"accuracy, float centring {args.float_centring}{', matched decor lr' if args.match_lr else ''})")


if __name__ == "__main__":
    main()
