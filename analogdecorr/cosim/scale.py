"""The per-layer map of float activations into the unit's data words: x_int = sat_W(round(x · scale · 2^F)).

The scale is a power of two (a shift in hardware), chosen from the first training batch a layer sees so that
its largest |x| lands at most at 2^−headroom of the W-bit range (default 1 bit: half the range): the unit's
centred input x − μ (up to twice |x|) then still fits, and the first batch saturates nothing. Activity that grows
during training saturates later words; ``decor_headroom`` buys more room at the cost of low bits. A given scale
(``decor_scale``) is checked on that batch: if most of it saturates (or rounds to 0), the run stops with an
error naming the layer and the fix.
"""

from __future__ import annotations

import math

import numpy as np
from torch import Tensor

from ..errors import ConfigError
from ..fixed.format import UnitFormat

#: Bits of headroom between the first batch's largest |x| and the data word's range (``decor_headroom``).
HEADROOM_BITS = 1
#: A first batch with more than this fraction of saturated (or all-zero) words is refused.
MAX_BAD_FRACTION = 0.5


def word_limit(fmt: UnitFormat) -> float:
    """The largest |value| a data word holds, in real units (2^(W−1−F))."""
    return 2.0 ** (fmt.width - 1 - fmt.frac)


def choose_scale(x: Tensor, fmt: UnitFormat, headroom: int = HEADROOM_BITS) -> float:
    """The power of two that maps max|x| of ``x`` to at most 2^−headroom of the word's range."""
    peak = float(x.detach().abs().max()) if x.numel() else 0.0
    if not math.isfinite(peak) or peak == 0.0:
        return 1.0
    return 2.0 ** math.floor(math.log2(word_limit(fmt) * 2.0**-headroom / peak))


def quantize(x: Tensor, scale: float, fmt: UnitFormat) -> tuple[np.ndarray, int]:
    """Rows (n, d) of floats → int64 words (round half to even, saturated) and the number saturated."""
    y = x.detach().cpu().numpy().astype(np.float64)
    y *= scale * 2.0**fmt.frac  # exact: a power of two
    np.rint(y, out=y)  # half to even
    clipped = np.clip(y, fmt.w_min, fmt.w_max)
    sat = int(np.count_nonzero(clipped != y))
    return clipped.astype(np.int64), sat


def check_first_batch(
    x: Tensor, scale: float, fmt: UnitFormat, layer: str, given: bool, headroom: int = HEADROOM_BITS
) -> None:
    """ConfigError naming ``layer`` when most of its first batch saturates (or is all zero) at ``scale``."""
    ints, sat = quantize(x, scale, fmt)
    n = max(ints.size, 1)
    auto = choose_scale(x, fmt, headroom)
    where = f"--decor-scale {scale:g}" if given else f"the format (W={fmt.width}, F={fmt.frac})"
    if sat / n > MAX_BAD_FRACTION:
        need = max(1, math.ceil(math.log2(scale / auto)))
        raise ConfigError(
            f"{layer}: {sat / n:.0%} of the first batch saturates the unit's {fmt.width}-bit words with {where}; "
            f"use --decor-scale {auto:g} (or leave it unset), or lower --unit-frac to {max(0, fmt.frac - need)}"
        )
    nonzero = x.detach().reshape(ints.shape).cpu().numpy() != 0
    lost = int(np.count_nonzero((ints == 0) & nonzero))
    live = max(int(nonzero.sum()), 1)
    if given and lost > MAX_BAD_FRACTION * live:
        raise ConfigError(
            f"{layer}: {lost / live:.0%} of the first batch's non-zero values round to 0 in the unit's words "
            f"with {where}; "
            f"use --decor-scale {auto:g} (or leave it unset)"
        )
