"""aihwkit rpu_config construction: presets by name, device/IO overrides, read noise.

aihwkit is imported here first; if its compiled simulator cannot even be imported (the torch ABI mismatch
described in SPEC §3), this module raises EnvironmentMismatchError naming both versions instead of a raw
ImportError, so the CLI prints one clear line.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from enum import Enum
from importlib import metadata
from typing import Any

import torch

from analogdecorr.choices import check_choice, choice_message
from analogdecorr.errors import ConfigError, EnvironmentMismatchError

SUPPORTED_PAIR = "aihwkit 1.1.0 with torch 2.10.x"
__all__ = [
    "SUPPORTED_PAIR",
    "AnalogLayerBase",
    "AnalogLinear",
    "AnalogSGD",
    "AnalogTile",
    "GlobalDriftCompensation",
    "InferenceRPUConfig",
    "PCMLikeNoiseModel",
    "TileModuleArray",
    "check_sigma",
    "installed_versions",
    "list_presets",
    "make_rpu_config",
    "mismatch_message",
    "read_noise",
]


def installed_versions() -> tuple[str, str]:
    """(torch version, aihwkit version) without importing aihwkit (it may be the thing that is broken)."""
    try:
        aihwkit_version = metadata.version("aihwkit")
    except metadata.PackageNotFoundError:
        aihwkit_version = "not installed"
    return torch.__version__, aihwkit_version


def mismatch_message(detail: str) -> str:
    """One-line EnvironmentMismatchError text naming the installed and the supported versions."""
    torch_v, aihwkit_v = installed_versions()
    return (
        f"aihwkit's simulator does not work with the installed torch (torch {torch_v}, aihwkit {aihwkit_v}): "
        f"{detail}. Supported pair: {SUPPORTED_PAIR}; reinstall with `pip install 'torch==2.10.*' "
        f"'aihwkit==1.1.0'`."
    )


# Every aihwkit name the package uses is imported here, under this guard; analog.py and drift.py import them
# from this module so a broken extension always surfaces as EnvironmentMismatchError.
try:  # the compiled extension is loaded by these imports
    import aihwkit.simulator.configs.devices as _cfg_devices
    import aihwkit.simulator.presets as _presets
    import aihwkit.simulator.presets.devices as _preset_devices
    from aihwkit.inference.compensation.drift import GlobalDriftCompensation
    from aihwkit.inference.noise.pcm import PCMLikeNoiseModel
    from aihwkit.nn import AnalogLinear
    from aihwkit.nn.modules.base import AnalogLayerBase
    from aihwkit.optim import AnalogSGD
    from aihwkit.simulator.configs import (
        FloatingPointRPUConfig,
        InferenceRPUConfig,
        SingleRPUConfig,
        TorchInferenceRPUConfig,
    )
    from aihwkit.simulator.configs.configs import IOManagedRPUConfig
    from aihwkit.simulator.configs.devices import ConstantStepDevice, PulsedDevice
    from aihwkit.simulator.parameters.base import RPUConfigBase
    from aihwkit.simulator.parameters.io import IOParameters
    from aihwkit.simulator.parameters.training import UpdateParameters
    from aihwkit.simulator.tiles.analog import AnalogTile
    from aihwkit.simulator.tiles.array import TileModuleArray
except Exception as _exc:  # ImportError, OSError (undefined symbol), RuntimeError from the extension
    detail = f"import failed ({type(_exc).__name__}: {_exc})"
    raise EnvironmentMismatchError(mismatch_message(detail)) from _exc

# Our own entries: aihwkit 1.1.0's FloatingPointPreset is a TorchInferenceRPUConfig whose tile has no
# native update (tile.update raises NotImplementedError), and SingleRPUConfig(device=FloatingPointDevice())
# cannot be constructed in 1.1.0, so "FloatingPointPreset" here means FloatingPointRPUConfig (exact float tile
# whose tile.update is the exact W <- W - lr d^T x).
_EXTRA_PRESETS: dict[str, tuple[Any, str]] = {
    "FloatingPointPreset": (
        FloatingPointRPUConfig,
        "Exact floating-point tile (FloatingPointRPUConfig): no read noise, no pulses, exact SGD update.",
    ),
    "ConstantStep": (
        lambda: SingleRPUConfig(device=ConstantStepDevice()),
        "Single ConstantStepDevice with aihwkit's default periphery (SingleRPUConfig).",
    ),
}


def _docstring_summary(cls: type) -> str:
    """First paragraph of a class docstring on one line, Sphinx roles reduced to the bare name."""
    doc = inspect.getdoc(cls) or cls.__name__
    para = " ".join(doc.strip().split("\n\n")[0].split())
    para = re.sub(r":?\w+:`~?(?:[\w.]*\.)?(\w+)`", r"\1", para)
    return para


def _aihwkit_presets() -> dict[str, type]:
    """Preset rpu_config classes from aihwkit.simulator.presets whose tiles support a native update."""
    out = {}
    for name, obj in vars(_presets).items():
        if not (inspect.isclass(obj) and issubclass(obj, RPUConfigBase)):
            continue
        if issubclass(obj, TorchInferenceRPUConfig):  # torch-autograd tiles: no tile.update
            continue
        out[name] = obj
    return out


def list_presets() -> list[tuple[str, str]]:
    """All usable preset names with a one-line description, sorted by name."""
    rows = {name: _docstring_summary(cls) for name, cls in _aihwkit_presets().items()}
    rows.update({name: desc for name, (_, desc) in _EXTRA_PRESETS.items()})
    return sorted(rows.items())


def _device_types() -> dict[str, type]:
    """Single-device classes usable as device={"type": ...}: aihwkit's pulsed devices and preset devices."""
    out = {}
    for module in (_cfg_devices, _preset_devices):
        for name, obj in vars(module).items():
            if inspect.isclass(obj) and issubclass(obj, PulsedDevice) and obj is not PulsedDevice:
                out[name] = obj
    return out


