"""sims/np_averaged_perturbations.py: K perturbations per sample averaged into one row per sample, so NP's
estimate keeps its mean and its variance falls about K-fold (the probe in sims/README_devices.md relies on it)."""

from __future__ import annotations

import torch
from script_module import load_script

from analogdecorr.config import resolve
from analogdecorr.models import build_model
from analogdecorr.rules import NodePerturbation


def _probe():
    return load_script("sims/np_averaged_perturbations.py")


def _draws(estimate, net, x, y, n: int) -> torch.Tensor:
    rule = NodePerturbation(None, 0.3, torch.Generator().manual_seed(1))
    out = []
    for _ in range(n):
        loss, logits, updates, delta = estimate(rule, net, x, y)
        assert loss.shape == delta.shape == (x.shape[0],) and logits.shape == (x.shape[0], 4)
        assert all(z.shape[0] == d.shape[0] == x.shape[0] for z, d in updates)  # one row per sample
        out.append(torch.cat([(d.T @ z).flatten() for z, d in updates]))
    return torch.stack(out).double()


def test_k_averaged_np_keeps_the_mean_and_divides_the_variance():
    torch.manual_seed(0)
    net = build_model(resolve({}, {"hidden": [16]}), (10,), 4)
    x, y = torch.randn(32, 10), torch.randint(0, 4, (32,))
    plain = _draws(NodePerturbation.estimate, net, x, y, 300)
    avg = _draws(_probe().averaged_estimate(4), net, x, y, 300)
    ratio = float(avg.var(0).sum() / plain.var(0).sum())
    assert 0.18 < ratio < 0.32  # 1/4, within the sampling error of 300 draws
    se = float(((plain.var(0).sum() + avg.var(0).sum()) / 300).sqrt())
    assert float((plain.mean(0) - avg.mean(0)).norm()) < 3 * se
