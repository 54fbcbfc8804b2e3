"""Learning rules: how every layer of a ``Network`` gets its weight update.

Backprop (``bp``) uses autograd and the backend's optimizer. The local rules (``fa``, ``dfa``, ``np``) compute,
for every layer, the pair (z, d) whose product G = dᵀ z is the layer's gradient estimate (d already contains the
1/N of the batch mean) and hand it to the backend's ``WeightUpdater``: the float backend turns it into ``.grad``
for its optimizer, the analog backend into the crossbar's own pulsed outer-product update. No rule knows which
backend it runs on.
"""

from __future__ import annotations

import math
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .choices import check_choice
from .errors import ConfigError
from .models import Layer, Network

RULES = ("bp", "fa", "dfa", "np")


class WeightUpdater(Protocol):
    """Delivers a layer's update (z, d), G = dᵀ z, to wherever its weights live."""

    def begin(self) -> None: ...

    def apply(self, layer: Layer, z: Tensor, d: Tensor) -> None: ...

    def finish(self) -> None: ...


def _to_rows(layer: Layer, t: Tensor) -> Tensor:
    """A tensor in the layer's output shape → rows (N·positions × out_features), matching the linear map's rows."""
    if layer.conv is None:
        return t.reshape(t.shape[0], -1)
    n, c = t.shape[:2]
    return t.reshape(n, c, -1).transpose(1, 2).reshape(-1, c)


def _act_grad(layer: Layer, a: Tensor, grad_h: Tensor) -> Tensor:
    """grad_h ⊙ f'(a): the activation's local derivative, via autograd on the activation alone."""
    if isinstance(layer.act, nn.Identity):
        return grad_h
    with torch.enable_grad():
        a = a.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(layer.act(a), a, grad_outputs=grad_h)
    return g


