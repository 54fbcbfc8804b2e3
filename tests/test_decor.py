"""Tests for analogdecorr.decor: rules against an independent numpy reference, cost form, layers, errors."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from analogdecorr.config import resolve
from analogdecorr.decor import (
    DECOR_RULES,
    SCALED_RULES,
    DecorConv2d,
    DecorLinear,
    Decorrelator,
    decor_update,
    refit_zca,
)
from analogdecorr.errors import ConfigError, DataError, DivergenceError
from analogdecorr.models import build_model

# ----------------------------------------------------------------------------------------------------------
# Independent numpy reference, written from SPEC §2 in the column convention (z = R x̃), float64.


def np_step(
    R: np.ndarray,
    x: np.ndarray,
    run_mean: np.ndarray,
    *,
    rule: str,
    lr: float,
    frac: float,
    kappa: float,
    scale_free: bool,
    momentum: float = 0.1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One training step: returns (R after the update, z computed with R before it, running mean)."""
    n, d = x.shape
    mu = x.mean(axis=0)
    run_mean = (1 - momentum) * run_mean + momentum * mu
    z = np.stack([R @ (x[i] - mu) for i in range(n)])  # z = R x̃ per sample, R before the update
    k = min(int(np.floor(frac * n)) + 1, n)
    C = sum(np.outer(z[i], z[i]) for i in range(k)) / k  # ⟨z zᵀ⟩ over the first k samples
    if scale_free:
        C = C / np.mean(np.diag(C))
    C_off = C - np.diag(np.diag(C))
    eye = np.eye(d)
    if rule in ("scaled", "scaled_left"):
        s = np.mean([np.linalg.norm(x[i]) / (np.linalg.norm(z[i]) + 1e-8) for i in range(k)])  # raw x
        R = s * R
        R = R - lr * (R @ C if rule == "scaled" else C @ R)  # the paper's right form; the left twin
    elif rule == "offdiag":
        R = R - lr * C_off @ R
    elif rule == "whiten":
        R = R - lr * (C - eye) @ R
    elif rule == "kappa":
        R = R - lr * ((1 - kappa) * C_off @ R + kappa * np.diag(np.diag(C) - 1) @ R)
    else:
        raise AssertionError(rule)
    return R, z, run_mean


def _correlated(
    n: int, d: int, rho: float, g: torch.Generator, chol: torch.Tensor | None = None
) -> torch.Tensor:
    if chol is None:
        chol = torch.linalg.cholesky((1 - rho) * torch.eye(d) + rho * torch.ones(d, d))
    return torch.randn(n, d, generator=g) @ chol.T


def mean_abs_offdiag_corr(z: torch.Tensor) -> float:
    c = torch.corrcoef(z.T.double())
    return c[~torch.eye(c.shape[0], dtype=torch.bool)].abs().mean().item()


@pytest.mark.parametrize("scale_free", [False, True])
@pytest.mark.parametrize("rule", DECOR_RULES)
@pytest.mark.parametrize("n,frac", [(40, 0.1), (30, 1.0), (20, 0.25)])
def test_matches_numpy_reference(rule: str, scale_free: bool, n: int, frac: float) -> None:
    d, lr, kappa, steps = 6, 0.05, 0.3, 6
    rng = np.random.default_rng(7)
    R0 = np.eye(d) + 0.2 * rng.standard_normal((d, d))  # non-identity start
    mix = rng.standard_normal((d, d))
    mod = Decorrelator(d, rule=rule, lr=lr, sample_frac=frac, scale_free=scale_free, kappa=kappa)
    mod.R.copy_(torch.tensor(R0, dtype=torch.float32))
    R_np, rm_np = R0.copy(), np.zeros(d)
    for _ in range(steps):
        x32 = torch.tensor(rng.standard_normal((n, d)) @ mix + 0.7, dtype=torch.float32)  # non-zero mean
        R_np, z_np, rm_np = np_step(
            R_np, x32.double().numpy(), rm_np, rule=rule, lr=lr, frac=frac, kappa=kappa, scale_free=scale_free
        )
        z = mod(x32)
        np.testing.assert_allclose(z.detach().numpy(), z_np, rtol=1e-4, atol=2e-5)
        np.testing.assert_allclose(mod.R.numpy(), R_np, rtol=1e-4, atol=2e-5)
    np.testing.assert_allclose(mod.running_mean.numpy(), rm_np, rtol=1e-5, atol=1e-6)
    assert np.abs(R_np - R0).max() > 1e-2  # the comparison is not vacuous: R moved far beyond the tolerance


