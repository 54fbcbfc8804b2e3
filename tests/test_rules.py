"""Learning rules and the model builder: each rule's update against autograd or its defining equation."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from analogdecorr.backends.float import GradientUpdater
from analogdecorr.config import RunConfig
from analogdecorr.errors import ConfigError
from analogdecorr.models import build_model
from analogdecorr.rules import FeedbackAlignment, NodePerturbation, make_rule


class Recorder:
    """A WeightUpdater that keeps every layer's (z, d) instead of applying it."""

    def __init__(self) -> None:
        self.updates: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self.ids: dict[int, int] = {}

    def begin(self) -> None:
        self.updates.clear()

    def apply(self, layer, z, d) -> None:
        self.updates[id(layer)] = (z.clone(), d.clone())

    def finish(self) -> None:
        pass


def cfg(**kw) -> RunConfig:
    base = dict(hidden=(16, 12), decor="none", activation="tanh", model="mlp")
    base.update(kw)
    return dataclasses.replace(RunConfig(), **base)


def autograd_grads(net, x, y):
    net.zero_grad()
    F.cross_entropy(net(x), y).backward()
    return [layer.linear.weight.grad.clone() for layer in net.layers]


def test_fa_with_true_weights_as_feedback_equals_backprop():
    torch.manual_seed(0)
    net = build_model(cfg(), (10,), 4)
    x, y = torch.randn(32, 10), torch.randint(0, 4, (32,))
    expected = autograd_grads(net, x, y)
    rec = Recorder()
    rule = FeedbackAlignment(net, rec, direct=False, generator=torch.Generator().manual_seed(0))
    for b, layer in zip(rule.feedback, net.layers, strict=True):
        b.data = layer.linear.weight.detach().clone()
    rule.step(net, x, y)
    for layer, g in zip(net.layers, expected, strict=True):
        z, d = rec.updates[id(layer)]
        torch.testing.assert_close(d.T @ z, g, rtol=1e-5, atol=1e-6)


def test_fa_with_random_feedback_differs_from_backprop():
    torch.manual_seed(0)
    net = build_model(cfg(), (10,), 4)
    x, y = torch.randn(32, 10), torch.randint(0, 4, (32,))
    expected = autograd_grads(net, x, y)
    rec = Recorder()
    FeedbackAlignment(net, rec, direct=False, generator=torch.Generator().manual_seed(0)).step(net, x, y)
    z, d = rec.updates[id(net.layers[0])]
    assert not torch.allclose(d.T @ z, expected[0], atol=1e-4)
    # the output layer's update is the true gradient in FA and DFA alike
    z, d = rec.updates[id(net.layers[-1])]
    torch.testing.assert_close(d.T @ z, expected[-1], rtol=1e-5, atol=1e-6)


