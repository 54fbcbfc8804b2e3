"""The float backend: weights are ordinary ``nn.Linear`` parameters trained by a torch optimizer.

``FloatBackend`` is its ``backends.base.Backend``; ``GradientUpdater`` and ``make_optimizer`` its pieces."""

from __future__ import annotations

import torch
from torch import Tensor

from ..models import Layer
from .decor_state import decor_state, load_decor_state

#: The torch optimizers ``make_optimizer`` builds.
OPTIMIZERS = ("adam", "sgd")


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


class FloatBackend:
    """Weights are ``nn.Linear`` parameters; backprop and the local rules share one torch optimizer."""

    name = "float"

    def __init__(self, cfg) -> None:
        self.cfg = cfg
        self.optimizer: torch.optim.Optimizer | None = None
        self.updater: GradientUpdater | None = None

    def prepare(self, net):
        self.optimizer = make_optimizer(self.cfg, net.parameters())
        self.updater = GradientUpdater(self.optimizer)
        return net

    def set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def start_probe(self, step: int) -> None:
        return None

    def layer_weight(self, layer: Layer) -> Tensor:
        return layer.linear.weight

    def exact_weights(self, layer: Layer) -> tuple[Tensor, Tensor | None]:
        return layer.linear.weight.detach(), None if layer.linear.bias is None else layer.linear.bias.detach()

    def network_state(self, net) -> dict[str, Tensor]:
        state = decor_state(net)
        for i, layer in enumerate(net.layers):
            for k, v in layer.linear.state_dict().items():
                state[f"{i}.linear.{k}"] = v
        return state

    def load_network_state(self, net, state: dict[str, Tensor]) -> None:
        load_decor_state(net, state)
        for i, layer in enumerate(net.layers):
            prefix = f"{i}.linear."
            layer.linear.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if "optimizer" in state:
            self.optimizer.load_state_dict(state["optimizer"])

    def end_of_run(self, net, accuracy, log) -> dict:
        return {}
