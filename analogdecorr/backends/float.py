"""The float backend: weights are ordinary ``nn.Linear`` parameters trained by a torch optimizer."""

from __future__ import annotations

import torch
from torch import Tensor

from ..models import Layer


class GradientUpdater:
    """Turns a local rule's (z, d) into ``.grad`` (G = dᵀ z, bias d summed) and steps the optimizer once per batch,
    so local rules get the same optimizer (Adam/SGD, weight decay, schedule) as backprop."""

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer

    def begin(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)

    def apply(self, layer: Layer, z: Tensor, d: Tensor) -> None:
        lin = layer.linear
        lin.weight.grad = d.T @ z
        if lin.bias is not None:
            lin.bias.grad = d.sum(0)

    def finish(self) -> None:
        self.optimizer.step()


def make_optimizer(cfg, params) -> torch.optim.Optimizer:
    """Adam or SGD (with momentum) at ``cfg.lr`` with ``cfg.weight_decay``."""
    params = [p for p in params if p.requires_grad]
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
