"""Networks built from one description: every layer is (decorrelator?) → linear map → activation.

A convolution is the same thing applied to image patches: the layer unfolds its input into rows of k×k×C
patches, decorrelates the rows and applies its weight matrix as a linear map. That keeps one representation for
all learning rules (each sees a layer's input rows z and delivers an update (z, d)) and for both backends (the
analog backend swaps ``layer.linear`` for a crossbar tile, dense or conv alike).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .choices import check_choice
from .decor import Decorrelator
from .errors import ConfigError, DataError

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
    "elu": nn.ELU,
}


def activation(name: str) -> nn.Module:
    """The activation module called ``name`` (ConfigError naming the closest valid one)."""
    check_choice(name, ACTIVATIONS, "activation")
    return ACTIVATIONS[name]()


@dataclass(frozen=True)
class ConvGeometry:
    """Patch geometry of a convolutional layer (input C×H×W, kernel k, stride, padding)."""

    in_channels: int
    height: int
    width: int
    kernel: int
    stride: int
    padding: int

    @property
    def out_height(self) -> int:
        return (self.height + 2 * self.padding - self.kernel) // self.stride + 1

    @property
    def out_width(self) -> int:
        return (self.width + 2 * self.padding - self.kernel) // self.stride + 1

    @property
    def patch_size(self) -> int:
        return self.in_channels * self.kernel * self.kernel

    @property
    def positions(self) -> int:
        return self.out_height * self.out_width


class Layer(nn.Module):
    """One trainable stage: optional decorrelator, linear map ``linear`` (on rows), activation ``act``.

    ``to_rows`` turns the layer's input into the rows the decorrelator and the linear map see (the flattened
    input for a dense layer, the unfolded patches for a conv layer); ``from_rows`` turns the linear map's output
    rows back into the layer's output shape.
    """

    def __init__(
        self,
        linear: nn.Module,
        decor: Decorrelator | None,
        act: nn.Module,
        conv: ConvGeometry | None = None,
    ) -> None:
        super().__init__()
        self.linear = linear
        self.decor = decor
        self.act = act
        self.conv = conv

    @property
    def in_rows_features(self) -> int:
        return self.conv.patch_size if self.conv else self.linear.in_features

    def to_rows(self, x: Tensor) -> Tensor:
        if self.conv is None:
            return x.flatten(1)
        g = self.conv
        patches = F.unfold(x, g.kernel, padding=g.padding, stride=g.stride)  # N × (C k k) × L
        return patches.transpose(1, 2).reshape(-1, g.patch_size)

    def from_rows(self, rows: Tensor, n: int) -> Tensor:
        if self.conv is None:
            return rows
        g = self.conv
        return rows.reshape(n, g.positions, -1).transpose(1, 2).reshape(n, -1, g.out_height, g.out_width)

    def rows_to_input(self, grad_rows: Tensor, n: int) -> Tensor:
        """Adjoint of ``to_rows``: row-space gradients back to the input's shape (fold sums overlaps)."""
        if self.conv is None:
            return grad_rows
        g = self.conv
        cols = grad_rows.reshape(n, g.positions, g.patch_size).transpose(1, 2)
        return F.fold(cols, (g.height, g.width), g.kernel, padding=g.padding, stride=g.stride)

    def forward(self, x: Tensor) -> Tensor:
        rows = self.to_rows(x)
        z = self.decor(rows) if self.decor is not None else rows
        return self.act(self.from_rows(self.linear(z), x.shape[0]))


