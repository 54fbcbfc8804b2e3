"""Probe: NP with K perturbations per sample, averaged before the device sees the update (not a package option).

Each batch is repeated K times, NP's usual estimate runs on the K·N rows (K independent ξ per sample), and each
layer gets N rows: the sample's input averaged over its K copies (equal up to read noise) and its K error rows
summed (each already carries 1/(K·N)), so G is the mean of K NP estimates and its noise variance falls K-fold, at
K× the forward reads. Used in sims/README_devices.md (session 7) to ask whether NP's estimate noise is what stops
it on ReRamES: at K = 16 the gradient cosine of the hidden layers rose from .05/.08 to .10/.32 and accuracy did not.

    K=16 .venv/bin/python sims/np_averaged_perturbations.py --recipe mnist1d-np-transfer-rerames-agad --seed 100 \\
        --out runs/np_k16            # any `analogdecorr train` flags after the script name
"""

from __future__ import annotations

import os
import sys

from analogdecorr import rules
from analogdecorr.cli import main
from analogdecorr.errors import ConfigError

_estimate = rules.NodePerturbation.estimate


def averaged_estimate(k: int):
    """NodePerturbation.estimate over K copies of the batch, reduced to one (z, d) row per sample."""

    def estimate(self, net, x, y, generator=None):
        n = x.shape[0]
        loss, logits, updates, delta = _estimate(self, net, x.repeat(k, *([1] * (x.dim() - 1))), y.repeat(k),
                                                 generator)
        rows = [(z.reshape(k, -1, z.shape[-1]).mean(0), d.reshape(k, -1, d.shape[-1]).sum(0)) for z, d in updates]
        return loss.reshape(k, n).mean(0), logits.reshape(k, n, -1).mean(0), rows, delta.reshape(k, n).mean(0)

    return estimate


if __name__ == "__main__":
    try:
        k = int(os.environ.get("K", "4"))
        if k < 1:
            raise ValueError
    except ValueError:
        raise SystemExit(f"K must be a whole number >= 1 (got {os.environ.get('K')!r}); e.g. K=16") from None
    rules.NodePerturbation.estimate = averaged_estimate(k)
    try:
        sys.exit(main(["train", *sys.argv[1:]]))
    except ConfigError as e:
        raise SystemExit(f"error: {e}") from None
