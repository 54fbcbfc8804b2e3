"""Networks built from one description: a stack of the decorrelated layers of analogdecorr.decor.

Every layer is (decorrelator?) → linear map → activation: a ``DecorLinear``, or a ``DecorConv2d`` (the same
thing on image patches), both ``decor.Layer``s; ``build_model`` builds them from a RunConfig, so the layers a
user builds by hand are the layers ``analogdecorr train`` trains.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from .choices import check_choice
from .decor import CENTRE, DECOR_RULES, ZCA, DecorConv2d, DecorLinear, Decorrelator, Layer
from .errors import ConfigError, DataError

#: Network types ``build_model`` builds. ``paper_mlp`` is the MLP of the paper's public code (Ahmad 2024,
#: CorrelationsRuinGD ``DenseNet``): its last hidden layer has no activation (that code appends one after hidden
#: layer i only while i + 1 < depth), so 4 hidden widths give 3 nonlinear layers and a linear one. Measured on
#: digits (sims/README.md, paper_digits): with it NP + `scaled` reaches .80 at epoch 10 on every seed, with mlp not.
MODELS = ("mlp", "conv", "paper_mlp")
#: The models whose input is a flat vector.
FLAT_MODELS = ("mlp", "paper_mlp")
#: What stands before every layer: nothing ("none"), a decorrelation rule, centring only (R = I), or the oracle
#: (R = the exact ZCA whitening of the layer's input over the training set, refitted every epoch).
NO_DECOR = "none"
DECORS = (NO_DECOR, *DECOR_RULES, CENTRE, ZCA)
#: The decorrelators' arithmetic: torch floats, or the FPGA unit's integer model (analogdecorr.cosim).
#: How decorrelation is computed: float (the torch rule, one step per batch), stream (the FPGA unit's per-sample
#: schedule and constants in float64: cosim.stream) or fixed (the unit's integer model, bit-exact: cosim).
DECOR_NUMERICS = ("float", "stream", "fixed")
#: The numerics that run the unit's plan (its shift, centring and rule).
UNIT_NUMERICS = ("stream", "fixed")

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
    a FixedDecorrelator running the unit of ``unit_plan`` (analogdecorr.cosim), with ``"stream"`` its float twin."""
    if cfg.decor == NO_DECOR:
        return None
    numerics = getattr(cfg, "decor_numerics", "float")
    if numerics in UNIT_NUMERICS:
        from .cosim.decorrelator import FixedDecorrelator
        from .cosim.stream import StreamDecorrelator

        name = f"layer {index}'s decorrelator"
        fmt = unit_plan.format_for(features, name)
        if numerics == "stream":
            return StreamDecorrelator(features, fmt, rule=cfg.decor, sample_frac=cfg.sample_frac)
        return FixedDecorrelator(
            features, fmt, rule=cfg.decor, lr=cfg.decor_lr, sample_frac=cfg.sample_frac, scale=cfg.decor_scale,
            retune=lambda scale: unit_plan.format_for(features, name, scale), headroom=cfg.decor_headroom,
        )
    return Decorrelator(
        features,
        rule=cfg.decor,
        lr=cfg.decor_lr,
        sample_frac=cfg.sample_frac,
        scale_free=cfg.scale_free,
        kappa=cfg.kappa,
        centring=cfg.decor_centring,
        zca_eps=cfg.zca_eps,
    )


def build_model(cfg, input_shape: Sequence[int], n_classes: int) -> Network:
    """An MLP (``cfg.model == "mlp"``, widths ``cfg.hidden``; ``"paper_mlp"``: the same without the activation of
    the last hidden layer, as the paper's code builds it) or a small conv net (``"conv"``: 3×3 convs with
    ``cfg.conv_channels``, the second and later with stride 2, then a dense read-out), with a decorrelator
    before every layer unless ``cfg.decor == "none"``."""
    check_choice(cfg.model, MODELS, "model")
    input_shape = tuple(int(s) for s in input_shape)
    layers: list[Layer] = []
    unit_plan = None
    if getattr(cfg, "decor_numerics", "float") in UNIT_NUMERICS:
        from .cosim.unit import plan

        unit_plan = plan(cfg)
    if cfg.model in FLAT_MODELS:
        widths = [int(torch.tensor(input_shape).prod())] + [int(h) for h in cfg.hidden] + [n_classes]
        linear_from = len(widths) - 3 if cfg.model == "paper_mlp" else len(widths) - 2  # first layer without act
        for i, (d_in, d_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
            act = nn.Identity() if i >= linear_from else activation(cfg.activation)
            layers.append(DecorLinear(d_in, d_out, act=act, decorrelator=_decor(cfg, d_in, i, unit_plan)))
        return Network(layers, (widths[0],), n_classes)
    if len(input_shape) != 3:
        raise ConfigError(
            f"model 'conv' needs image input (C, H, W) but the data has shape {input_shape}; "
            "use --model mlp or an image dataset (digits, mnist, fashion_mnist, cifar10)."
        )
    c, h, w = input_shape
    for i, ch in enumerate(cfg.conv_channels):
        patch = c * 3 * 3
        layer = DecorConv2d(c, ch, 3, stride=1 if i == 0 else 2, padding=1, input_size=(h, w),
                            act=activation(cfg.activation), decorrelator=_decor(cfg, patch, i, unit_plan))
        layers.append(layer)
        c, h, w = ch, layer.conv.out_height, layer.conv.out_width
    d_in = c * h * w
    layers.append(DecorLinear(d_in, n_classes, decorrelator=_decor(cfg, d_in, len(layers), unit_plan)))
    return Network(layers, input_shape, n_classes)