class Network(nn.Module):
    """A stack of ``Layer``s ending in class logits; the last layer's activation is the identity."""

    def __init__(self, layers: Sequence[Layer], input_shape: tuple[int, ...], n_classes: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        for i, layer in enumerate(layers):
            if layer.decor is not None:
                layer.decor.name = f"layer {i}'s decorrelator"
        self.input_shape = tuple(input_shape)
        self.n_classes = n_classes

    def forward(self, x: Tensor) -> Tensor:
        h = self.shape_input(x)
        for layer in self.layers:
            h = layer(h)
        return h

    def shape_input(self, x: Tensor) -> Tensor:
        """``x`` reshaped to the network's input shape (DataError naming both feature counts if it cannot be)."""
        want = math.prod(self.input_shape)
        got = math.prod(x.shape[1:])
        if got != want:
            raise DataError(
                f"the data has {got} features per sample but the model was built for {want} "
                f"(input shape {self.input_shape}); build the model from this dataset or pick the matching dataset."
            )
        return x.reshape(x.shape[0], *self.input_shape)

    @property
    def decorrelators(self) -> list[tuple[int, Decorrelator]]:
        return [(i, layer.decor) for i, layer in enumerate(self.layers) if layer.decor is not None]

    @torch.no_grad()
    def layer_inputs(self, x: Tensor) -> list[tuple[Tensor, Tensor]]:
        """Per layer (rows before its decorrelator, rows after it), without changing any state."""
        out = []
        h = self.shape_input(x)
        for layer in self.layers:
            rows = layer.to_rows(h)
            z = layer.decor.transform(rows) if layer.decor is not None else rows
            out.append((rows, z))
            h = layer.act(layer.from_rows(layer.linear(z), h.shape[0]))
        return out


def _decor(cfg, features: int, index: int = 0, unit_plan=None) -> Decorrelator | None:
    """The decorrelator before layer ``index`` (None without decorrelation); with ``decor_numerics = "fixed"``
    a FixedDecorrelator running the unit of ``unit_plan`` (analogdecorr.cosim)."""
    if cfg.decor == "none":
        return None
    if getattr(cfg, "decor_numerics", "float") == "fixed":
        from .cosim.decorrelator import FixedDecorrelator

        fmt = unit_plan.format_for(features, f"layer {index}'s decorrelator")
        return FixedDecorrelator(
            features, fmt, rule=cfg.decor, lr=cfg.decor_lr, sample_frac=cfg.sample_frac, scale=cfg.decor_scale
        )
    return Decorrelator(
        features,
        rule=cfg.decor,
        lr=cfg.decor_lr,
        sample_frac=cfg.sample_frac,
        scale_free=cfg.scale_free,
        kappa=cfg.kappa,
        zca_eps=getattr(cfg, "zca_eps", 1e-3),
    )


def build_model(cfg, input_shape: Sequence[int], n_classes: int) -> Network:
    """An MLP (``cfg.model == "mlp"``, widths ``cfg.hidden``) or a small conv net (``"conv"``: 3×3 convs with
    ``cfg.conv_channels``, the second and later with stride 2, then a dense read-out), with a decorrelator
    before every layer unless ``cfg.decor == "none"``."""
    input_shape = tuple(int(s) for s in input_shape)
    layers: list[Layer] = []
    unit_plan = None
    if getattr(cfg, "decor_numerics", "float") == "fixed":
        from .cosim.unit import plan

        unit_plan = plan(cfg)
    if cfg.model == "mlp":
        widths = [int(torch.tensor(input_shape).prod())] + [int(h) for h in cfg.hidden] + [n_classes]
        for i, (d_in, d_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
            last = i == len(widths) - 2
            act = nn.Identity() if last else activation(cfg.activation)
            layers.append(Layer(nn.Linear(d_in, d_out), _decor(cfg, d_in, i, unit_plan), act))
        return Network(layers, (widths[0],), n_classes)
    if cfg.model == "conv":
        if len(input_shape) != 3:
            raise ConfigError(
                f"model 'conv' needs image input (C, H, W) but the data has shape {input_shape}; "
                "use --model mlp or an image dataset (digits, mnist, fashion_mnist, cifar10)."
            )
        c, h, w = input_shape
        for i, ch in enumerate(cfg.conv_channels):
            g = ConvGeometry(c, h, w, kernel=3, stride=1 if i == 0 else 2, padding=1)
            layers.append(
                Layer(nn.Linear(g.patch_size, ch), _decor(cfg, g.patch_size, i, unit_plan),
                      activation(cfg.activation), g)
            )
            c, h, w = ch, g.out_height, g.out_width
        d_in = c * h * w
        layers.append(
            Layer(nn.Linear(d_in, n_classes), _decor(cfg, d_in, len(layers), unit_plan), nn.Identity())
        )
        return Network(layers, input_shape, n_classes)
    raise ConfigError(f"unknown model {cfg.model!r}; choose 'mlp' or 'conv'.")
