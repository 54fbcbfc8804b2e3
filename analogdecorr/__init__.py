"""analogdecorr: decorrelated learning rules on simulated analog crossbars, and a fixed-point decorrelation unit
for FPGAs.

The float reference (``Decorrelator``, ``DecorLinear``, ``DecorConv2d``, ``build_model``, ``train``) imports only
torch; ``DecorLinear`` and ``DecorConv2d`` are the layers ``build_model`` stacks and ``train`` trains. The analog
backend (``analogdecorr.backends.analog``, aihwkit) and the hardware side (``analogdecorr.fixed``,
``analogdecorr.hdl``) are imported when used.

Every name below is imported on first use (PEP 562), so ``import analogdecorr`` (which any ``analogdecorr.x``
import runs first) costs nothing: ``analogdecorr hdl ...`` never loads torch.
"""

from __future__ import annotations

import sys
from importlib import import_module
from types import ModuleType
from typing import TYPE_CHECKING, Any

from .errors import (
    AnalogDecorrError,
    ConfigError,
    DataError,
    DivergenceError,
    EnvironmentMismatchError,
    FormatError,
)

if TYPE_CHECKING:
    from .config import RunConfig, load_config, resolve
    from .data import Dataset, load_dataset
    from .decor import DecorConv2d, DecorLinear, Decorrelator
    from .models import Network, build_model
    from .rules import make_rule
    from .train import train

__version__ = "0.1.0"

# public name -> the module that defines it
_LAZY = {
    "RunConfig": "config",
    "load_config": "config",
    "resolve": "config",
    "Dataset": "data",
    "load_dataset": "data",
    "DecorConv2d": "decor",
    "DecorLinear": "decor",
    "Decorrelator": "decor",
    "Network": "models",
    "build_model": "models",
    "make_rule": "rules",
    "train": "train",
}

__all__ = [
    "AnalogDecorrError",
    "ConfigError",
    "DataError",
    "Dataset",
    "DecorConv2d",
    "DecorLinear",
    "Decorrelator",
    "DivergenceError",
    "EnvironmentMismatchError",
    "FormatError",
    "Network",
    "RunConfig",
    "build_model",
    "load_config",
    "load_dataset",
    "make_rule",
    "resolve",
    "train",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'analogdecorr' has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups do not come back here
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _Package(ModuleType):
    """Keeps ``analogdecorr.train`` the function, as the eager ``from .train import train`` did: importing the
    submodule ``analogdecorr.train`` would otherwise bind the module over the name."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "train" and isinstance(value, ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
