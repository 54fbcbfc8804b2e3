"""NP's ``perturbations`` option: K draws of ξ per sample averaged into one row per sample, so the estimate keeps
its mean and its variance falls about K-fold (sims/README_devices.md's session-7 and session-11 runs rely on it)."""

from __future__ import annotations

import pytest
import torch

from analogdecorr.config import resolve
from analogdecorr.errors import ConfigError
from analogdecorr.models import build_model
from analogdecorr.rules import NodePerturbation, make_rule


def _draws(rule: NodePerturbation, net, x, y, n: int) -> torch.Tensor:
    out = []
    for _ in range(n):
        loss, logits, updates, delta = rule.estimate(net, x, y)
        assert loss.shape == delta.shape == (x.shape[0],) and logits.shape == (x.shape[0], 4)
        assert all(z.shape[0] == d.shape[0] == x.shape[0] for z, d in updates)  # one row per sample
        out.append(torch.cat([(d.T @ z).flatten() for z, d in updates]))
    return torch.stack(out).double()


@pytest.mark.parametrize("antithetic", [False, True])
def test_k_averaged_np_keeps_the_mean_and_divides_the_variance(antithetic):
    torch.manual_seed(0)
    net = build_model(resolve({}, {"hidden": [16]}), (10,), 4)
    x, y = torch.randn(32, 10), torch.randint(0, 4, (32,))
    plain = _draws(NodePerturbation(None, 0.3, torch.Generator().manual_seed(1), antithetic), net, x, y, 300)
    avg = _draws(NodePerturbation(None, 0.3, torch.Generator().manual_seed(2), antithetic, perturbations=4),
                 net, x, y, 300)
    ratio = float(avg.var(0).sum() / plain.var(0).sum())
    assert 0.18 < ratio < 0.32  # 1/4, within the sampling error of 300 draws
    se = float(((plain.var(0).sum() + avg.var(0).sum()) / 300).sqrt())
    assert float((plain.mean(0) - avg.mean(0)).norm()) < 3 * se


def test_conv_rows_average_per_sample_patch():
    torch.manual_seed(0)
    net = build_model(resolve({}, {"model": "conv", "dataset": "digits", "conv_channels": "4,4"}), (1, 8, 8), 4)
    x, y = torch.randn(6, 1, 8, 8), torch.randint(0, 4, (6,))
    plain = NodePerturbation(None, 0.3, torch.Generator().manual_seed(1)).estimate(net, x, y)[2]
    avg = NodePerturbation(None, 0.3, torch.Generator().manual_seed(1), perturbations=3).estimate(net, x, y)[2]
    for (zp, dp), (za, da) in zip(plain, avg, strict=True):
        assert za.shape == zp.shape and da.shape == dp.shape
    net.eval()  # without R learning between the calls, the averaged inputs equal the plain ones
    plain = NodePerturbation(None, 0.3, torch.Generator().manual_seed(1)).estimate(net, x, y)[2]
    avg = NodePerturbation(None, 0.3, torch.Generator().manual_seed(1), perturbations=3).estimate(net, x, y)[2]
    for (zp, _), (za, _) in zip(plain, avg, strict=True):
        torch.testing.assert_close(za, zp)


@pytest.mark.parametrize("bad", [0, -2, 1.5, True])
def test_bad_perturbation_counts_are_one_line_errors(bad):
    with pytest.raises(ConfigError, match="perturbations") as info:
        resolve({}, {"perturbations": bad})
    assert "\n" not in str(info.value)


def test_perturbations_belong_to_np_only():
    with pytest.raises(ConfigError, match="node-perturbation option"):
        resolve({}, {"perturbations": 4, "rule": "bp"})
    net = build_model(resolve({}, {"hidden": [16]}), (10,), 4)
    with pytest.raises(ConfigError, match="node-perturbation option"):
        make_rule("fa", net, optimizer=None, updater=None, sigma=0.3, seed=0, perturbations=2)


def test_a_k_draw_run_resumes_to_the_uninterrupted_run(tmp_path):
    from analogdecorr.train import train

    cfg = {"dataset": "digits", "hidden": "24", "epochs": 2, "decor": "scaled", "decor_lr": 1e-3, "lr": 1e-3,
           "perturbations": 3, "probe_size": 0}
    full = train(resolve({}, {**cfg, "out": str(tmp_path / "full")}), progress=False, log=lambda s: None)
    train(resolve({}, {**cfg, "epochs": 1, "out": str(tmp_path / "part")}), progress=False, log=lambda s: None)
    resumed = train(resolve({}, {**cfg, "out": str(tmp_path / "part")}), resume=True, progress=False,
                    log=lambda s: None)
    strip = ("seconds",)
    assert [{k: v for k, v in e.items() if k not in strip} for e in full["epochs"]] == \
           [{k: v for k, v in e.items() if k not in strip} for e in resumed["epochs"]]
    assert full["config"]["perturbations"] == 3