def test_dfa_hidden_update_uses_direct_projection_of_output_error():
    torch.manual_seed(1)
    net = build_model(cfg(hidden=(8,)), (5,), 3)
    x, y = torch.randn(16, 5), torch.randint(0, 3, (16,))
    rec = Recorder()
    rule = FeedbackAlignment(net, rec, direct=True, generator=torch.Generator().manual_seed(0))
    rule.step(net, x, y)
    with torch.no_grad():
        a0 = net.layers[0].linear(x)
        logits = net(x)
        err = (torch.softmax(logits, 1) - F.one_hot(y, 3).float()) / 16
        want = (err @ rule.feedback[0]) * (1 - torch.tanh(a0) ** 2)
    z, d = rec.updates[id(net.layers[0])]
    torch.testing.assert_close(d, want, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(z, x)


def test_np_estimate_matches_definition_and_aligns_with_gradient():
    torch.manual_seed(2)
    net = build_model(cfg(hidden=(20,)), (6,), 3)
    x, y = torch.randn(4000, 6), torch.randint(0, 3, (4000,))
    expected = autograd_grads(net, x, y)
    rec = Recorder()
    rule = NodePerturbation(rec, sigma=1e-2, generator=torch.Generator().manual_seed(0))
    sums = [torch.zeros_like(g) for g in expected]
    for _ in range(
        30
    ):  # the estimate is unbiased: its average over independent draws approaches the gradient
        rule.step(net, x, y)
        for s, layer in zip(sums, net.layers, strict=True):
            z, d = rec.updates[id(layer)]
            s += d.T @ z / 30
    for est, g in zip(sums, expected, strict=True):
        cos = F.cosine_similarity(est.flatten(), g.flatten(), dim=0)
        assert cos > 0.5, f"NP estimate barely aligned with the gradient (cos {cos:.2f})"
        # magnitude: the estimate is unbiased, so its scale matches the gradient's within a factor ~2
        ratio = float((est * g).sum() / (g * g).sum())
        assert 0.5 < ratio < 1.5


def test_np_wrong_sigma_scale_would_overshoot():
    """d must use ξ (= σ ε), not ε: check the recorded d divided by δL/(σ² N) is exactly the noise added."""
    torch.manual_seed(3)
    net = build_model(cfg(hidden=(4,)), (3,), 2)
    x, y = torch.randn(8, 3), torch.randint(0, 2, (8,))
    rec = Recorder()
    rule = NodePerturbation(rec, sigma=0.05, generator=torch.Generator().manual_seed(5))
    rule.step(net, x, y)
    gen = torch.Generator().manual_seed(5)
    xi0 = 0.05 * torch.randn((8, 4), generator=gen)
    _, d = rec.updates[id(net.layers[0])]
    scale = rule.last_delta / (0.05**2 * 8)
    torch.testing.assert_close(d, xi0 * scale[:, None])


def test_np_uses_same_decorrelation_in_both_passes_and_updates_R_once():
    torch.manual_seed(4)
    net = build_model(cfg(hidden=(8,), decor="scaled", decor_lr=1e-2), (5,), 3)
    x, y = torch.randn(64, 5) @ torch.randn(5, 5), torch.randint(0, 3, (64,))
    rec = Recorder()
    rule = NodePerturbation(rec, sigma=1e-6, generator=torch.Generator().manual_seed(0))
    r0 = net.layers[0].decor.R.clone()
    rule.step(net, x, y)
    assert not torch.equal(r0, net.layers[0].decor.R)
    # with a tiny σ the perturbed pass is the clean pass: δL is at the float32 noise floor
    assert float(rule.last_delta.abs().max()) < 1e-4


def test_conv_layer_rows_equal_conv2d():
    torch.manual_seed(5)
    net = build_model(cfg(model="conv", conv_channels=(4, 6)), (1, 8, 8), 10)
    x = torch.randn(3, 1, 8, 8)
    layer = net.layers[0]
    w = layer.linear.weight.reshape(4, 1, 3, 3)
    want = F.conv2d(x, w, layer.linear.bias, padding=1)
    got = layer.from_rows(layer.linear(layer.to_rows(x)), 3)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert net(x.reshape(3, -1)).shape == (3, 10)
    # rows_to_input is the adjoint of to_rows
    g = torch.randn(layer.to_rows(x).shape)
    lhs = (layer.to_rows(x) * g).sum()
    rhs = (x * layer.rows_to_input(g, 3)).sum()
    torch.testing.assert_close(lhs, rhs, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("rule", ["fa", "dfa", "np"])
def test_local_rules_run_on_conv_nets_with_decorrelation(rule):
    torch.manual_seed(6)
    c = cfg(model="conv", conv_channels=(4, 6), decor="scaled", rule=rule)
    net = build_model(c, (1, 8, 8), 10)
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    r = make_rule(rule, net, optimizer=opt, updater=GradientUpdater(opt), sigma=1e-2, seed=0)
    x, y = torch.randn(32, 64), torch.randint(0, 10, (32,))
    w0 = [layer.linear.weight.detach().clone() for layer in net.layers]
    r.step(net, x, y)
    for layer, w in zip(net.layers, w0, strict=True):
        assert not torch.equal(w, layer.linear.weight), "every layer must receive an update"


def test_gradient_updater_equals_autograd_for_last_layer():
    torch.manual_seed(7)
    net = build_model(cfg(hidden=(8,)), (5,), 3)
    x, y = torch.randn(16, 5), torch.randint(0, 3, (16,))
    g = autograd_grads(net, x, y)[-1]
    opt = torch.optim.SGD(net.parameters(), lr=1.0)
    upd = GradientUpdater(opt)
    rec = Recorder()
    FeedbackAlignment(net, rec, direct=False, generator=torch.Generator()).step(net, x, y)
    z, d = rec.updates[id(net.layers[-1])]
    w = net.layers[-1].linear.weight.detach().clone()
    upd.begin()
    upd.apply(net.layers[-1], z, d)
    upd.finish()
    torch.testing.assert_close(net.layers[-1].linear.weight.detach(), w - g, rtol=1e-5, atol=1e-6)


def test_unknown_rule_and_activation_are_config_errors():
    net = build_model(cfg(), (4,), 2)
    with pytest.raises(ConfigError, match="'np'"):
        make_rule("nps", net, optimizer=None, updater=Recorder(), sigma=1e-3, seed=0)
    with pytest.raises(ConfigError, match="leaky_relu"):
        build_model(dataclasses.replace(cfg(), activation="leaky_rel"), (4,), 2)
    with pytest.raises(ConfigError, match="sigma"):
        NodePerturbation(Recorder(), sigma=0.0, generator=torch.Generator())


def test_feature_count_mismatch_is_a_data_error():
    from analogdecorr.errors import DataError

    net = build_model(cfg(), (10,), 4)
    with pytest.raises(DataError, match="9 features .* built for 10"):
        net(torch.randn(3, 9))
    rule = NodePerturbation(Recorder(), sigma=1e-3, generator=torch.Generator())
    with pytest.raises(DataError, match="features"):
        rule.step(net, torch.randn(3, 12), torch.zeros(3, dtype=torch.long))


def test_centre_decor_option_builds_identity_decorrelators_for_every_layer():
    net = build_model(cfg(decor="centre"), (6,), 3)
    assert len(net.decorrelators) == len(net.layers)
    x, y = torch.randn(32, 6) + 2.0, torch.randint(0, 3, (32,))
    rec = Recorder()
    NodePerturbation(rec, sigma=1e-2, generator=torch.Generator().manual_seed(0)).step(net, x, y)
    z, _ = rec.updates[id(net.layers[0])]
    torch.testing.assert_close(z, x - x.mean(0))
    for _, dec in net.decorrelators:
        assert torch.equal(dec.R, torch.eye(dec.num_features))


def test_np_fused_passes_equal_two_separate_forwards_with_the_same_noise():
    """The lockstep (stacked) clean/perturbed pass computes what two separate passes compute: the clean z use
    the batch mean and the R before its update, the perturbed rows the same mean and R, ξ drawn layer by layer."""
    torch.manual_seed(6)
    net = build_model(cfg(hidden=(9, 7), decor="scaled", decor_lr=1e-2), (5,), 3)
    x, y = torch.randn(32, 5) @ torch.randn(5, 5) + 0.5, torch.randint(0, 3, (32,))
    sigma = 0.1
    layers = [(layer.decor.R.clone(), layer.linear, layer.act) for layer in net.layers]
    rec = Recorder()
    rule = NodePerturbation(rec, sigma=sigma, generator=torch.Generator().manual_seed(9))
    rule.step(net, x, y)

    gen = torch.Generator().manual_seed(9)
    h, hp, zs = x, x, []
    with torch.no_grad():
        for R, linear, act in layers:
            mean = h.mean(0)
            z = (h - mean) @ R.T
            zs.append(z)
            a, ap = linear(z), linear((hp - mean) @ R.T)
            xi = sigma * torch.randn(a.shape, generator=gen)
            h, hp = act(a), act(ap + xi)
        delta = F.cross_entropy(hp, y, reduction="none") - F.cross_entropy(h, y, reduction="none")
    torch.testing.assert_close(rule.last_delta, delta, rtol=1e-4, atol=1e-6)
    for layer, z in zip(net.layers, zs, strict=True):
        torch.testing.assert_close(rec.updates[id(layer)][0], z)
    assert float(delta.abs().max()) > 1e-3  # the perturbation is large enough for the comparison to mean something


# ------------------------------------------------------------------------------------------ antithetic NP


def _estimates(net, x, y, sigma: float, antithetic: bool, draws: int) -> torch.Tensor:
    """``draws`` NP estimates G (all layers, flattened) on the fixed batch (x, y), ξ from one seeded stream."""
    rule = NodePerturbation(Recorder(), sigma, torch.Generator().manual_seed(1), antithetic=antithetic)
    out = []
    for _ in range(draws):
        _, _, updates, _ = rule.estimate(net, x, y)
        out.append(torch.cat([(d.T @ z).flatten() for z, d in updates]))
    return torch.stack(out).double()


def _compare(net, x, y, sigma: float, draws: int) -> tuple[float, float, float]:
    """(variance ratio antithetic / plain, |mean difference|, its standard error) over repeated draws."""
    plain, anti = _estimates(net, x, y, sigma, False, draws), _estimates(net, x, y, sigma, True, draws)
    v_plain, v_anti = plain.var(0).sum(), anti.var(0).sum()
    se = float(((v_plain + v_anti) / draws).sqrt())
    return float(v_anti / v_plain), float((plain.mean(0) - anti.mean(0)).norm()), se


def test_antithetic_np_lowers_the_variance_and_keeps_the_mean_on_float():
    """σ = 1 on a tanh net: the curvature term ½ ξᵀHξ that ±ξ cancels is a measurable part of the variance
    (measured ratio 0.77; 0.96 at σ = 0.3, 1.00 at σ = 0.01, where the first-order part, shared by ±ξ, is all)."""
    torch.manual_seed(0)
    net = build_model(cfg(hidden=(16,)), (10,), 4)
    x, y = torch.randn(64, 10), torch.randint(0, 4, (64,))
    ratio, diff, se = _compare(net, x, y, sigma=1.0, draws=400)
    assert ratio < 0.9
    assert diff < 3 * se


def test_antithetic_np_cuts_the_read_noise_variance_on_tiles():
    """IdealizedPreset (read noise 0.1) at σ = 0.1: L₊ − L₋ carries twice the signal of L₊ − L₀ under the same
    read noise (measured ratio 0.57)."""
    from analogdecorr.backends.analog import make_rpu_config, to_analog

    torch.manual_seed(0)
    net = build_model(cfg(hidden=(16,)), (10,), 4)
    with torch.no_grad():
        for layer in net.layers:
            layer.linear.weight.clamp_(-0.3, 0.3)  # inside the device's range: no clipping warning
    net = to_analog(net, make_rpu_config("IdealizedPreset"))
    x, y = torch.randn(64, 10), torch.randint(0, 4, (64,))
    ratio, diff, se = _compare(net, x, y, sigma=0.1, draws=200)
    assert ratio < 0.75
    assert diff < 3 * se


class _CountingLinear(torch.nn.Linear):
    rows = 0

    def forward(self, x):
        _CountingLinear.rows += x.shape[0]
        return super().forward(x)


@pytest.mark.parametrize("model", ["mlp", "conv"])
def test_antithetic_np_reads_as_many_rows_and_updates_every_layer(model):
    """Equal forward reads (the cost that matters on tiles), a valid update on every layer, decorrelation on."""
    c = cfg(hidden=(8, 6), decor="whiten", decor_lr=1e-2, model=model, conv_channels=(3,))
    shape, n_in = ((5,), 5) if model == "mlp" else ((1, 6, 6), 36)
    reads = {}
    for antithetic in (False, True):
        torch.manual_seed(0)
        net = build_model(c, shape, 3)
        for layer in net.layers:
            old = layer.linear
            layer.linear = _CountingLinear(old.in_features, old.out_features)
            layer.linear.load_state_dict(old.state_dict())
        rec = Recorder()
        rule = NodePerturbation(rec, 0.05, torch.Generator().manual_seed(0), antithetic=antithetic)
        x, y = torch.randn(32, n_in), torch.randint(0, 3, (32,))
        r0 = net.layers[1].decor.R.clone()
        _CountingLinear.rows = 0
        loss, _ = rule.step(net, x, y)
        reads[antithetic] = _CountingLinear.rows
        assert torch.isfinite(loss) and not torch.equal(r0, net.layers[1].decor.R)  # R learned once per step
        for layer in net.layers:
            z, d = rec.updates[id(layer)]
            assert torch.isfinite(d.T @ z).all() and float((d.T @ z).abs().sum()) > 0
    assert reads[True] == reads[False]


def test_antithetic_is_an_np_option_only():
    net = build_model(cfg(), (4,), 2)
    with pytest.raises(ConfigError, match="antithetic.*--rule np"):
        make_rule("fa", net, optimizer=None, updater=Recorder(), sigma=1e-3, seed=0, antithetic=True)
    from analogdecorr.config import resolve

    with pytest.raises(ConfigError, match=r"^antithetic = true is a node-perturbation option"):
        resolve({}, {"rule": "bp", "antithetic": True})
