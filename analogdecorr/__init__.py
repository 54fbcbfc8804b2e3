"""analogdecorr: decorrelated learning rules on simulated analog crossbars, and a fixed-point decorrelation unit
for FPGAs.

The float reference (``Decorrelator``, ``DecorLinear``, ``DecorConv2d``, ``build_model``, ``train``) imports only
torch; the analog backend (``analogdecorr.backends.analog``, aihwkit) and the hardware side
(``analogdecorr.fixed``, ``analogdecorr.hdl``) are imported when used.
"""

from .config import RunConfig, load_config, resolve
from .data import Dataset, load_dataset
from .decor import DecorConv2d, DecorLinear, Decorrelator
from .errors import (
    AnalogDecorrError,
    ConfigError,
    DataError,
    DivergenceError,
    EnvironmentMismatchError,
    FormatError,
)
from .models import Network, build_model
from .rules import make_rule
from .train import train

__version__ = "0.1.0"

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
