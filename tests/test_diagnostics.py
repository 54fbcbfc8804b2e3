"""The study's per-layer diagnostics: the spectrum of the decorrelated input and NP's cosine with the true gradient."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from analogdecorr.backends.analog import make_rpu_config, to_analog
from analogdecorr.config import resolve
from analogdecorr.decor import Decorrelator
from analogdecorr.diagnostics import RANK_TOL, input_spectrum, np_gradient_cosine, true_gradients
from analogdecorr.models import Layer, Network
from analogdecorr.plots import DIAGNOSTICS, plot_results
from analogdecorr.rules import NodePerturbation
from analogdecorr.train import Trainer


def correlated_rows(n: int, d: int, rho: float, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    eps = torch.randn(n, d, generator=g)
    m = eps.mean(1, keepdim=True)
    return (1 - rho) ** 0.5 * (eps - m) + (1 + (d - 1) * rho) ** 0.5 * m + 3.0  # off-centre on purpose


def test_spectrum_matches_numpy_on_the_same_rows():
    z = correlated_rows(2000, 12, 0.7) * torch.linspace(0.5, 2.0, 12)
    got = input_spectrum(z)
    cov = np.cov(z.double().numpy().T, bias=True)  # centred covariance, 1/n
    lam = np.linalg.eigvalsh(cov)
    assert got["rank"] == 12
    assert got["cond"] == pytest.approx(np.linalg.cond(cov), rel=1e-9)
    assert got["eig_max"] == pytest.approx(lam[-1], rel=1e-9)
    assert got["eig_min"] == pytest.approx(lam[0], rel=1e-9)
    assert got["cond"] > 20  # the data are ill-conditioned, so ≈ 1 below is the whitening's doing


def test_whitened_input_has_condition_one_and_a_dead_feature_lowers_the_rank():
    x = correlated_rows(4000, 16, 0.9)
    assert input_spectrum(x)["cond"] > 100
    dec = Decorrelator(16, rule="zca", zca_eps=1e-6)
    xd = x.double()
    dec.fit_zca(xd.mean(0), torch.cov(xd.T, correction=0))
    white = input_spectrum(dec.transform(x))
    assert white["cond"] == pytest.approx(1.0, abs=1e-3) and white["rank"] == 16
    x[:, 3] = 1.5  # a constant feature (digits' blank pixels): one direction without variance
    dead = input_spectrum(x)
    assert dead["rank"] == 15 and dead["eig_min"] < RANK_TOL * dead["eig_max"]
    assert 1 < dead["cond"] < 1e3  # the condition number of the directions that carry variance, not 1e16


def test_spectrum_of_a_constant_input_has_no_condition_number():
    assert input_spectrum(torch.ones(50, 4)) == {"eig_max": 0.0, "eig_min": 0.0, "rank": 0, "cond": None}


def linear_net(seed: int = 0) -> tuple[Network, torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    net = Network([Layer(nn.Linear(8, 4), None, nn.Identity())], (8,), 4)
    x, y = torch.randn(512, 8), torch.randint(0, 4, (512,))
    return net, x, y


def exact(net: Network) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(layer.linear.weight.detach(), layer.linear.bias.detach()) for layer in net.layers]


def test_true_gradients_equal_autograd_through_a_decorrelated_mlp():
    torch.manual_seed(0)
    layers = [Layer(nn.Linear(6, 5), Decorrelator(6, rule="whiten"), nn.Tanh()),
              Layer(nn.Linear(5, 3), Decorrelator(5, rule="whiten"), nn.Identity())]
    net = Network(layers, (6,), 3)
    for _, dec in net.decorrelators:  # a non-trivial R and mean, as after training
        dec.R.copy_(torch.eye(dec.num_features) + 0.1 * torch.randn(dec.num_features, dec.num_features))
        dec.running_mean.normal_()
    x, y = torch.randn(40, 6), torch.randint(0, 3, (40,))
    net.eval()
    torch.nn.functional.cross_entropy(net(x), y).backward()
    got = true_gradients(net, exact(net), x, y)
    for layer, g in zip(net.layers, got, strict=True):
        torch.testing.assert_close(g, layer.linear.weight.grad)


def test_np_gradient_cosine_is_high_for_tiny_sigma_and_falls_for_large_sigma():
    net, x, y = linear_net()

    def mean_cosine(sigma: float) -> float:
        rule = NodePerturbation(None, sigma, torch.Generator().manual_seed(0))
        return float(np.mean([np_gradient_cosine(net, rule, exact(net), x, y, torch.Generator().manual_seed(k))[0]
                              for k in range(3)]))

    small, large = mean_cosine(1e-3), mean_cosine(10.0)
    assert small > 0.5
    assert large < small - 0.3  # cross-entropy is far from linear over ±10 logits: δL no longer ≈ ξ·∇L


def test_np_gradient_cosine_leaves_state_and_rng_alone():
    net, x, y = linear_net()
    layers = [Layer(nn.Linear(8, 6), Decorrelator(8, rule="whiten"), nn.Tanh()),
              Layer(nn.Linear(6, 4), Decorrelator(6, rule="whiten"), nn.Identity())]
    net = Network(layers, (8,), 4)
    net.train()
    rule = NodePerturbation(None, 0.1, torch.Generator().manual_seed(5))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    rng = rule.generator.get_state()
    np_gradient_cosine(net, rule, exact(net), x[:64], y[:64], torch.Generator().manual_seed(1))
    assert net.training and torch.equal(rule.generator.get_state(), rng)
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k  # R, running mean and weights untouched


@pytest.mark.parametrize("antithetic", [False, True])
def test_np_gradient_cosine_on_the_exact_tile_equals_float(antithetic):
    """The analog backend's path (NP reads through tiles, exact weights read back) gives float's cosines on the
    exact FloatingPointPreset tile; the same ξ draws, so the two must agree to rounding."""
    torch.manual_seed(0)
    layers = [Layer(nn.Linear(8, 12), Decorrelator(8, rule="whiten"), nn.LeakyReLU()),
              Layer(nn.Linear(12, 4), Decorrelator(12, rule="whiten"), nn.Identity())]
    net = Network(layers, (8,), 4)
    x, y = torch.randn(128, 8), torch.randint(0, 4, (128,))
    rule = NodePerturbation(None, 0.05, torch.Generator(), antithetic=antithetic)
    want = np_gradient_cosine(net, rule, exact(net), x, y, torch.Generator().manual_seed(3))
    analog = to_analog(net, make_rpu_config("FloatingPointPreset"))
    weights = [layer.linear.get_weights() for layer in analog.layers]
    got = np_gradient_cosine(analog, rule, weights, x, y, torch.Generator().manual_seed(3))
    assert got == pytest.approx(want, abs=1e-4)
    assert min(want) > 0.1  # a real signal, not two zeros


SMALL = {"dataset": "digits", "hidden": "24,16", "epochs": 1, "batch_size": 64, "decor": "whiten",
         "decor_lr": 1e-3, "lr": 1e-3, "sigma": 0.05, "probe_size": 128}


def test_a_run_reports_spectra_equal_to_numpy_and_np_gradient_cosines(tmp_path):
    cfg = resolve({}, {**SMALL, "rule": "np", "out": str(tmp_path / "np")})
    trainer = Trainer(cfg, progress=False, log=lambda m: None)
    trainer.run()
    row = json.loads((tmp_path / "np" / "results.json").read_text())["epochs"][-1]
    inputs = trainer.net.layer_inputs(trainer.data.x_train[:1000])
    assert len(row["zz_cond"]) == len(row["grad_cosine"]) == len(inputs) == 3
    for i, (_, z) in enumerate(inputs):
        cov = np.cov(z.double().numpy().T, bias=True)
        lam = np.linalg.eigvalsh(cov)
        assert row["zz_eig_max"][i] == pytest.approx(lam[-1], rel=1e-6)
        kept = lam[lam > RANK_TOL * lam[-1]]
        assert row["zz_rank"][i] == len(kept)
        assert row["zz_cond"][i] == pytest.approx(lam[-1] / kept[0], rel=1e-6)
    assert row["zz_rank"][0] < 64  # digits has blank pixels: the rank says so instead of cond = 1e16
    assert all(-1 <= c <= 1 for c in row["grad_cosine"]) and max(row["grad_cosine"]) > 0.05
    written = plot_results(tmp_path / "np" / "results.json", tmp_path / "np")
    assert tmp_path / "np" / DIAGNOSTICS in written


def test_backprop_runs_have_spectra_but_no_np_cosine_and_old_results_no_diagnostics_plot(tmp_path):
    cfg = resolve({}, {**SMALL, "rule": "bp", "out": str(tmp_path / "bp")})
    Trainer(cfg, progress=False, log=lambda m: None).run()
    path = tmp_path / "bp" / "results.json"
    data = json.loads(path.read_text())
    assert "grad_cosine" not in data["epochs"][-1] and len(data["epochs"][-1]["zz_cond"]) == 3
    for row in data["epochs"]:  # a results.json written before the diagnostics existed
        for key in ("zz_cond", "zz_eig_max", "zz_eig_min", "zz_rank"):
            del row[key]
    path.write_text(json.dumps(data))
    written = plot_results(path, tmp_path / "old")
    assert written and tmp_path / "old" / DIAGNOSTICS not in written


def test_np_gradient_cosine_on_the_fixed_point_unit(tmp_path):
    """decor_numerics = fixed: the probe's perturbed pass replays the unit's present state (not the last training
    batch's), so with ξ = 0 the two passes agree exactly; the true gradient uses the unit's float view of R."""
    cfg = resolve({}, {**SMALL, "dataset": "correlated", "n_features": 16, "n_samples": 600, "hidden": "16",
                       "rule": "np", "decor": "offdiag", "decor_numerics": "fixed", "cosim_record": 0,
                       "out": str(tmp_path / "fixed")})
    trainer = Trainer(cfg, progress=False, log=lambda m: None)
    row = trainer.run()["epochs"][-1]
    assert len(row["grad_cosine"]) == 2 and all(-1 <= c <= 1 for c in row["grad_cosine"])
    decor = trainer.net.layers[1].decor
    h = trainer.net.layers[0](trainer.net.shape_input(trainer.data.x_train[:32]))
    decor.eval()
    z = decor(h)
    assert torch.equal(decor.replay_last(h), z)


@pytest.mark.parametrize(("key", "value", "needle"), [
    ("probe_size", -1, r"^probe_size=-1 must be an integer >= 0; 0 turns the diagnostics off"),
    ("zca_eps", 0.0, r"^zca_eps=0.0 must be a finite number > 0"),
    ("decor", "zcaa", r"did you mean 'zca'"),
])
def test_bad_study_settings_are_one_line_config_errors(key, value, needle):
    from analogdecorr.errors import ConfigError

    with pytest.raises(ConfigError, match=needle) as info:
        resolve({}, {key: value})
    assert "\n" not in str(info.value)


def test_antithetic_is_refused_outside_node_perturbation():
    from analogdecorr.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^antithetic = true is a node-perturbation option but rule is 'bp'"):
        resolve({}, {"antithetic": True, "rule": "bp"})
    assert resolve({}, {"antithetic": True, "rule": "np"}).antithetic is True
