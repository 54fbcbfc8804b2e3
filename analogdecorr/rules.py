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
    difference δL, and G = (1/N) Σₙ (δLₙ / σ²) ξₙ zₙᵀ for every layer. No backward pass, no autograd graph."""

    name = "np"

    def __init__(self, updater: WeightUpdater, sigma: float, generator: torch.Generator) -> None:
        super().__init__(updater)
        if not (sigma > 0 and math.isfinite(sigma)):
            raise ConfigError(f"sigma must be a positive finite number (got {sigma}); try --sigma 1e-3.")
        self.sigma = sigma
        self.generator = generator
        self.last_delta: Tensor | None = None  # per-sample δL of the last step (for diagnostics)

    @torch.no_grad()
    def step(self, net: Network, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        n = x.shape[0]
        # The clean and the perturbed pass run in lockstep, stacked into one read of each layer (2N rows; the
        # rows of a batch are independent reads, so this is the same arithmetic as two calls, at half the
        # per-call cost on a tile). The first layer's input is the same in both passes, so its clean read is
        # reused and only ξ is added. Each decorrelator updates R after computing the clean z, so the perturbed
        # rows use the R and centring the clean rows used (last_R, last_mean).
        zs, xis = [], []
        h = net.shape_input(x)
        h_pert: Tensor | None = None  # equal to h until the first perturbation is added
        for layer in net.layers:
            rows = layer.to_rows(h)
            z = layer.decor(rows) if layer.decor is not None else rows
            zs.append(z)
            if h_pert is None:
                a = layer.from_rows(layer.linear(z), n)
                a_pert = a
            else:
                rows_p = layer.to_rows(h_pert)
                if layer.decor is not None:
                    rows_p = layer.decor.replay_last(rows_p)
                out = layer.linear(torch.cat([z, rows_p]))
                a = layer.from_rows(out[: z.shape[0]], n)
                a_pert = layer.from_rows(out[z.shape[0] :], n)
            xi = self.sigma * torch.randn(a.shape, generator=self.generator, dtype=a.dtype)
            xis.append(xi)
            h = layer.act(a)
            h_pert = layer.act(a_pert + xi)
        logits = h
        loss_clean = F.cross_entropy(logits, y, reduction="none")
        delta = F.cross_entropy(h_pert, y, reduction="none") - loss_clean
        self.last_delta = delta
        self.updater.begin()
        scale = delta / (self.sigma**2 * n)
        for layer, z, xi in zip(net.layers, zs, xis, strict=True):
            d = xi * scale.reshape(-1, *([1] * (xi.dim() - 1)))
            self.updater.apply(layer, z, _to_rows(layer, d))
        self.updater.finish()
        return loss_clean.mean(), logits


def make_rule(name: str, net: Network, *, optimizer, updater: WeightUpdater, sigma: float, seed: int) -> Rule:
    """The rule called ``name`` for this network (ConfigError naming the closest valid rule)."""
    check_choice(name, RULES, "rule")
    gen = torch.Generator().manual_seed(10_007 * seed + 1)
    if name == "bp":
        return Backprop(optimizer)
    if name in ("fa", "dfa"):
        return FeedbackAlignment(net, updater, direct=name == "dfa", generator=gen)
    return NodePerturbation(updater, sigma, gen)
