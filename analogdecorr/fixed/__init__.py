"""Fixed-point decorrelation unit: number formats, the integer model (the specification), float comparison."""

from .compare import compare
from .format import (
    QUANTIZE_MODES,
    ROUNDING_MODES,
    UNIT_RULES,
    Lfsr,
    UnitFormat,
    dequantize,
    lr_for_shift,
    quantize,
    round_shift,
    saturate,
    shift_for_lr,
    word_range,
)
from .model import Result, UnitState, run

__all__ = [
    "QUANTIZE_MODES",
    "ROUNDING_MODES",
    "UNIT_RULES",
    "Lfsr",
    "Result",
    "UnitFormat",
    "UnitState",
    "compare",
    "dequantize",
    "lr_for_shift",
    "quantize",
    "round_shift",
    "run",
    "saturate",
    "shift_for_lr",
    "word_range",
]