def test_update_uses_first_k_rows_only() -> None:
    # Rows ≥ k affect the update only through the batch mean: permuting them leaves R unchanged.
    g = torch.Generator().manual_seed(1)
    x = torch.randn(50, 8, generator=g)
    k = int(0.1 * 50) + 1
    y = x.clone()
    y[k:] = x[k:].flip(0)
    a, b = Decorrelator(8, lr=0.05), Decorrelator(8, lr=0.05)
    a(x), b(y)
    torch.testing.assert_close(a.R, b.R, rtol=0, atol=1e-6)  # only summation order of the mean differs
    c = Decorrelator(8, lr=0.05)
    y2 = x.clone()
    y2[:k] = x[:k].flip(0) * 1.5 + 0.3  # change the first k rows: R must differ
    c(y2)
    assert (c.R - a.R).abs().max() > 1e-4


def test_forward_returns_z_from_r_before_update() -> None:
    g = torch.Generator().manual_seed(2)
    m = Decorrelator(5, rule="offdiag", lr=0.1)
    m.R.copy_(torch.eye(5) + 0.3 * torch.randn(5, 5, generator=g))
    R_before = m.R.clone()
    x = torch.randn(20, 5, generator=g)
    z = m(x)
    torch.testing.assert_close(z, (x - x.mean(0)) @ R_before.T)
    torch.testing.assert_close(m.last_R, R_before)
    torch.testing.assert_close(m.last_mean, x.mean(0))
    assert not torch.allclose(m.R, R_before)
    torch.testing.assert_close(m.transform(x, mean=m.last_mean, R=m.last_R), z)


# ----------------------------------------------------------------------------------------------------------
# O(k d²) form


def _naive(R: torch.Tensor, z: torch.Tensor, x: torch.Tensor, rule: str, lr: float, sf: bool, kappa: float):
    """Form C, then the matrix product (the d³ form the module must avoid)."""
    k, d = z.shape
    C = z.T @ z / k
    if sf:
        C = C / C.diagonal().mean()
    C_off = C - torch.diag(C.diagonal())
    eye = torch.eye(d, dtype=R.dtype)
    if rule == "scaled":
        s = (x.norm(dim=1) / (z.norm(dim=1) + 1e-8)).mean()
        return s * R - lr * (s * R) @ C
    if rule == "scaled_left":
        s = (x.norm(dim=1) / (z.norm(dim=1) + 1e-8)).mean()
        return s * R - lr * C @ (s * R)
    if rule == "offdiag":
        return R - lr * C_off @ R
    if rule == "whiten":
        return R - lr * (C - eye) @ R
    return R - lr * ((1 - kappa) * C_off @ R + kappa * torch.diag(C.diagonal() - 1) @ R)


class _MatmulShapes(TorchFunctionMode):
    """Records operand shapes of every matrix product."""

    def __init__(self) -> None:
        super().__init__()
        self.shapes: list[tuple[tuple[int, ...], tuple[int, ...]]] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in (torch.matmul, torch.Tensor.matmul, torch.Tensor.__matmul__, torch.mm, torch.Tensor.mm):
            self.shapes.append((tuple(args[0].shape), tuple(args[1].shape)))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("scale_free", [False, True])
@pytest.mark.parametrize("rule", DECOR_RULES)
def test_fast_form_matches_naive_float64(rule: str, scale_free: bool) -> None:
    g = torch.Generator().manual_seed(3)
    d, k = 24, 5
    R = torch.eye(d, dtype=torch.float64) + 0.1 * torch.randn(d, d, generator=g, dtype=torch.float64)
    x = torch.randn(k, d, generator=g, dtype=torch.float64) + 0.5
    z = (x - 0.1) @ R.T
    with _MatmulShapes() as rec:
        fast = decor_update(R, z, x, rule=rule, lr=0.03, scale_free=scale_free, kappa=0.4)
    torch.testing.assert_close(fast, _naive(R, z, x, rule, 0.03, scale_free, 0.4), rtol=1e-12, atol=1e-12)
    assert rec.shapes, "no matrix products recorded"
    for a, b in rec.shapes:  # every product has k as an inner or outer dimension: never d×d @ d×d
        assert not (a == (d, d) and b == (d, d)), (a, b)
    with _MatmulShapes() as control:  # the recorder does see the d³ product of the naive form
        _naive(R, z, x, rule, 0.03, scale_free, 0.4)
    assert ((d, d), (d, d)) in control.shapes


