"""Issue 8 acceptance 1, one cell: analog NP with the analog default decorrelation rule, float vs fixed (W = 16).

Trains the same configuration (analog defaults: 64-100-10 MLP, offdiag at decor_lr 3e-5, 50 epochs) with
``decor_numerics`` float and fixed (the unit's default format at ``--width``), per seed, and prints the last-epoch
test accuracy of each, their difference, and the fixed run's saturation counts and distance to float.

    .venv/bin/python benchmarks/cosim_accuracy.py                                  # digits, EcRamPreset, seed 0
    .venv/bin/python benchmarks/cosim_accuracy.py --dataset mnist1d --preset ConstantStep --seeds 0,1,2
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
from analogdecorr.train import train  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="digits")
    p.add_argument("--preset", default="EcRamPreset")
    p.add_argument("--seeds", default="0")
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--epochs", type=int, default=None, help="default: the analog default (50)")
    p.add_argument("--out", default=None, help="folder for the runs (default: a temporary one)")
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    out = Path(args.out or tempfile.mkdtemp(prefix="cosim_acc_"))
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        accs = {}
        for numerics in ("float", "fixed"):
            cfg = resolve({}, {"backend": "analog", "dataset": args.dataset, "preset": args.preset, "rule": "np",
                               "seed": seed, "epochs": args.epochs, "drift_times": [], "decor_numerics": numerics,
                               "unit_width": args.width, "cosim_record": 0,
                               "out": str(out / f"{args.dataset}_{args.preset}_{seed}_{numerics}")})
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
    diff = statistics.mean(r["fixed"] - r["float"] for r in rows)
    print(f"{args.dataset} {args.preset} W={args.width}: float {statistics.mean(r['float'] for r in rows):.4f}, "
          f"fixed {statistics.mean(r['fixed'] for r in rows):.4f}, fixed - float {diff:+.4f} "
          f"(mean of {len(rows)} seeds, last-epoch test accuracy)")


if __name__ == "__main__":
    main()
