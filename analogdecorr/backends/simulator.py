"""aihwkit's simulator: the start-up check that it computes correctly with the installed torch, and copying
trained weights onto new tiles.

Shared by the training backend (``analog``: its layers) and the end-of-run evaluation (``drift``: PCM inference
tiles), so neither imports the other.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import Tensor, nn

from analogdecorr.backends.presets import AnalogLayerBase, AnalogLinear, make_rpu_config, mismatch_message
from analogdecorr.errors import EnvironmentMismatchError

__all__ = ["analog_copy", "check_simulator"]

_SIMULATOR_STATUS: bool | EnvironmentMismatchError | None = None  # cached per process


def _round_trip() -> None:
    """2×4 tile: set/get weights, forward ≈ W x, one deterministic pulsed update moves W along −lr dᵀx."""
    device = {"dw_min": 0.01, "dw_min_dtod": 0.0, "dw_min_std": 0.0, "up_down_dtod": 0.0,
              "w_max": 1.0, "w_min": -1.0, "w_max_dtod": 0.0, "w_min_dtod": 0.0}
    cfg = make_rpu_config("ConstantStep", device, {}, perfect_io=True,
                          update={"pulse_type": "DETERMINISTIC_IMPLICIT"})
    layer = AnalogLinear(4, 2, bias=False, rpu_config=cfg)
    w = torch.tensor([[0.1, -0.2, 0.3, 0.05], [0.0, 0.25, -0.1, 0.2]])
    layer.set_weights(w)
    got, _ = layer.get_weights()
    if got.shape != w.shape or not torch.allclose(got, w, atol=1e-6):
        raise EnvironmentMismatchError(mismatch_message(f"set/get weights returned {got.tolist()}"))
    x = torch.tensor([[1.0, 0.5, -0.5, 0.25], [-0.3, 0.8, 0.1, -1.0], [0.6, -0.2, 0.9, 0.4]])
    with torch.no_grad():
        y = layer(x)
    expected = x @ w.T
    if y.shape != expected.shape or not torch.allclose(y, expected, atol=1e-4):
        raise EnvironmentMismatchError(mismatch_message(
            f"forward gave {y.tolist()}, expected {expected.tolist()}"))
    d = torch.tensor([[0.5, -0.25], [-0.2, 0.4], [0.3, 0.1]])
    lr = 0.2
    tile = next(layer.analog_tiles())
    tile.set_learning_rate(lr)
    tile.update(x, d)
    tile.post_update_step()
    after, _ = layer.get_weights()
    actual, intended = (after - w).flatten(), (-lr * d.T @ x).flatten()
    cos = torch.nn.functional.cosine_similarity(actual, intended, dim=0).item()
    if not (cos > 0.95 and (actual - intended).abs().max().item() < 0.03):
        raise EnvironmentMismatchError(mismatch_message(
            f"pulsed update changed W by {actual.tolist()}, expected about {intended.tolist()} "
            f"(cosine {cos:.3f})"))


def check_simulator(*, refresh: bool = False) -> None:
    """Prove the compiled aihwkit simulator works with the installed torch (result cached per process).

    Raises EnvironmentMismatchError naming torch/aihwkit versions and the supported pair on wrong numbers or
    any exception from the simulator (the torch 2.13 symptoms are "Invalid weights dimensions" and
    "must be a CPU tensor").
    """
    global _SIMULATOR_STATUS
    if _SIMULATOR_STATUS is None or refresh:
        try:
            _round_trip()
            _SIMULATOR_STATUS = True
        except EnvironmentMismatchError as exc:
            _SIMULATOR_STATUS = exc
        except Exception as exc:  # the extension raises RuntimeError/TypeError/ValueError on ABI mismatch
            _SIMULATOR_STATUS = EnvironmentMismatchError(mismatch_message(
                f"2x4 tile round trip raised {type(exc).__name__}: {exc}"))
            _SIMULATOR_STATUS.__cause__ = exc
    if isinstance(_SIMULATOR_STATUS, EnvironmentMismatchError):
        raise _SIMULATOR_STATUS


def _linear_weights(linear: nn.Module) -> tuple[Tensor, Tensor | None]:
    """Weights and bias of an nn.Linear or (exact copy of the tile state of) an AnalogLinear, on CPU."""
    if isinstance(linear, AnalogLayerBase):
        w, b = linear.get_weights()
        return w.detach().float().cpu(), None if b is None else b.detach().float().cpu()
    if isinstance(linear, nn.Linear):
        b = None if linear.bias is None else linear.bias.detach().float().cpu()
        return linear.weight.detach().float().cpu(), b
    raise TypeError(f"expected nn.Linear or AnalogLinear, got {type(linear).__name__}")


def analog_copy(
    linear: nn.Module, rpu_config: Any, name: str = "linear", layer_class: type = AnalogLinear
) -> AnalogLinear:
    """A new ``layer_class`` (an AnalogLinear) with linear's weights/bias written to its tiles (warns if device
    bounds clip)."""
    w, b = _linear_weights(linear)
    layer = layer_class(w.shape[1], w.shape[0], bias=b is not None, rpu_config=rpu_config)
    layer.set_weights(w, b)
    got, _ = layer.get_weights()
    message = _write_mismatch(w, got, name)
    if message is not None:
        warnings.warn(message, stacklevel=3)
    return layer


def _write_mismatch(w: Tensor, got: Tensor, name: str) -> str | None:
    """Why the weights read back from a tile differ from those written, or None if they do not.

    Clipping moves only the largest weights, towards zero: every changed weight is at least as large as every
    unchanged one and reads back smaller. Anything else is write noise on set (e.g. ReRamES, write_noise_std
    75 dw_min), which moves weights of every size both ways: the tile then holds the weights plus noise."""
    changed = (got - w).abs() > 1e-6 * max(1.0, w.abs().max().item())
    if not changed.any():
        return None
    n, total, w_max = int(changed.sum()), w.numel(), w.abs().max().item()
    kept_max = w[~changed].abs().max().item() if (~changed).any() else 0.0
    shrunk = bool((got[changed].abs() < w[changed].abs()).all())
    if shrunk and w[changed].abs().min().item() >= kept_max:
        return (f"{name}: {n} of {total} weights lie outside the device's conductance range "
                f"(max |w| = {w_max:.3g}) and were clipped when written to the tile")
    diff = (got - w).abs()
    return (f"{name}: {n} of {total} weights read back differently from what was written (largest difference "
            f"{diff.max().item():.3g}, RMS {diff.pow(2).mean().sqrt().item():.3g}, max |w| = {w_max:.3g}): the "
            "device's write noise on set perturbs the programmed weights (not clipping)")