def _field_names(obj: Any) -> list[str]:
    return [f.name for f in dataclasses.fields(obj)]


def _coerce(current: Any, value: Any, key: str, owner: str) -> Any:
    """Convert a TOML-ish value to the type of the field it replaces (enums by name or value)."""
    if isinstance(current, Enum):
        if isinstance(value, type(current)):
            return value
        for member in type(current):
            if str(value).lower() in (member.name.lower(), str(member.value).lower()):
                return member
        names = ", ".join(m.name for m in type(current))
        raise ConfigError(f"{owner}.{key}={value!r} is not a {type(current).__name__}; choose one of {names}")
    if isinstance(current, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{owner}.{key} must be true or false, got {value!r}")
        return value
    if isinstance(current, (int, float)) and not isinstance(current, bool):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{owner}.{key} must be a number, got {value!r}")
        return type(current)(value) if isinstance(current, float) else value
    return value


def _set_fields(obj: Any, values: dict, owner: str, what: str) -> None:
    """Set dataclass fields on obj, ConfigError naming the unknown key, the closest valid name and all.

    A table given for a field that is itself a parameter group (a transfer compound's ``transfer_update``,
    ``transfer_forward``) sets that group's fields."""
    names = _field_names(obj)
    for key, value in values.items():
        check_choice(key, names, what, where=f" on {type(obj).__name__}")
        current = getattr(obj, key)
        if isinstance(value, dict) and dataclasses.is_dataclass(current):
            _set_fields(current, value, f"{owner}.{key}", f"{what} ({key})")
            continue
        setattr(obj, key, _coerce(current, value, key, owner))


def _sub_devices(device: Any) -> list[Any]:
    """The single devices inside a compound device (unit cells, transfer compounds, mixed precision)."""
    subs = list(getattr(device, "unit_cell_devices", None) or [])
    if getattr(device, "device", None) is not None and dataclasses.is_dataclass(device.device):
        subs.append(device.device)
    return subs


def _override_unit_cells(device: Any, value: Any) -> None:
    """``unit_cell_devices = [{...}, {...}]``: one override table per sub-device, in the compound's order (a
    transfer compound's fast device first, the visible one last); ``{}`` leaves a device as the preset has it."""
    cells = list(getattr(device, "unit_cell_devices", None) or [])
    kind = type(device).__name__
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ConfigError(f"device.unit_cell_devices must be a list of tables, one per sub-device of {kind} "
                          f"(e.g. [{{}}, {{dw_min_std = 0.3}}]), got {value!r}")
    if len(value) != len(cells):
        raise ConfigError(f"device.unit_cell_devices has {len(value)} tables but {kind} has {len(cells)} "
                          f"sub-devices ({', '.join(type(c).__name__ for c in cells)}); give one table each")
    for cell, overrides in zip(cells, value, strict=True):
        _override_device(cell, overrides)


def _override_device(device: Any, values: dict) -> None:
    """Override fields on a device; on a compound, keys it lacks go to every sub-device that has them, and
    ``unit_cell_devices`` (a list of tables) overrides each sub-device on its own."""
    names = set(_field_names(device))
    subs = _sub_devices(device)
    for key, value in values.items():
        if key == "unit_cell_devices" and key in names:
            _override_unit_cells(device, value)
            continue
        if key in names:
            _set_fields(device, {key: value}, "device", "device parameter")
            continue
        holders = [s for s in subs if key in _field_names(s)]
        if not holders:
            valid = sorted(names.union(*(_field_names(s) for s in subs)))
            where = f" on {type(device).__name__}" + (
                f" or its sub-devices ({', '.join(type(s).__name__ for s in subs)})" if subs else "")
            raise ConfigError(choice_message(key, valid, "device parameter", where))
        for sub in holders:
            _set_fields(sub, {key: value}, "device", "device parameter")


def _base_config(preset: str) -> Any:
    if preset in _EXTRA_PRESETS:
        return _EXTRA_PRESETS[preset][0]()
    known = _aihwkit_presets()
    if preset in known:
        return known[preset]()
    names = sorted(set(known) | set(_EXTRA_PRESETS))
    raise ConfigError(choice_message(preset, names, "analog preset",
                                     listing=f"`analogdecorr presets` lists all {len(names)}"))


#: Sub-tables of the ``device`` table that set the rpu_config's own parameter groups instead of device fields:
#: ``mapping`` (e.g. weight_scaling_omega: how the weights map onto the conductance range) and ``update`` (the
#: pulsed update, e.g. desired_bl). They ride in the device table because they are part of choosing a device.
RPU_GROUPS = ("mapping", "update")


def make_rpu_config(
    preset: str,
    device: dict | None = None,
    io: dict | None = None,
    *,
    perfect_io: bool = False,
    update: dict | None = None,
) -> Any:
    """Build an aihwkit rpu_config from a preset name plus overrides.

    device: either field overrides on the preset's device, or {"type": "ConstantStepDevice", ...} for a
    single device of that class (the preset then only supplies the periphery: forward/backward/update).
    io: IOParameters fields applied to both forward and backward. update: UpdateParameters fields (e.g.
    pulse_type="DETERMINISTIC_IMPLICIT"). perfect_io: turn off all forward/backward non-idealities.
    The device table may hold the sub-tables named in RPU_GROUPS: ``mapping = {weight_scaling_omega = 1.0}``
    sets rpu_config.mapping fields, ``update = {...}`` rpu_config.update fields (before ``update``).
    """
    device = dict(device or {})
    groups = {name: device.pop(name) for name in RPU_GROUPS if isinstance(device.get(name), dict)}
    io = dict(io or {})
    cfg = _base_config(preset)
    if "type" in device:
        type_name = device.pop("type")
        types = _device_types()
        check_choice(type_name, sorted(types), "device type")
        dev = types[type_name]()
        _override_device(dev, device)
        kwargs = {"device": dev}
        if isinstance(cfg, IOManagedRPUConfig) and not isinstance(cfg, InferenceRPUConfig):
            # keep the preset's pulsed periphery; float/inference presets fall back to aihwkit's defaults
            kwargs.update(forward=cfg.forward, backward=cfg.backward, update=cfg.update)
        cfg = SingleRPUConfig(**kwargs)
    elif device:
        _override_device(cfg.device, device)
    has_io = isinstance(getattr(cfg, "forward", None), IOParameters)
    if io or perfect_io:
        if not has_io:
            raise ConfigError(f"preset '{preset}' has no analog periphery (exact float tile); io settings "
                              f"and perfect_io do not apply")
        for direction in (cfg.forward, cfg.backward):
            _set_fields(direction, io, "io", "io field")
            if perfect_io:
                direction.is_perfect = True
    if "mapping" in groups:
        if getattr(cfg, "mapping", None) is None:
            raise ConfigError(f"preset '{preset}' has no weight mapping parameters; drop device.mapping")
        _set_fields(cfg.mapping, groups["mapping"], "device.mapping", "mapping field")
    update = {**groups.get("update", {}), **(update or {})}
    if update:
        if not isinstance(getattr(cfg, "update", None), UpdateParameters):
            raise ConfigError(f"preset '{preset}' has no pulsed update parameters")
        _set_fields(cfg.update, update, "update", "update field")
    return cfg


def read_noise(rpu_config: Any) -> float:
    """Forward additive output (read) noise std of the tile; 0 when the forward pass is perfect.

    aihwkit adds it in normalised units: with noise management ABS_MAX each sample's input is scaled to
    max|x| = 1 first, so the noise on a pre-activation is out_noise·max|x| — this value is a lower bound.
    """
    fwd = getattr(rpu_config, "forward", None)
    if not isinstance(fwd, IOParameters) or fwd.is_perfect:
        return 0.0
    return float(fwd.out_noise)


def check_sigma(sigma: float, rpu_config: Any) -> str | None:
    """Warning text when NP's perturbation σ is below the tile's read noise (NP would measure the noise)."""
    noise = read_noise(rpu_config)
    if sigma < noise:
        return (f"NP perturbation sigma={sigma:g} is below the analog tile's forward read noise "
                f"out_noise={noise:g}: the loss difference will mostly measure read noise, not the gradient "
                f"(raise sigma above {noise:g} or lower io.out_noise)")
    return None
