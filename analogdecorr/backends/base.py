"""The backend protocol: where a run's weights live and everything that depends on it.

A backend prepares the network (the analog one moves its linear layers onto tiles and checks that the rule can
run on the device), owns the optimizer (backprop) and the ``WeightUpdater`` (local rules), follows the lr
schedule, saves and restores what a checkpoint needs of the network, and evaluates the trained network at the end
of the run (the analog one: accuracy after conductance drift). The training loop asks ``make_backend(cfg)`` for one
and never branches on its name.

Lifecycle: ``backend = make_backend(cfg)``; ``net = backend.prepare(net)`` (creates optimizer and updater for that
network); then ``backend.optimizer`` / ``backend.updater`` go to the rule, ``set_lr`` runs each epoch,
``start_probe`` around each step, ``network_state``/``state_dict`` into checkpoints, ``end_of_run`` once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch import Tensor, nn

from ..choices import check_choice

if TYPE_CHECKING:
    from ..models import Network
    from ..rules import WeightUpdater

BACKENDS = ("float", "analog")

#: Per backend, the config values a run starts from for every key the user does not set ({}: RunConfig's own).
#: Here, not on the backend classes, so that resolving a config never imports aihwkit. The analog tiles are
#: trained by their own pulsed SGD (no Adam on a crossbar) and NP's sigma must exceed the read noise; why these
#: values: sims/README_analog.md, "Defaults".
DEFAULTS: dict[str, dict[str, Any]] = {
    "float": {},
    "analog": {
        "optimizer": "sgd",
        "lr": 0.02,
        "lr_schedule": "cosine",
        "weight_decay": 1e-2,
        "sigma": 0.3,
        "decor": "offdiag",
        "decor_lr": 3e-5,
        "hidden": (100,),
        "epochs": 50,
        "out": "runs/analog",
    },
}
#: The analog backend's defaults (the name the docs and sims use).
ANALOG_DEFAULTS = DEFAULTS["analog"]


class Backend(Protocol):
    """What the training loop needs from the place the weights live."""

    name: str
    optimizer: torch.optim.Optimizer | None  # the optimizer backprop steps (None before prepare)
    updater: WeightUpdater  # where local rules deliver (z, d)

    def prepare(self, net: Network) -> Network:
        """The network the run trains (may replace layers); raises ConfigError if the rule cannot run here."""
        ...

    def set_lr(self, lr: float) -> None:
        """The learning rate of this epoch, for the optimizer and the updater alike."""
        ...

    def start_probe(self, step: int) -> Callable[[], dict[str, list[float]]] | None:
        """Before a training step: None, or a callable to run after it that returns per-step measurements to
        append to the epoch's lists (analog NP: the update's cosine with the exact one)."""
        ...

    def layer_weight(self, layer: nn.Module) -> Tensor:
        """The layer's weight matrix as the backend holds it (tiles: read exactly), for divergence checks."""
        ...

    def exact_weights(self, layer: nn.Module) -> tuple[Tensor, Tensor | None]:
        """(W, b) of the layer as exact float tensors (tiles: read exactly, no noise), for diagnostics that
        compare an update with the true gradient at the present weights."""
        ...

    def network_state(self, net: Network) -> dict[str, Tensor]:
        """Plain tensors (weights_only-loadable) from which ``load_network_state`` restores the network."""
        ...

    def load_network_state(self, net: Network, state: dict[str, Tensor]) -> None: ...

    def state_dict(self) -> dict[str, Any]:
        """The backend's own checkpoint state (the float optimizer's moments; nothing for pulsed tiles)."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def end_of_run(
        self, net: Network, accuracy: Callable[[nn.Module], float], log: Callable[[str], None]
    ) -> dict[str, Any]:
        """Evaluations of the trained network for ``results.extra`` ({} for none; analog: {"drift": rows})."""
        ...


def make_backend(cfg: Any) -> Backend:
    """The backend ``cfg.backend`` names (ConfigError with the closest valid name otherwise)."""
    check_choice(cfg.backend, BACKENDS, "backend")
    if cfg.backend == "analog":
        from .analog_backend import AnalogBackend  # imports aihwkit: only analog runs get here

        return AnalogBackend(cfg)
    from .float import FloatBackend

    return FloatBackend(cfg)