def test_forward_training_step_has_no_d_cubed_product() -> None:
    d, n = 32, 64
    m = Decorrelator(d, rule="kappa", lr=1e-3)
    x = torch.randn(n, d)
    with _MatmulShapes() as rec:
        m(x)
    assert all(not (a == (d, d) and b == (d, d)) for a, b in rec.shapes), rec.shapes


# ----------------------------------------------------------------------------------------------------------
# Acceptance: correlated Gaussian inputs, d = 64, ρ = 0.3


@pytest.mark.parametrize("rule", ["scaled", "offdiag"])
def test_acceptance_decorrelates_correlated_gaussian(rule: str) -> None:
    d, rho = 64, 0.3
    cov = (1 - rho) * torch.eye(d) + rho * torch.ones(d, d)
    chol = torch.linalg.cholesky(cov)
    g = torch.Generator().manual_seed(0)
    m = Decorrelator(d, rule=rule)  # default lr 1e-3
    assert m.lr == 1e-3
    for _ in range(2000):
        m(_correlated(256, d, rho, g, chol))
    m.check_finite(rule)
    m.eval()
    x_test = _correlated(4096, d, rho, g, chol)
    before = mean_abs_offdiag_corr(x_test)
    with torch.no_grad():
        z = m(x_test)
    assert torch.isfinite(z).all()
    residual = mean_abs_offdiag_corr(z)
    assert before > 0.25  # the inputs really are correlated
    # measured (seed 0): scaled 0.0135, offdiag 0.0132; 4096 independent samples alone give ≈ 0.0122
    assert residual <= 0.02, residual
    # the population value from R Σ Rᵀ (no sampling noise), measured ≈ 0.005 for both rules
    S = m.R.double() @ cov.double() @ m.R.double().T
    sd = S.diagonal().sqrt()
    pop = (S / sd[:, None] / sd[None, :])[~torch.eye(d, dtype=torch.bool)].abs().mean().item()
    assert pop <= 0.01, pop


def _scaled_toy_condition(rule: str, lr: float, seed: int = 0, d: int = 40, k: int = 7, steps: int = 1000) -> float:
    """Condition number of the population ⟨z zᵀ⟩ = R Σ Rᵀ after ``steps`` updates of ``rule`` from R = I, each from
    k rows of a d-dimensional Gaussian with covariance eigenvalues 10 … 0.1 (condition number 100), float64."""
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    A = Q * (10.0 * torch.logspace(0, -2, d, dtype=torch.float64)).sqrt()  # x = A ξ: Σ = A Aᵀ
    R = torch.eye(d, dtype=torch.float64)
    for _ in range(steps):
        x = torch.randn(k, d, generator=g, dtype=torch.float64) @ A.T
        R = decor_update(R, x @ R.T, x, rule=rule, lr=lr)
    lam = torch.linalg.eigvalsh(R @ A @ A.T @ R.T)
    return (lam[-1] / lam[0].abs()).item()


def test_scaled_left_stays_conditioned_where_the_papers_right_form_loses_rank() -> None:
    """The issue's toy (d = 40, input condition number 100, 7 rows per update, η = 0.01): the paper's right-multiplied
    ``scaled`` collapses ⟨z zᵀ⟩ to a lower rank (measured cond 1e17 on seeds 0-2: the batch ⟨z zᵀ⟩ reaches
    λ_max 460-670, η·λ > 2), the left-multiplied ``scaled_left`` keeps it near white (3.9-4.3); at η = 3e-3 the two
    agree (2.5-2.8 vs 2.0-2.1). Both start from R = I, so the first steps are identical: the forms differ."""
    assert _scaled_toy_condition("scaled", 0.01) > 1e6
    assert _scaled_toy_condition("scaled_left", 0.01) < 10
    small = [_scaled_toy_condition(rule, 3e-3, steps=300) for rule in SCALED_RULES]
    assert max(small) < 10


