"""Analog backend: aihwkit tiles for the linear layers, native pulsed updates for NP, drift evaluation.

Facts about aihwkit 1.1.0 this module relies on (all asserted in tests/test_analog.py):
- AnalogLinear keeps its tile(s) in ``layer.analog_module``: a single tile (AnalogTile / FloatingPointTile /
  InferenceTile) or, when a dimension exceeds ``rpu_config.mapping.max_input_size/max_output_size`` (512 in
  the presets), a TileModuleArray whose ``array[i][j]`` tile holds input block i and output block j.
- ``tile.set_learning_rate(lr); tile.update(x, d)`` performs W <- W - lr · dᵀx summed over the batch rows
  (x is N×in, d is N×out) as stochastic/deterministic pulse coincidences; on a ConstantStepDevice every weight
  moves by a whole number of dw_min steps.
- The bias is digital by default (``rpu_config.mapping.digital_bias = True``): a torch Parameter on
  ``analog_module.bias``, added after the analog MVM; aihwkit's AnalogSGD updates it with plain SGD. We keep
  that choice (a periphery adder is what real chips use) and update it digitally here.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
from torch import Tensor, nn

from analogdecorr.backends.drift import drift_evaluation
from analogdecorr.backends.presets import (
    SUPPORTED_PAIR,
    AnalogLayerBase,
    AnalogLinear,
    AnalogTile,
    TileModuleArray,
    check_sigma,
    installed_versions,
    list_presets,
    make_rpu_config,
    mismatch_message,
    read_noise,
)
from analogdecorr.errors import ConfigError, EnvironmentMismatchError

__all__ = [
    "SUPPORTED_PAIR",
    "DirectReadAnalogLinear",
    "PulsedUpdater",
    "analog_copy",
    "check_sigma",
    "check_simulator",
    "digital_bias",
    "drift_evaluation",
    "installed_versions",
    "list_presets",
    "make_rpu_config",
    "read_noise",
    "tile_blocks",
    "to_analog",
]

# ---------------------------------------------------------------------------------------------------------
# start-up check

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


# ---------------------------------------------------------------------------------------------------------
# conversion


def _linear_weights(linear: nn.Module) -> tuple[Tensor, Tensor | None]:
    """Weights and bias of an nn.Linear or (exact copy of the tile state of) an AnalogLinear, on CPU."""
    if isinstance(linear, AnalogLayerBase):
        w, b = linear.get_weights()
        return w.detach().float().cpu(), None if b is None else b.detach().float().cpu()
    if isinstance(linear, nn.Linear):
        b = None if linear.bias is None else linear.bias.detach().float().cpu()
        return linear.weight.detach().float().cpu(), b
    raise TypeError(f"expected nn.Linear or AnalogLinear, got {type(linear).__name__}")


class DirectReadAnalogLinear(AnalogLinear):
    """AnalogLinear whose reads outside autograd (``torch.no_grad``: the local rules' passes, evaluation) call the
    tile's forward directly instead of going through aihwkit's autograd Function.

    Same numbers: the Function's forward is ``tile.joint_forward(x, is_test=not training, ctx)`` (the same
    simulator call, IO periphery and read noise), then the out scaling and the digital bias, exactly as here; what
    is skipped is the autograd context (saved input, the output-bound mask kept for a backward pass that never
    comes) and one module call, ≈ 90 µs per read at 128×100 rows (benchmarks/README_analog.md). With autograd
    on (backprop), and for any tile other than the plain pulsed ``AnalogTile`` (inference tiles, tile arrays,
    shared or indexed weights), it is aihwkit's own forward.
    """

    def forward(self, x_input: Tensor) -> Tensor:
        tile = self.analog_module
        if (
            torch.is_grad_enabled()
            or type(tile).forward is not _PULSED_TILE_FORWARD
            or tile.shared_weights is not None
            or tile.get_analog_ctx().use_indexed
        ):
            return super().forward(x_input)
        out = tile.joint_forward(x_input, not tile.training)
        out = tile.apply_out_scaling(out, tile.get_tensor_view(out.dim()))
        return out + tile.bias.view(tile.get_tensor_view(out.dim())) if tile.digital_bias else out


_PULSED_TILE_FORWARD = AnalogTile.forward


def analog_copy(
    linear: nn.Module, rpu_config: Any, name: str = "linear", layer_class: type = AnalogLinear
) -> AnalogLinear:
    """A new ``layer_class`` (an AnalogLinear) with linear's weights/bias written to its tiles (warns if device
    bounds clip)."""
    w, b = _linear_weights(linear)
    layer = layer_class(w.shape[1], w.shape[0], bias=b is not None, rpu_config=rpu_config)
    layer.set_weights(w, b)
    got, _ = layer.get_weights()
    clipped = (got - w).abs() > 1e-6 * max(1.0, w.abs().max().item())
    if clipped.any():
        warnings.warn(
            f"{name}: {int(clipped.sum())} of {w.numel()} weights lie outside the device's conductance range "
            f"(max |w| = {w.abs().max().item():.3g}) and were clipped when written to the tile",
            stacklevel=3,
        )
    return layer


def to_analog(network: nn.Module, rpu_config: Any) -> nn.Module:
    """Replace ``linear`` on every element of ``network.layers`` by an AnalogLinear with the same weights.

    Works in place and returns the network. The bias follows ``rpu_config.mapping.digital_bias`` (True for
    every aihwkit 1.1.0 preset: a digital periphery adder, updated digitally by PulsedUpdater). The layers are
    DirectReadAnalogLinear: reads outside autograd skip aihwkit's autograd Function (same numbers, less time).
    """
    check_simulator()
    layers = getattr(network, "layers", None)
    if layers is None:
        raise TypeError(f"{type(network).__name__} has no .layers; to_analog expects a models.Network")
    for i, layer in enumerate(layers):
        linear = getattr(layer, "linear", None)
        if linear is None:
            continue
        layer.linear = analog_copy(linear, rpu_config, name=f"layer {i}", layer_class=DirectReadAnalogLinear)
    return network


# ---------------------------------------------------------------------------------------------------------
# native pulsed updates


def _analog_linear(layer: nn.Module) -> AnalogLayerBase:
    if isinstance(layer, AnalogLayerBase):
        return layer
    linear = getattr(layer, "linear", None)
    if isinstance(linear, AnalogLayerBase):
        return linear
    raise TypeError(f"{type(layer).__name__} has no analog .linear; call to_analog(network, cfg) first")


def tile_blocks(linear: AnalogLayerBase) -> list[tuple[Any, slice, slice]]:
    """(tile, input-column slice, output-column slice) for every physical tile of an AnalogLinear."""
    module = linear.analog_module
    if not isinstance(module, TileModuleArray):
        return [(module, slice(None), slice(None))]
    blocks = []
    in_start = 0
    for in_size, row in zip(module.in_sizes, module.array, strict=True):
        out_start = 0
        for out_size, tile in zip(module.out_sizes, row, strict=True):
            blocks.append((tile, slice(in_start, in_start + in_size), slice(out_start, out_start + out_size)))
            out_start += out_size
        in_start += in_size
    return blocks


def digital_bias(linear: AnalogLayerBase) -> nn.Parameter | None:
    """The digital bias Parameter of an AnalogLinear, or None (no bias, or an analog bias column)."""
    bias = getattr(linear.analog_module, "bias", None)
    return bias if isinstance(bias, nn.Parameter) else None


def _check_lr(lr: float, what: str = "lr") -> float:
    lr = float(lr)
    if not math.isfinite(lr) or lr <= 0:
        raise ConfigError(f"{what} must be a positive finite number, got {lr}")
    return lr


class PulsedUpdater:
    """WeightUpdater for analog tiles: delivers G = dᵀz as the tile's native pulsed outer-product update.

    Per tile: ``tile.set_learning_rate(lr); tile.update(z, d); tile.post_update_step()``, i.e.
    W <- W − lr·dᵀz realised as pulse coincidences (quantised, noisy, bounded by the device). The weights are
    never written with set_weights. A digital bias gets b <- b − lr·(Σₙ dₙ + wd·b).

    weight_decay (wd) is applied the hardware way, as part of the same pulsed update: every ``decay_every``
    calls the tile's weights are read with an analog forward pass of unit vectors (read noise included) and
    the rows (x = I, d = wd·k·Wᵀ_read) are appended to the update batch, giving W <- W − lr·wd·k·W.
    """

    def __init__(self, lr: float, weight_decay: float = 0.0, decay_every: int = 1) -> None:
        self.lr = _check_lr(lr)
        if not math.isfinite(weight_decay) or weight_decay < 0:
            raise ConfigError(f"weight_decay must be >= 0, got {weight_decay}")
        if int(decay_every) < 1:
            raise ConfigError(f"decay_every must be >= 1, got {decay_every}")
        self.weight_decay = float(weight_decay)
        self.decay_every = int(decay_every)
        self._calls: dict[int, int] = {}
        self._eyes: dict[tuple[int, torch.dtype], Tensor] = {}
        self._fidelity: list[float] | None = None  # collecting cosines between start/stop_fidelity

    def begin(self) -> None:
        """Start of a batch (WeightUpdater protocol); nothing to do: each apply is a complete tile update."""

    def finish(self) -> None:
        """End of a batch (WeightUpdater protocol); post_update_step already ran after each tile update."""

    def start_fidelity(self) -> None:
        """Until stop_fidelity, each apply also returns cos(intended, actual ΔW) (measure_update_fidelity)."""
        self._fidelity = []

    def stop_fidelity(self) -> list[float]:
        """The cosines measured since start_fidelity, one per apply call (per layer)."""
        out, self._fidelity = self._fidelity or [], None
        return out

    def set_lr(self, lr: float) -> None:
        """Change the learning rate (the trainer's schedule calls this each epoch)."""
        self.lr = _check_lr(lr)

    def _decay_factor(self, linear: AnalogLayerBase) -> float:
        """wd·k on the calls where this layer decays (every decay_every-th), else 0."""
        if self.weight_decay == 0.0:
            return 0.0
        n = self._calls.get(id(linear), 0) + 1
        self._calls[id(linear)] = n
        return self.weight_decay * self.decay_every if n % self.decay_every == 0 else 0.0

    def _eye(self, n: int, dtype: torch.dtype) -> Tensor:
        """The n×n identity (the decay read's unit vectors), made once per size: it is never written."""
        eye = self._eyes.get((n, dtype))
        if eye is None:
            eye = self._eyes[(n, dtype)] = torch.eye(n, dtype=dtype)
        return eye

    @torch.no_grad()
    def _apply(self, linear: AnalogLayerBase, z: Tensor, d: Tensor, decay: float) -> None:
        blocks = tile_blocks(linear)
        whole = len(blocks) == 1  # one tile holds the whole layer: no column slices to copy out
        for tile, cols_in, cols_out in blocks:
            x_t, d_t = (z, d) if whole else (z[:, cols_in], d[:, cols_out])
            x_t, d_t = x_t.contiguous(), d_t.contiguous()  # no copy when already contiguous
            if decay:
                if getattr(tile, "analog_bias", False):
                    raise ConfigError("weight decay on a tile with an analog bias column is not supported; "
                                      "keep rpu_config.mapping.digital_bias = True (aihwkit's default)")
                eye = self._eye(x_t.shape[1], x_t.dtype)
                w_read_t = tile.joint_forward(eye, is_test=True)  # row j = W[:, j] read through the tile
                x_t = torch.cat([x_t, eye])
                d_t = torch.cat([d_t, w_read_t.to(d_t.dtype).mul_(decay)])
            tile.set_learning_rate(self.lr)
            tile.update(x_t, d_t)
            tile.post_update_step()
        bias = digital_bias(linear)
        if bias is not None:
            bias.sub_(torch.add(d.sum(0).to(bias.dtype), bias, alpha=decay), alpha=self.lr)

    def apply(self, layer: nn.Module, z: Tensor, d: Tensor) -> None:
        """Deliver G = dᵀz (d already includes 1/N) to the layer's tile(s) as one pulsed update each."""
        if self._fidelity is not None:
            self._fidelity.append(self.measure_update_fidelity(layer, z, d))
            return
        linear = _analog_linear(layer)
        z, d = _prepare(linear, z, d)
        self._apply(linear, z, d, self._decay_factor(linear))

    def decay(self, layer: nn.Module) -> None:
        """Weight decay alone (no gradient rows), W <- W − lr·wd·W and b <- b − lr·wd·b, on the calls where
        this layer decays: for BP, whose gradient update AnalogSGD performs (its weight_decay skips tiles)."""
        linear = _analog_linear(layer)
        decay = self._decay_factor(linear)
        if decay:
            empty = torch.zeros(0, linear.in_features), torch.zeros(0, linear.out_features)
            self._apply(linear, *empty, decay)

    def measure_update_fidelity(self, layer: nn.Module, z: Tensor, d: Tensor) -> float:
        """Apply the update like ``apply`` and return cos(intended −lr·(G + wd·W), actual ΔW) of the weights.

        Weights are read exactly (get_weights) before and after; 0.0 when nothing changed.
        """
        linear = _analog_linear(layer)
        z, d = _prepare(linear, z, d)
        decay = self._decay_factor(linear)
        before, _ = linear.get_weights()
        intended = -self.lr * (d.T @ z + decay * before)
        self._apply(linear, z, d, decay)
        after, _ = linear.get_weights()
        actual = (after - before).flatten().double()
        intended = intended.flatten().double()
        denom = actual.norm() * intended.norm()
        return 0.0 if denom == 0 else float(actual @ intended / denom)


def _prepare(linear: AnalogLayerBase, z: Tensor, d: Tensor) -> tuple[Tensor, Tensor]:
    z = z.detach().float().cpu().reshape(-1, z.shape[-1])
    d = d.detach().float().cpu().reshape(-1, d.shape[-1])
    if z.shape[0] != d.shape[0] or z.shape[1] != linear.in_features or d.shape[1] != linear.out_features:
        raise ValueError(f"update shapes z {tuple(z.shape)}, d {tuple(d.shape)} do not fit a "
                         f"{linear.in_features}->{linear.out_features} layer")
    return z, d
