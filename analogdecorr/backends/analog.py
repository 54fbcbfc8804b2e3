"""Analog backend: aihwkit tiles for the linear layers, native pulsed updates for NP (the start-up check and
weight copying are in ``simulator``, the drift evaluation in ``drift``; both re-exported here).

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
    read_noise,
)
from analogdecorr.backends.simulator import analog_copy, check_simulator
from analogdecorr.errors import ConfigError

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
    "low_rank_rows",
    "make_rpu_config",
    "read_noise",
    "tile_blocks",
    "to_analog",
]

# ---------------------------------------------------------------------------------------------------------
# conversion


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

    ``rank`` r > 0 sums the batch's rows digitally first and writes G's r largest singular directions as r rows
    (:func:`low_rank_rows`) instead of one row per sample: a noisy per-sample estimate (NP's) then reaches the
    device as its batch sum, so the pulses whose signs cancel within the batch are never written.
    """

    def __init__(self, lr: float, weight_decay: float = 0.0, decay_every: int = 1, rank: int = 0) -> None:
        self.lr = _check_lr(lr)
        if int(rank) < 0:
            raise ConfigError(f"update rank must be >= 0 (0 writes one row per sample), got {rank}")
        self.rank = int(rank)
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
        x_rows, d_rows = low_rank_rows(z, d, self.rank) if 0 < self.rank < z.shape[0] else (z, d)
        for tile, cols_in, cols_out in blocks:  # a column slice of a factorisation factorises the block of G
            x_t, d_t = (x_rows, d_rows) if whole else (x_rows[:, cols_in], d_rows[:, cols_out])
            x_t, d_t = x_t.contiguous(), d_t.contiguous()  # no copy when already contiguous
            if (decay or self.rank) and getattr(tile, "analog_bias", False):  # its bias update would be Σ d_rows
                what = "weight decay" if decay else "update_rank"
                raise ConfigError(f"{what} on a tile with an analog bias column is not supported; "
                                  "keep rpu_config.mapping.digital_bias = True (aihwkit's default)")
            if decay:
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


def low_rank_rows(z: Tensor, d: Tensor, rank: int) -> tuple[Tensor, Tensor]:
    """As many rows (x, d) as z has, with dᵀx the best rank-``rank`` approximation of G = dᵀz.

    G = U S Vᵀ; its k ≤ ``rank`` leading terms are written ⌊n/k⌋ times each as the row (√(s/m)·v, √(s/m)·u),
    m = ⌊n/k⌋: a compound that counts its transfers and chopper periods in rows (aihwkit's ``units_in_mbatch =
    False``, its presets' setting) keeps its cadence, each row's two factors have equal norms (a balanced pulse
    train), and the rows sum to G exactly when rank ≥ rank(G).
    """
    g = d.double().T @ z.double()
    u, s, vh = torch.linalg.svd(g, full_matrices=False)
    k = min(int(rank), s.shape[0])
    m = max(z.shape[0] // k, 1)
    root = (s[:k] / m).sqrt()
    x_rows = (root[:, None] * vh[:k]).repeat_interleave(m, dim=0)
    d_rows = (u[:, :k] * root).T.repeat_interleave(m, dim=0)
    return x_rows.to(z.dtype).contiguous(), d_rows.to(d.dtype).contiguous()


def _prepare(linear: AnalogLayerBase, z: Tensor, d: Tensor) -> tuple[Tensor, Tensor]:
    z = z.detach().float().cpu().reshape(-1, z.shape[-1])
    d = d.detach().float().cpu().reshape(-1, d.shape[-1])
    if z.shape[0] != d.shape[0] or z.shape[1] != linear.in_features or d.shape[1] != linear.out_features:
        raise ValueError(f"update shapes z {tuple(z.shape)}, d {tuple(d.shape)} do not fit a "
                         f"{linear.in_features}->{linear.out_features} layer")
    return z, d