def test_scaled_left_is_the_left_product_and_differs_from_scaled() -> None:
    g = torch.Generator().manual_seed(8)
    d, k, lr = 6, 4, 0.05
    R = torch.eye(d, dtype=torch.float64) + 0.3 * torch.randn(d, d, generator=g, dtype=torch.float64)
    x = torch.randn(k, d, generator=g, dtype=torch.float64) + 0.4
    z = x @ R.T
    C = z.T @ z / k
    s = (x.norm(dim=1) / (z.norm(dim=1) + 1e-8)).mean()
    left = decor_update(R, z, x, rule="scaled_left", lr=lr)
    right = decor_update(R, z, x, rule="scaled", lr=lr)
    torch.testing.assert_close(left, s * (R - lr * C @ R), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(right, s * (R - lr * R @ C), rtol=1e-12, atol=1e-12)
    assert (left - right).abs().max() > 1e-3  # a non-symmetric R: R C ≠ C R


# ----------------------------------------------------------------------------------------------------------
# Modes, scale, state


def test_eval_mode_uses_running_mean_and_never_updates() -> None:
    g = torch.Generator().manual_seed(4)
    m = Decorrelator(6, rule="whiten", lr=0.05, mean_momentum=0.2)
    x1, x2 = torch.randn(30, 6, generator=g) + 2.0, torch.randn(30, 6, generator=g) - 1.0
    m(x1)
    m(x2)
    expected_rm = 0.8 * (0.2 * x1.mean(0)) + 0.2 * x2.mean(0)  # μ_run ← (1−m) μ_run + m μ_batch, from 0
    torch.testing.assert_close(m.running_mean, expected_rm)
    m.eval()
    R, rm = m.R.clone(), m.running_mean.clone()
    x3 = torch.randn(25, 6, generator=g) * 3 + 5
    for _ in range(3):
        z = m(x3)
    torch.testing.assert_close(m.R, R, rtol=0, atol=0)
    torch.testing.assert_close(m.running_mean, rm, rtol=0, atol=0)
    torch.testing.assert_close(z, (x3 - rm) @ R.T)
    torch.testing.assert_close(m.transform(x3), z)


@pytest.mark.parametrize("rule", ["whiten", "centre"])
def test_running_centring_uses_the_mean_from_before_the_batch(rule: str) -> None:
    """``running`` centring (the FPGA unit's streaming form): a batch is centred with the running mean as it
    was before that batch, the mean then moves towards the batch mean, and no gradient flows through it."""
    g = torch.Generator().manual_seed(5)
    m = Decorrelator(6, rule=rule, lr=0.05, mean_momentum=0.25, centring="running")
    batch = Decorrelator(6, rule=rule, lr=0.05, mean_momentum=0.25)
    x1, x2 = torch.randn(30, 6, generator=g) + 2.0, torch.randn(30, 6, generator=g) - 1.0
    z1 = m(x1)
    torch.testing.assert_close(z1, x1)  # first batch: running mean 0, R = I before the update
    assert not torch.allclose(batch(x1), x1)  # the batch form centres with x1's own mean
    torch.testing.assert_close(m.running_mean, 0.25 * x1.mean(0))
    R = m.R.clone()
    x2.requires_grad_(True)
    z2 = m(x2)
    torch.testing.assert_close(z2, (x2 - 0.25 * x1.mean(0)) @ R.T)
    torch.testing.assert_close(m.running_mean, 0.75 * 0.25 * x1.mean(0) + 0.25 * x2.mean(0))
    z2.sum().backward()  # d(sum z)/dx = column sums of R (no term through a batch mean)
    torch.testing.assert_close(x2.grad, R.sum(0).expand_as(x2))


def test_unknown_centring_is_one_line_error() -> None:
    with pytest.raises(ConfigError, match="centring"):
        Decorrelator(4, centring="batchwise")


@pytest.mark.parametrize("rule", DECOR_RULES)
def test_scale_free_step_does_not_grow_with_input_scale(rule: str) -> None:
    g = torch.Generator().manual_seed(5)
    x = _correlated(64, 10, 0.4, g)
    steps = {}
    for sf in (False, True):
        for scale in (1.0, 10.0):
            m = Decorrelator(10, rule=rule, lr=1e-3, scale_free=sf)
            m(x * scale)
            steps[sf, scale] = (m.R - torch.eye(10)).norm().item()
    # scale-free: the same step for 10× larger inputs (it is scale invariant)
    assert steps[True, 10.0] == pytest.approx(steps[True, 1.0], rel=1e-4)
    if rule not in SCALED_RULES:  # plain rules: the correlation term grows ~100× (s·R absorbs it for `scaled`)
        assert steps[False, 10.0] > 20 * steps[False, 1.0]
    else:
        assert steps[False, 10.0] > 2 * steps[False, 1.0]


def test_state_dict_round_trip() -> None:
    g = torch.Generator().manual_seed(6)
    a = DecorLinear(8, 3, rule="kappa", lr=0.01)
    for _ in range(5):
        a(torch.randn(32, 8, generator=g) + 1)
    assert set(a.state_dict()) == {"decor.R", "decor.running_mean", "linear.weight", "linear.bias"}
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    b = DecorLinear(8, 3, rule="kappa", lr=0.01)
    b.load_state_dict(torch.load(buf, weights_only=True))
    torch.testing.assert_close(b.decor.R, a.decor.R, rtol=0, atol=0)
    torch.testing.assert_close(b.decor.running_mean, a.decor.running_mean, rtol=0, atol=0)
    a.eval(), b.eval()
    xt = torch.randn(10, 8, generator=g)
    torch.testing.assert_close(b(xt), a(xt), rtol=0, atol=0)
    a.train(), b.train()
    a(xt), b(xt)  # continuing training from the loaded state gives the same R
    torch.testing.assert_close(b.decor.R, a.decor.R, rtol=0, atol=0)


# ----------------------------------------------------------------------------------------------------------
# Layers


def test_decor_linear_shapes_and_gradients() -> None:
    g = torch.Generator().manual_seed(8)
    layer = DecorLinear(7, 4, rule="offdiag", lr=0.05)
    layer.decor.R.copy_(torch.eye(7) + 0.3 * torch.randn(7, 7, generator=g))
    R_used = layer.decor.R.clone()
    x = torch.randn(16, 7, generator=g, requires_grad=True)
    up = torch.randn(16, 4, generator=g)
    y = layer(x)
    assert y.shape == (16, 4)
    (y * up).sum().backward()
    W = layer.linear.weight.detach()
    z = (x.detach() - x.detach().mean(0)) @ R_used.T
    torch.testing.assert_close(layer.linear.weight.grad, up.T @ z)
    torch.testing.assert_close(layer.linear.bias.grad, up.sum(0))
    gz = up @ W  # dL/dz; BP through the centring with R fixed (the pre-update R)
    gx = gz @ R_used
    torch.testing.assert_close(x.grad, gx - gx.mean(0))
    assert not layer.decor.R.requires_grad and layer.decor.R.grad is None
    assert [n for n, _ in layer.named_parameters()] == ["linear.weight", "linear.bias"]


@pytest.mark.parametrize("stride,padding,dilation", [(1, 0, 1), (2, 1, 1), ((1, 2), (2, 0), 1), (1, 1, 2)])
def test_decor_conv_matches_conv_at_identity(stride, padding, dilation) -> None:
    g = torch.Generator().manual_seed(9)
    layer = DecorConv2d(3, 5, (3, 2), stride=stride, padding=padding, dilation=dilation)
    layer.eval()  # R = I, running_mean = 0: exactly a conv with the layer's weight
    x = torch.randn(4, 3, 9, 8, generator=g)
    y = layer(x)
    g_ = layer.conv
    ref = F.conv2d(x, layer.conv_weight, layer.linear.bias, g_.stride, g_.padding, g_.dilation)
    assert y.shape == ref.shape
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)


