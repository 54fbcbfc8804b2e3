"""The analog backend as a ``backends.base.Backend``: aihwkit tiles hold the weights.

Backprop steps aihwkit's ``AnalogSGD`` (its weight_decay never reaches tiles, so the tiles and the bias decay
through the same pulsed decay as the local rules, after every step); the local rules deliver their (z, d) to a
``PulsedUpdater`` (the tiles' own pulsed update). A checkpoint holds the tiles' exact weights and their hidden
device parameters (the device-to-device variation drawn when the tiles were built). At the end of the run the
trained weights are programmed onto PCM inference tiles and evaluated after drift.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from ..errors import ConfigError
from .analog import PulsedUpdater, check_simulator, tile_blocks, to_analog
from .decor_state import decor_state, load_decor_state
from .drift import drift_evaluation
from .presets import AnalogSGD, InferenceRPUConfig, check_sigma, make_rpu_config


def check_rule_fits_device(rule: str, preset: str, rpu_config: Any) -> None:
    """Local rules (np, fa, dfa) need tiles that learn by their own pulsed update; an inference (hardware-aware
    training) configuration only reads noisily and keeps a digital weight copy, so only bp may use it."""
    if rule != "bp" and isinstance(rpu_config, InferenceRPUConfig):
        raise ConfigError(
            f"preset {preset!r} is an inference (hardware-aware training) configuration: its weights are "
            f"trained digitally and only read through noisy tiles, so rule {rule!r}, which updates the "
            "crossbar by pulses, cannot run on it; pick a training preset (see 'analogdecorr presets') or --rule bp."
        )


class DecayingAnalogSGD(AnalogSGD):
    """AnalogSGD whose every step ends with ``after_step()`` (the pulsed weight decay), exactly once.

    Not a ``register_step_post_hook``: AnalogSGD.step calls SGD.step, and once any torch SGD exists in the process
    torch has wrapped both with the hook runner, so a post-hook runs twice per step (a sweep worker that ran a
    float SGD trial before would decay its analog BP trials twice as hard).
    """

    def __init__(self, params, lr: float, after_step: Callable[[], None]) -> None:
        super().__init__(params, lr=lr, weight_decay=0.0)
        self._after_step = after_step

    def step(self, closure=None, **kwargs):
        loss = super().step(closure, **kwargs)
        self._after_step()
        return loss


class AnalogBackend:
    """aihwkit tiles: pulsed updates, AnalogSGD for backprop, tile state in checkpoints, drift at the end."""

    name = "analog"

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg
        check_simulator()
        self.rpu_config = make_rpu_config(cfg.preset, dict(cfg.device), dict(cfg.io))
        check_rule_fits_device(cfg.rule, cfg.preset, self.rpu_config)
        if cfg.rule == "np":
            warning = check_sigma(cfg.sigma, self.rpu_config)
            if warning:
                warnings.warn(warning, stacklevel=2)
        self.updater = PulsedUpdater(cfg.lr, weight_decay=cfg.weight_decay, rank=cfg.update_rank)
        self.optimizer = None

    def prepare(self, net):
        net = to_analog(net, self.rpu_config)
        if self.cfg.rule == "bp":
            layers = list(net.layers)

            def decay() -> None:
                for layer in layers:
                    self.updater.decay(layer)  # no-op at weight_decay 0

            self.optimizer = DecayingAnalogSGD(net.parameters(), lr=self.cfg.lr, after_step=decay)
            self.optimizer.regroup_param_groups(net)
        return net

    def set_lr(self, lr: float) -> None:
        if self.optimizer is not None:
            for group in self.optimizer.param_groups:
                group["lr"] = lr
        self.updater.set_lr(lr)

    def start_probe(self, step: int) -> Callable[[], dict[str, list[float]]] | None:
        """The first ``fidelity_steps`` steps of each epoch of a local rule: cos(intended, actual ΔW) per layer."""
        if self.cfg.rule == "bp" or step >= self.cfg.fidelity_steps:
            return None
        self.updater.start_fidelity()
        return lambda: {"update_cosine": self.updater.stop_fidelity()}

    def layer_weight(self, layer: nn.Module) -> Tensor:
        return layer.linear.get_weights()[0]

    def exact_weights(self, layer: nn.Module) -> tuple[Tensor, Tensor | None]:
        w, b = layer.linear.get_weights()
        return w.detach(), None if b is None else b.detach()

    def network_state(self, net) -> dict[str, Tensor]:
        state = decor_state(net)
        for i, layer in enumerate(net.layers):
            w, b = layer.linear.get_weights()
            state[f"{i}.linear.weight"] = w
            if b is not None:
                state[f"{i}.linear.bias"] = b
            for j, (tile, _, _) in enumerate(tile_blocks(layer.linear)):
                if hasattr(tile, "get_hidden_parameters"):
                    for name, value in tile.get_hidden_parameters().items():
                        state[f"{i}.linear.tile{j}.{name}"] = value.detach().clone()
        return state

    def load_network_state(self, net, state: dict[str, Tensor]) -> None:
        """Decorrelators, then every tile's hidden device parameters (so the weights are written within the saved
        bounds), then the weights (ConfigError when the checkpoint came from another device)."""
        load_decor_state(net, state)
        for i, layer in enumerate(net.layers):
            for j, (tile, _, _) in enumerate(tile_blocks(layer.linear)):
                prefix = f"{i}.linear.tile{j}."
                saved = OrderedDict((k[len(prefix):], v) for k, v in state.items() if k.startswith(prefix))
                if saved and hasattr(tile, "set_hidden_parameters"):
                    names = list(tile.get_hidden_parameters())
                    if list(saved) != names:
                        raise ConfigError(
                            f"checkpoint layer {i} tile {j} holds device parameters {list(saved)} but this device "
                            f"has {names}; resume with the same preset/device settings or start a new run."
                        )
                    tile.set_hidden_parameters(saved)
            layer.linear.set_weights(state[f"{i}.linear.weight"], state.get(f"{i}.linear.bias"))

    def state_dict(self) -> dict[str, Any]:
        return {}  # pulsed updates keep no optimizer state; AnalogSGD has no momentum here

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def end_of_run(self, net, accuracy: Callable[[nn.Module], float], log: Callable[[str], None]) -> dict[str, Any]:
        """Test accuracy after programming onto PCM tiles and drifting for each of ``drift_times`` (with and,
        unless switched off, without global drift compensation); {} when drift_times is empty."""
        if not self.cfg.drift_times:
            return {}
        rows = []
        for compensation in (True, False) if self.cfg.drift_compensation else (False,):
            rows += drift_evaluation(net, accuracy, times=tuple(self.cfg.drift_times), compensation=compensation,
                                     seed=self.cfg.seed)
        for r in rows:
            log(f"drift t={r['t_seconds']:>10g}s  compensated={r['compensated']!s:5}  test acc {r['acc']:.3f}")
        return {"drift": rows}
