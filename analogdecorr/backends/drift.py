"""Post-training drift evaluation on PCM inference tiles (aihwkit's PCMLikeNoiseModel).

The trained weights (float nn.Linear or analog AnalogLinear) are copied onto InferenceRPUConfig tiles,
programmed once (programming noise, per-device drift exponents), then drifted to each time t and evaluated.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from analogdecorr.backends.presets import (
    AnalogLayerBase,
    GlobalDriftCompensation,
    InferenceRPUConfig,
    PCMLikeNoiseModel,
    _set_fields,
)
from analogdecorr.backends.simulator import analog_copy, check_simulator
from analogdecorr.errors import ConfigError

DEFAULT_TIMES = (1.0, 3600.0, 86400.0, 2592000.0, 31536000.0)  # 1 s, 1 h, 1 day, 30 days, 1 year


def inference_rpu_config(compensation: bool, io: dict | None = None, g_max: float = 25.0) -> Any:
    """InferenceRPUConfig with the PCM noise model (g_max in µS), global drift compensation if asked.

    The forward pass keeps aihwkit's default periphery (out_noise 0.06, 7-bit DAC, 9-bit ADC) unless io
    overrides it.
    """
    cfg = InferenceRPUConfig(
        noise_model=PCMLikeNoiseModel(g_max=g_max),
        drift_compensation=GlobalDriftCompensation() if compensation else None,
    )
    if io:
        _set_fields(cfg.forward, dict(io), "io", "io field")
    return cfg


def drift_evaluation(
    network: nn.Module,
    evaluate_fn: Callable[[nn.Module], float],
    times: Sequence[float] = DEFAULT_TIMES,
    compensation: bool = True,
    seed: int = 0,
    io: dict | None = None,
) -> list[dict]:
    """Accuracy of the trained network after programming onto PCM tiles and drifting for each time.

    network is not modified: a deep copy gets InferenceRPUConfig AnalogLinears carrying the trained weights
    (read exactly with get_weights from analog layers). Programming noise and drift exponents are drawn once
    from ``seed``, so calls with compensation on/off see the same programmed chip. evaluate_fn(model) runs
    the model (already in eval mode) on the test set and returns an accuracy.
    Returns [{"t_seconds", "acc", "compensated"}].
    """
    check_simulator()
    times = [float(t) for t in times]
    if not times or any(not math.isfinite(t) or t <= 0 for t in times):
        raise ConfigError(f"drift times must be positive seconds, got {times}")
    layers = getattr(network, "layers", None)
    if layers is None:
        raise TypeError(f"{type(network).__name__} has no .layers; drift_evaluation expects a models.Network")
    model = copy.deepcopy(network)
    rpu_config = inference_rpu_config(compensation, io)
    for i, layer in enumerate(model.layers):
        linear = getattr(layer, "linear", None)
        if linear is not None:
            layer.linear = analog_copy(linear, rpu_config, name=f"layer {i}")
    model.eval()
    tiles = [tile for module in model.modules() if isinstance(module, AnalogLayerBase)
             for tile in module.analog_tiles()]
    results = []
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        with torch.no_grad():
            for tile in tiles:
                tile.program_weights()
            for t in times:
                for tile in tiles:
                    tile.drift_weights(t)
                acc = float(evaluate_fn(model))
                results.append({"t_seconds": t, "acc": acc, "compensated": bool(compensation)})
    return results