def test_decor_conv_training_update_and_gradients() -> None:
    g = torch.Generator().manual_seed(10)
    layer = DecorConv2d(2, 4, 3, stride=2, padding=1, rule="offdiag", lr=0.01, sample_frac=0.25)
    assert layer.decor.num_features == 2 * 3 * 3
    x = (torch.randn(8, 2, 7, 7, generator=g) + 0.5).requires_grad_(True)
    y = layer(x)
    assert y.shape == (8, 4, 4, 4)
    up = torch.randn_like(y)
    (y * up).sum().backward()
    # expected: same patches, decorrelated with the pre-update R and the batch mean over samples × positions
    P = F.unfold(x.detach(), 3, padding=1, stride=2).transpose(1, 2)  # (N, L, 18)
    z = (P - P.reshape(-1, 18).mean(0)) @ torch.eye(18).T
    up_rows = up.flatten(2).transpose(1, 2)  # (N, L, out)
    grad_w = torch.einsum("nlo,nlf->of", up_rows, z)
    torch.testing.assert_close(layer.linear.weight.grad, grad_w, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(layer.linear.bias.grad, up.sum((0, 2, 3)), rtol=1e-4, atol=1e-4)
    assert x.grad is not None and torch.isfinite(x.grad).all()
    # R update: offdiag on the first k = floor(0.25·128)+1 = 33 of the 8·16 patch rows (what training does)
    Zk = z.reshape(-1, 18)[:33].double()
    C = Zk.T @ Zk / len(Zk)
    expected_R = torch.eye(18, dtype=torch.float64) - 0.01 * (C - torch.diag(C.diagonal()))
    torch.testing.assert_close(layer.decor.R.double(), expected_R, rtol=1e-5, atol=1e-6)


def test_decor_conv_decorrelates_patches() -> None:
    g = torch.Generator().manual_seed(11)
    layer = DecorConv2d(1, 2, 3, padding=1, rule="scaled", lr=1e-2)
    smooth = torch.ones(1, 1, 3, 3) / 3  # unit-variance pixels, neighbours correlated

    def batch() -> torch.Tensor:
        return F.conv2d(torch.randn(32, 1, 12, 12, generator=g), smooth, padding=1)

    x = batch()
    before = mean_abs_offdiag_corr(layer.to_rows(x))
    for _ in range(400):
        layer(batch())
    layer.eval()
    with torch.no_grad():
        after = mean_abs_offdiag_corr(layer.decor(layer.to_rows(batch())))
    assert before > 0.3 and after < 0.1 * before, (before, after)


# ----------------------------------------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize(
    "kwargs,needle",
    [
        ({"rule": "scaeld"}, "'scaled'"),
        ({"rule": "whitten"}, "'whiten'"),
        ({"sample_frac": 0.0}, "sample_frac"),
        ({"sample_frac": 1.5}, "sample_frac"),
        ({"lr": 0.0}, "lr"),
        ({"lr": -1e-3}, "lr"),
        ({"lr": float("nan")}, "lr"),
        ({"kappa": 1.2}, "kappa"),
        ({"kappa": -0.1}, "kappa"),
        ({"mean_momentum": 2.0}, "mean_momentum"),
        ({"rule": "zca", "zca_eps": 0.0}, "zca_eps"),
        ({"rule": "zca", "zca_eps": float("nan")}, "zca_eps"),
    ],
)
def test_config_errors(kwargs: dict, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        Decorrelator(4, **kwargs)


@pytest.mark.parametrize("n", [0, -3])
def test_num_features_must_be_positive(n: int) -> None:
    with pytest.raises(ConfigError, match="num_features"):
        Decorrelator(n)


def test_unknown_rule_through_layers() -> None:
    expected = r"unknown decorrelation rule 'ofdiag' \(did you mean 'offdiag'\?\); choose from scaled, offdiag, "
    with pytest.raises(ConfigError, match=expected + "whiten, kappa"):
        DecorLinear(3, 2, rule="ofdiag")
    with pytest.raises(ConfigError, match="did you mean 'kappa'"):
        DecorConv2d(1, 2, 3, rule="kapa")


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("training", [True, False])
def test_non_finite_input_is_data_error(bad: float, training: bool) -> None:
    m = Decorrelator(4).train(training)
    x = torch.randn(8, 4)
    x[3, 2] = bad
    with pytest.raises(DataError, match="NaN or Inf"):
        m(x)
    torch.testing.assert_close(m.R, torch.eye(4), rtol=0, atol=0)


def test_feature_count_mismatch_names_both_numbers() -> None:
    with pytest.raises(DataError, match=r"5 features but the layer expects 4"):
        Decorrelator(4)(torch.randn(3, 5))
    with pytest.raises(DataError, match=r"\(N, 3, H, W\)"):
        DecorConv2d(3, 2, 3)(torch.randn(2, 4, 8, 8))


def test_divergence_raised_in_forward_and_r_kept_finite() -> None:
    m = Decorrelator(8, rule="offdiag", lr=0.5)
    m.name = "layers.0.decor"
    g = torch.Generator().manual_seed(12)
    with pytest.raises(DivergenceError) as info:
        for _ in range(200):
            m(_correlated(64, 8, 0.9, g) * 100)
    msg = str(info.value)
    assert "layers.0.decor" in msg and "0.5" in msg and "0.05" in msg and "scale_free=True" in msg
    assert torch.isfinite(m.R).all()  # the non-finite update was not committed
    m.check_finite("layers.0.decor")  # state stays usable (e.g. for a checkpoint)


def test_scale_free_survives_where_plain_rule_diverges() -> None:
    g = torch.Generator().manual_seed(12)
    m = Decorrelator(8, rule="offdiag", lr=0.05, scale_free=True)
    for _ in range(200):
        m(_correlated(64, 8, 0.9, g) * 100)
    m.check_finite("x")


def test_check_finite_names_layer_and_cause() -> None:
    m = Decorrelator(4, lr=3e-3)
    m.check_finite("fc1")  # healthy: no error
    m.R[1, 2] = float("nan")
    pattern = r"'fc1'.*lr 0.003.*decor_lr=0.0003 \(10× smaller\).*scale_free=True"
    with pytest.raises(DivergenceError, match=pattern):
        m.check_finite("fc1")
    m2 = Decorrelator(4)
    m2.running_mean[0] = float("inf")
    with pytest.raises(DivergenceError, match="'fc2'.*running mean"):
        m2.check_finite("fc2")


def test_centre_baseline_only_demeans_and_never_moves_R():
    torch.manual_seed(0)
    dec = Decorrelator(5, rule="centre", lr=1e-1)
    x = torch.randn(64, 5) @ torch.randn(5, 5) + 3.0
    z = dec(x)
    torch.testing.assert_close(z, x - x.mean(0))
    assert torch.equal(dec.R, torch.eye(5))
    torch.testing.assert_close(dec.running_mean, 0.1 * x.mean(0))
    dec.eval()
    torch.testing.assert_close(dec(x), x - dec.running_mean)
    # the correlation of z is that of x: centring does not decorrelate
    c = torch.corrcoef(z.T)
    assert (c - torch.eye(5)).abs().max() > 0.1
    with pytest.raises(ConfigError, match="offdiag"):
        Decorrelator(5, rule="ofdiag")


# ----------------------------------------------------------------------------------------------------------
# One family: the layers a user builds are the layers `analogdecorr train` trains


def test_build_model_builds_the_public_layers() -> None:
    from analogdecorr.config import resolve
    from analogdecorr.models import build_model

    mlp = build_model(resolve({}, {"hidden": [6], "decor": "offdiag"}), (8,), 3)
    assert [type(layer) for layer in mlp.layers] == [DecorLinear, DecorLinear]
    torch.manual_seed(0)
    user = DecorLinear(8, 6, act=torch.nn.LeakyReLU(), rule="offdiag", lr=1e-4)
    user.load_state_dict(mlp.layers[0].state_dict())
    x = torch.randn(16, 8)
    torch.testing.assert_close(user(x), mlp.layers[0](x), rtol=0, atol=0)  # same computation, same R update
    torch.testing.assert_close(user.decor.R, mlp.layers[0].decor.R, rtol=0, atol=0)

    conv = build_model(resolve({}, {"model": "conv", "conv_channels": [4], "decor": "none"}), (1, 8, 8), 3)
    assert [type(layer) for layer in conv.layers] == [DecorConv2d, DecorLinear]
    assert conv.layers[0].decor is None and conv.layers[0].conv.positions == 64


def test_conv_layer_without_input_size_runs_but_cannot_map_rows_back() -> None:
    layer = DecorConv2d(1, 2, 3, padding=1, rule="offdiag", lr=1e-3)
    assert layer(torch.randn(2, 1, 5, 7)).shape == (2, 2, 5, 7)  # any input size in a forward pass
    with pytest.raises(ConfigError, match=r"input_size=\(H, W\)"):
        layer.from_rows(torch.zeros(70, 2), 2)
    sized = DecorConv2d(1, 2, 3, padding=1, input_size=(5, 7))
    assert sized.from_rows(torch.zeros(70, 2), 2).shape == (2, 2, 5, 7)


def test_decorrelator_options_and_a_given_decorrelator_exclude_each_other() -> None:
    assert DecorLinear(4, 2, decorrelator=None).decor is None
    with pytest.raises(ConfigError, match="either"):
        DecorLinear(4, 2, decorrelator=None, rule="offdiag")


# ----------------------------------------------------------------------------------------------------------
# The zca oracle: R = exact ZCA whitening of the layer's training inputs, refitted per epoch, never learned.


def _equicorrelated(n: int, d: int, rho: float, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    eps = torch.randn(n, d, generator=g)
    m = eps.mean(1, keepdim=True)
    return (1 - rho) ** 0.5 * (eps - m) + (1 + (d - 1) * rho) ** 0.5 * m + 2.0


@pytest.mark.parametrize("model", ["mlp", "conv"])
def test_refit_zca_whitens_every_layer_input_over_the_training_set(model: str) -> None:
    torch.manual_seed(0)
    if model == "mlp":
        x, shape = _equicorrelated(3000, 12, 0.9), (12,)
        cfg = resolve({}, {"hidden": "20,10", "decor": "zca", "model": "mlp"})
    else:  # patches of smoothed images: correlated neighbouring pixels
        noise = torch.randn(2000, 1, 6, 6)
        x = (noise + 2 * F.avg_pool2d(noise, 3, stride=1, padding=1)).flatten(1) + 1.0
        shape = (1, 6, 6)
        cfg = resolve({}, {"conv_channels": "3", "decor": "zca", "model": "conv"})
    net = build_model(cfg, shape, 3)
    before = [input_cov(z) for _, z in net.layer_inputs(x)]
    assert refit_zca(net, x, chunk=700) == len(net.layers)
    for i, (_, z) in enumerate(net.layer_inputs(x)):
        cov = input_cov(z)
        eye = torch.eye(cov.shape[0], dtype=cov.dtype)
        assert (cov - eye).abs().max() < 0.05, (i, (cov - eye).abs().max())  # ε: λ/(λ + ε) on small λ
        assert (before[i] - eye).abs().max() > 0.2  # the input was not white before the fit
        torch.testing.assert_close(z.double().mean(0), torch.zeros(cov.shape[0], dtype=cov.dtype), atol=1e-4,
                                   rtol=0)  # centred: the running mean is the training set's mean


def input_cov(z: torch.Tensor) -> torch.Tensor:
    z = z.double()
    c = z - z.mean(0)
    return c.T @ c / z.shape[0]


def test_zca_training_forward_never_moves_R_and_eps_floors_dead_directions() -> None:
    x = _equicorrelated(500, 6, 0.8)
    x[:, 2] = 4.0  # no variance: ε keeps its gain finite
    dec = Decorrelator(6, rule="zca", lr=1.0, zca_eps=1e-2)
    xd = x.double()
    dec.fit_zca(xd.mean(0), torch.cov(xd.T, correction=0))
    R = dec.R.clone()
    assert torch.isfinite(R).all() and R.abs().max() < 30
    z = dec(x)  # training forward: batch centring, R fixed
    assert torch.equal(dec.R, R)
    torch.testing.assert_close(z, (x - x.mean(0)) @ R.T)
    assert refit_zca(build_model(resolve({}, {"hidden": "4", "decor": "whiten"}), (6,), 2), x) == 0


def test_zca_is_not_a_fixed_point_rule() -> None:
    with pytest.raises(ConfigError, match=r"^decor_numerics = fixed runs the FPGA unit.*not decor 'zca'"):
        build_model(resolve({}, {"decor": "zca", "decor_numerics": "fixed", "hidden": "4"}), (6,), 2)


def _np_run(tmp_path, decor: str, **kw) -> dict:
    from analogdecorr.train import Trainer

    cfg = resolve({}, {"dataset": "correlated", "rho": 0.9, "n_samples": 2000, "hidden": "100", "rule": "np",
                       "decor": decor, "optimizer": "sgd", "lr": 0.02, "sigma": 0.1, "batch_size": 32,
                       "probe_size": 0, "out": str(tmp_path / decor), **kw})
    return Trainer(cfg, progress=False, log=lambda m: None).run()


def test_np_learns_faster_with_the_zca_oracle_than_without_decorrelation(tmp_path) -> None:
    """correlated ρ = 0.9, 64-100-10, NP at SGD lr 0.02 (measured: the oracle's train loss falls every epoch to
    1.42 at epoch 8 while none stalls above 1.9, on seeds 0 and 1)."""
    oracle_run = _np_run(tmp_path, "zca", epochs=7)
    oracle = [e["train_loss"] for e in oracle_run["epochs"]]
    plain = [e["train_loss"] for e in _np_run(tmp_path, "none", epochs=7)["epochs"]]
    assert min(oracle) < min(plain) - 0.2, (oracle, plain)
    assert not {"zz_cond", "grad_cosine"} & set(oracle_run["epochs"][0])  # probe_size 0: diagnostics off


def test_zca_oracle_trains_on_the_analog_backend(tmp_path) -> None:
    result = _np_run(tmp_path, "zca", epochs=1, backend="analog", preset="FloatingPointPreset", n_samples=400,
                     drift_times=[], probe_size=64)
    row = result["epochs"][0]
    assert math.isfinite(row["train_loss"]) and len(row["grad_cosine"]) == 2
    assert row["zz_cond"][0] < 3  # layer 0 is white over the probe rows (its R is the data's)
