"""The decorrelators' part of a checkpoint's network state, the same on every backend.

Each decorrelator's ``state_dict`` goes in whole: the float one's R and running mean, the fixed-point one's
integer unit state (R_int, mu_int, lfsr), its scale, samples_seen and its float shadow (under ``shadow.``).
Its own module so the backends can share it without importing ``base`` (which imports them)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import Tensor

if TYPE_CHECKING:
    from ..models import Network


def decor_state(net: Network) -> dict[str, Tensor]:
    """Every decorrelator's buffers under ``{layer}.decor.{name}`` (the same on every backend)."""
    state = {}
    for i, layer in enumerate(net.layers):
        if layer.decor is not None:
            for k, v in layer.decor.state_dict().items():
                state[f"{i}.decor.{k}"] = v
    return state


def load_decor_state(net: Network, state: dict[str, Tensor]) -> None:
    """Each decorrelator's buffers back from ``{layer}.decor.{name}`` (strict: a missing buffer is an error)."""
    for i, layer in enumerate(net.layers):
        if layer.decor is not None:
            prefix = f"{i}.decor."
            layer.decor.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