class Rule(nn.Module):
    """One training step for a network; holds the rule's own state (feedback matrices, noise generator)."""

    name = "rule"

    def step(self, net: Network, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """Update the network on one batch; return (mean loss, logits) of the clean forward pass."""
        raise NotImplementedError


class Backprop(Rule):
    """Autograd through every layer (and through the decorrelators' centring, not their R)."""

    name = "bp"

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        super().__init__()
        self.optimizer = optimizer

    def step(self, net: Network, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        self.optimizer.zero_grad(set_to_none=True)
        logits = net(x)
        loss = F.cross_entropy(logits, y)
        loss.backward()
        self.optimizer.step()
        return loss.detach(), logits.detach()


class _Traced(Rule):
    """Shared by the local rules: a forward pass that keeps every layer's rows z and pre-activation a."""

    def __init__(self, updater: WeightUpdater) -> None:
        super().__init__()
        self.updater = updater

    @torch.no_grad()
    def trace(
        self, net: Network, x: Tensor
    ) -> tuple[Tensor, list[Tensor], list[Tensor], list[Tensor | None]]:
        zs, pre, inputs = [], [], []
        h = net.shape_input(x)
        for layer in net.layers:
            inputs.append(h)
            rows = layer.to_rows(h)
            z = layer.decor(rows) if layer.decor is not None else rows
            a = layer.from_rows(layer.linear(z), h.shape[0])
            zs.append(z)
            pre.append(a)
            h = layer.act(a)
        return h, zs, pre, inputs


class FeedbackAlignment(_Traced):
    """``fa``: the error travels down through fixed random matrices B (shaped like W) instead of Wᵀ;
    ``dfa``: the output error reaches every hidden layer directly through its own fixed random matrix."""

    def __init__(
        self, net: Network, updater: WeightUpdater, direct: bool, generator: torch.Generator
    ) -> None:
        super().__init__(updater)
        self.direct = direct
        self.name = "dfa" if direct else "fa"
        self.feedback = nn.ParameterList()
        for i, layer in enumerate(net.layers):
            out_f, in_f = layer.linear.out_features, layer.linear.in_features
            if direct:
                if i == len(net.layers) - 1:
                    b = torch.zeros(0)
                else:
                    width = out_f * (layer.conv.positions if layer.conv else 1)
                    b = (torch.rand(net.n_classes, width, generator=generator) * 2 - 1) / math.sqrt(
                        net.n_classes
                    )
            else:
                b = (torch.rand(out_f, in_f, generator=generator) * 2 - 1) / math.sqrt(in_f)
            self.feedback.append(nn.Parameter(b, requires_grad=False))

    @torch.no_grad()
    def step(self, net: Network, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        logits, zs, pre, inputs = self.trace(net, x)
        n = x.shape[0]
        err = (torch.softmax(logits, 1) - F.one_hot(y, net.n_classes).to(logits.dtype)) / n
        self.updater.begin()
        last = len(net.layers) - 1
        grad_a = err
        for i in range(last, -1, -1):
            layer = net.layers[i]
            if self.direct and i < last:
                shaped = (err @ self.feedback[i]).reshape(pre[i].shape)
                grad_a = _act_grad(layer, pre[i], shaped)
            d = _to_rows(layer, grad_a)
            self.updater.apply(layer, zs[i], d)
            if not self.direct and i > 0:
                grad_z = d @ self.feedback[i]
                if layer.decor is not None:
                    grad_z = grad_z @ layer.decor.last_R  # the R this forward pass used
                grad_h = layer.rows_to_input(grad_z, n).reshape(pre[i - 1].shape)
                grad_a = _act_grad(net.layers[i - 1], pre[i - 1], grad_h)
        self.updater.finish()
        return F.cross_entropy(logits, y), logits


class NodePerturbation(_Traced):
    """``np``: a clean and a perturbed forward pass (ξ = σ ε on every pre-activation), per-sample loss
    difference δL, and G = (1/N) Σₙ (δLₙ / σ²) ξₙ zₙᵀ for every layer. No backward pass, no autograd graph.

    ``antithetic``: the clean pass is replaced by a second perturbed pass with −ξ (the same draw, opposite sign),
    and G = (1/N) Σₙ ((L₊ − L₋)ₙ / 2σ²) ξₙ z̄ₙᵀ, the central difference. Same number of forward reads per sample
    (two) and the same mean to O(σ²); what it removes is every even-order term of δL (the curvature ½ ξᵀHξ, whose
    noise grows with σ) and half the amplitude of read noise relative to the signal (L₊ − L₋ carries 2 ξ·g), so on
    noisy tiles the read-noise part of the variance falls four-fold. It cannot reduce the first-order part
    (ξ·g) ξ, which ±ξ share. Pairing ±ξ across two *samples* of a batch was the alternative; it reduces nothing
    (the two samples' terms are independent anyway) and correlates their errors. Without a clean pass, a hidden
    layer's input z̄ is the mean of its two perturbed inputs (= clean + O(σ²)); the decorrelators learn from z̄
    and the reported loss is (L₊ + L₋)/2.

    ``perturbations`` K > 1: the batch runs K times with independent ξ, and each sample's K estimates are averaged
    into one (z, d) row per sample before the update (z: the mean of its K reads, equal up to read noise; d: the
    sum of its K rows, each already carrying 1/(K·N)). G keeps its mean and the noise of the estimate falls about
    K-fold, at K× the forward reads; the device sees as many update rows as with K = 1. The decorrelators learn
    from the K-fold batch (its sample_frac of K·N rows; with batch centring the same mean)."""

    name = "np"

    def __init__(
        self, updater: WeightUpdater, sigma: float, generator: torch.Generator, antithetic: bool = False,
        perturbations: int = 1,
    ) -> None:
        super().__init__(updater)
        if not (sigma > 0 and math.isfinite(sigma)):
            raise ConfigError(f"sigma must be a positive finite number (got {sigma}); try --sigma 1e-3.")
        if isinstance(perturbations, bool) or int(perturbations) != perturbations or perturbations < 1:
            raise ConfigError(f"perturbations must be a whole number >= 1 (got {perturbations!r}); 1 is plain NP.")
        self.sigma = sigma
        self.generator = generator
        self.antithetic = bool(antithetic)
        self.perturbations = int(perturbations)
        self.last_delta: Tensor | None = None  # per-sample δL of the last step (for diagnostics)

    @torch.no_grad()
    def estimate(
        self, net: Network, x: Tensor, y: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor, list[tuple[Tensor, Tensor]], Tensor]:
        """One NP estimate on (x, y) without applying it: (per-sample loss, logits, [(z, d)] per layer with
        G = dᵀ z in the layer's rows, per-sample δL), averaged over ``perturbations`` draws (class docstring).
        ``generator`` draws ξ (default: the rule's own).

        The decorrelators run their usual forward (in training mode that updates R, as in ``step``)."""
        k, n = self.perturbations, x.shape[0]
        if k == 1:
            return self._estimate_once(net, x, y, generator)
        loss, logits, updates, delta = self._estimate_once(net, x.repeat(k, *([1] * (x.dim() - 1))), y.repeat(k),
                                                           generator)
        rows = [(z.reshape(k, -1, z.shape[-1]).mean(0), d.reshape(k, -1, d.shape[-1]).sum(0)) for z, d in updates]
        return loss.reshape(k, n).mean(0), logits.reshape(k, n, -1).mean(0), rows, delta.reshape(k, n).mean(0)

    def _estimate_once(
        self, net: Network, x: Tensor, y: Tensor, generator: torch.Generator | None
    ) -> tuple[Tensor, Tensor, list[tuple[Tensor, Tensor]], Tensor]:
        """``estimate`` with one draw of ξ per sample."""
        gen = self.generator if generator is None else generator
        n = x.shape[0]
        # The two passes run in lockstep, stacked into one read of each layer (2N rows; the rows of a batch are
        # independent reads, so this is the same arithmetic as two calls, at half the per-call cost on a tile).
        # The first layer's input is the same in both passes, so its read is made once and only ±ξ is added.
        # Each decorrelator updates R after computing z, so the second pass's rows use the R and centring the
        # first used (last_R, last_mean). Plain: passes (clean, +ξ); antithetic: (+ξ, −ξ).
        sign = -1.0 if self.antithetic else 0.0  # ξ multiplier of the first pass
        zs, xis = [], []
        h = net.shape_input(x)
        h_b: Tensor | None = None  # the second pass (None while equal to the first: before any ξ was added)
        for layer in net.layers:
            rows = layer.to_rows(h)
            if h_b is None:
                z = layer.decor(rows) if layer.decor is not None else rows
                a = a_b = layer.from_rows(layer.linear(z), n)
            else:
                rows_b = layer.to_rows(h_b)
                if self.antithetic:  # no clean pass: the decorrelator sees the mean of the two inputs
                    mid = 0.5 * (rows + rows_b)
                    z_mid = layer.decor(mid) if layer.decor is not None else mid
                    z_a = layer.decor.replay_last(rows) if layer.decor is not None else rows
                    z = z_mid
                else:
                    z = z_a = layer.decor(rows) if layer.decor is not None else rows
                if layer.decor is not None:
                    rows_b = layer.decor.replay_last(rows_b)
                out = layer.linear(torch.cat([z_a, rows_b]))
                a = layer.from_rows(out[: z_a.shape[0]], n)
                a_b = layer.from_rows(out[z_a.shape[0] :], n)
            zs.append(z)
            xi = self.sigma * torch.randn(a.shape, generator=gen, dtype=a.dtype)
            xis.append(xi)
            h = layer.act(a + sign * xi) if self.antithetic else layer.act(a)
            h_b = layer.act(a_b + xi)
        loss_a = F.cross_entropy(h, y, reduction="none")
        loss_b = F.cross_entropy(h_b, y, reduction="none")
        delta = loss_b - loss_a
        if self.antithetic:
            loss, logits, scale = 0.5 * (loss_a + loss_b), 0.5 * (h + h_b), delta / (2 * self.sigma**2 * n)
        else:
            loss, logits, scale = loss_a, h, delta / (self.sigma**2 * n)
        updates = []
        for layer, z, xi in zip(net.layers, zs, xis, strict=True):
            d = xi * scale.reshape(-1, *([1] * (xi.dim() - 1)))
            updates.append((z, _to_rows(layer, d)))
        return loss, logits, updates, delta

    @torch.no_grad()
    def step(self, net: Network, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        loss, logits, updates, delta = self.estimate(net, x, y)
        self.last_delta = delta
        self.updater.begin()
        for layer, (z, d) in zip(net.layers, updates, strict=True):
            self.updater.apply(layer, z, d)
        self.updater.finish()
        return loss.mean(), logits


def make_rule(
    name: str, net: Network, *, optimizer, updater: WeightUpdater, sigma: float, seed: int, antithetic: bool = False,
    perturbations: int = 1,
) -> Rule:
    """The rule called ``name`` for this network (ConfigError naming the closest valid rule); ``antithetic`` and
    ``perturbations`` (K draws of ξ per sample) are NP's options (ConfigError for any other rule)."""
    check_choice(name, RULES, "rule")
    if antithetic and name != "np":
        raise ConfigError(f"antithetic perturbations are a node-perturbation option; drop antithetic or use --rule np "
                          f"(rule is {name!r}).")
    if perturbations != 1 and name != "np":
        raise ConfigError(f"perturbations = {perturbations} is a node-perturbation option; drop it or use --rule np "
                          f"(rule is {name!r}).")
    gen = torch.Generator().manual_seed(10_007 * seed + 1)
    if name == "bp":
        return Backprop(optimizer)
    if name in ("fa", "dfa"):
        return FeedbackAlignment(net, updater, direct=name == "dfa", generator=gen)
    return NodePerturbation(updater, sigma, gen, antithetic=antithetic, perturbations=perturbations)
