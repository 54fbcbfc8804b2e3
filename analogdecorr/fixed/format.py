"""Fixed-point format of the decorrelation unit and the integer helpers shared by the model and the RTL tests.

Everything here follows ``hdl/NUMERICS.md`` bit for bit: the rounding modes of ``rnd(v, k)``, saturation of
signed B-bit words, and the Fibonacci LFSR that feeds stochastic rounding. The helpers work on python ints
and on numpy int64 arrays alike (the model uses arrays, the RTL tests often use ints).
"""

from __future__ import annotations

import functools
import math
import operator
from dataclasses import asdict, dataclass, fields
from typing import Any, TypeVar

import numpy as np

from ..choices import check_choice
from ..errors import ConfigError, DataError, FormatError

ROUNDING_MODES = ("trunc", "half_up", "half_even", "stochastic")
#: Update rules the unit implements (NUMERICS.md "Rules"); both use 3d² multiplies per sample.
UNIT_RULES = ("offdiag", "whiten")
#: Legal ``centre_shift`` m: 0 = no centring, m >= 1 = running mean with momentum 2^-m.
MAX_CENTRE_SHIFT = 16
#: Modes ``quantize`` accepts (stochastic rounding needs the unit's LFSR, which float input never sees).
QUANTIZE_MODES = ("trunc", "half_up", "half_even")
#: Intermediates of the integer model must fit this many bits (int64 minus one spare bit).
MAX_INTERMEDIATE_BITS = 62

IntLike = TypeVar("IntLike", int, np.integer, np.ndarray)


def check_mode(mode: str, choices: tuple[str, ...] = ROUNDING_MODES) -> str:
    """Return ``mode`` if it is one of ``choices``; otherwise FormatError naming the closest valid mode."""
    return check_choice(mode, choices, "rounding mode", error=FormatError)


def check_rule(rule: object) -> str:
    """Return ``rule`` if the unit implements it; FormatError otherwise (``kappa`` explained, others: closest)."""
    if rule == "kappa":
        raise FormatError(
            "rule='kappa' is not available on the unit: its diag(<z^2> - 1) R term needs a 4th product per "
            "element, and the datapath has 3 multiplies per element; use 'offdiag' or 'whiten'"
        )
    return str(check_choice(rule, UNIT_RULES, "unit rule", error=FormatError))


# --------------------------------------------------------------------------------------------------- helpers
def round_shift(v: IntLike, k: int, mode: str, rand: IntLike | None = None) -> IntLike:
    """``rnd(v, k)`` of NUMERICS.md: drop the k ≥ 0 low bits of the signed integer(s) ``v``.

    ``trunc`` = floor(v / 2^k); ``half_up`` = floor((v + 2^(k-1)) / 2^k); ``half_even`` = nearest, ties to
    even; ``stochastic`` = floor((v + r) / 2^k) with r the k low bits of ``rand`` (the LFSR state(s), same
    shape as v or broadcastable). k = 0 returns v unchanged in every mode. Python ints give python ints,
    arrays give int64 arrays.
    """
    check_mode(mode)
    k = operator.index(k)
    if k < 0:
        raise ValueError(f"round_shift drops k >= 0 bits, got k={k}; shift left exactly instead")
    if k == 0:
        return v
    if mode == "trunc":
        return v >> k
    if mode == "half_up":
        return (v + (1 << (k - 1))) >> k
    if mode == "half_even":
        # q0 = floor(v/2^k) is odd ⇒ a tie rounds up; even ⇒ a tie rounds down: add half−1+parity(q0), floor.
        return (v + ((1 << (k - 1)) - 1) + ((v >> k) & 1)) >> k
    if rand is None:
        raise ValueError("stochastic rounding needs rand (the LFSR state) for every value")
    return (v + (rand & ((1 << k) - 1))) >> k


def word_range(bits: int) -> tuple[int, int]:
    """(min, max) of a signed ``bits``-bit two's-complement word."""
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def saturate(v: IntLike, bits: int) -> tuple[IntLike, int]:
    """Clamp ``v`` to a signed ``bits``-bit word; returns (clamped, number of values that were clamped)."""
    lo, hi = word_range(bits)
    if isinstance(v, np.ndarray):
        clamped = np.clip(v, lo, hi)
        return clamped, int(np.count_nonzero(clamped != v))
    if v < lo:
        return type(v)(lo), 1
    if v > hi:
        return type(v)(hi), 1
    return v, 0


def quantize(x: Any, width: int, frac: int, mode: str = "half_even") -> tuple[np.ndarray, int]:
    """Float(s) → signed ``width``-bit ints with ``frac`` fraction bits, rounded by ``mode`` and saturated.

    Returns (int64 array, number saturated). Scaling by 2^frac is exact in float64, so the rounding is exactly
    the named mode on the real value. NaN has no integer: DataError.
    """
    check_mode(mode, QUANTIZE_MODES)
    y = np.ldexp(np.asarray(x, dtype=np.float64), frac)
    if np.isnan(y).any():
        raise DataError("quantize got NaN input: there is no fixed-point value for NaN; clean the data first")
    if mode == "trunc":
        y = np.floor(y)
    elif mode == "half_up":
        y = np.floor(y + 0.5)
    else:
        y = np.rint(y)  # IEEE round-half-to-even
    lo, hi = word_range(width)
    # clip one past the range before the cast so huge values (and ±inf) cannot wrap; then count saturation
    ints = np.clip(y, lo - 1, hi + 1).astype(np.int64)
    return saturate(ints, width)


def dequantize(ints: Any, frac: int) -> np.ndarray:
    """Signed ints with ``frac`` fraction bits → float64 (exact for |ints| < 2^53)."""
    return np.ldexp(np.asarray(ints, dtype=np.float64), -frac)


class Lfsr:
    """Fibonacci LFSR of NUMERICS.md.

    One step: feedback = XOR of state bits (tap − 1) over the taps;
    state ← ((state << 1) | feedback) mod 2^width.
    ``value`` is the current state; the unit reads it for one stochastic rounding and then steps once.
    """

    def __init__(self, width: int = 32, taps: tuple[int, ...] = (32, 22, 2, 1), seed: int = 0xACE1):
        _check_lfsr(width, taps, seed)
        self.width = int(width)
        self.taps = tuple(int(t) for t in taps)
        self._mask = (1 << self.width) - 1
        self._state = int(seed)

    @classmethod
    def from_format(cls, fmt: UnitFormat, state: int | None = None) -> Lfsr:
        """The format's LFSR at its seed, or at ``state`` (a value the LFSR reached; the format is checked)."""
        if state is None:
            return cls(fmt.lfsr_width, fmt.lfsr_taps, fmt.lfsr_seed)
        lfsr = cls.__new__(cls)
        lfsr.width, lfsr.taps, lfsr._mask = fmt.lfsr_width, fmt.lfsr_taps, (1 << fmt.lfsr_width) - 1
        lfsr._state = int(state)
        return lfsr

    @property
    def value(self) -> int:
        return self._state

    def step(self) -> int:
        """Advance once and return the new state."""
        s = self._state
        fb = 0
        for t in self.taps:
            fb ^= (s >> (t - 1)) & 1
        self._state = ((s << 1) | fb) & self._mask
        return self._state

    def draw(self, n: int, bits: int | None = None) -> np.ndarray:
        """The next n values as int64 (current value first), advancing n steps: ≡ n × (read value, step()).

        ``bits``: return only each value's ``bits`` low bits (what stochastic rounding reads), which is cheaper.
        """
        return self.draw_words(n, bits).astype(np.int64)

    def draw_words(self, n: int, bits: int | None = None) -> np.ndarray:
        """``draw`` as the narrowest unsigned words holding the values (uint8..uint64), without the int64 copy.

        ``bits``: return only each value's ``bits`` low bits (what stochastic rounding reads), which is cheaper.
        Vectorised in three stages. The first 4096 output bits are linear in the state (one parity per bit).
        The output bit sequence b (b[p] = XOR_t b[p − t]) is then extended in blocks of L values from the last
        L + width + 6 known ones: every polynomial multiple of the feedback polynomial c(x) = 1 + Σ_t x^t is a
        valid recurrence, and 1 + x^L r(x) with r = x^−L mod c gives b[p] = XOR_{k in r} b[p − L − k], so the
        known length about doubles per block. The recurrence runs on 8-bit windows of b (it holds bitwise), and
        each value, a window of b, is assembled from them by doubling: V_2j[p] = V_j[p] | V_j[p − j] << j.
        """
        n = operator.index(n)
        if n < 0:
            raise ValueError("draw needs n >= 0")
        w = self.width
        k = w if bits is None else operator.index(bits)
        if not 0 <= k <= w:
            raise ValueError(f"draw bits={k} must be in 0..{w}")
        # seq[w − 1 − i] = seed bit i; seq[w + m] = feedback of step m, so state_m bit i is seq[w + m − 1 − i].
        # The first bits are linear in the state: bit p = parity(rows[p] & state), one vectorised step.
        rows = _lfsr_bit_rows(self.taps, w)
        head = min(w + n, len(rows))
        win = np.zeros(w + n, dtype=np.uint8)
        win[:head] = np.bitwise_count(rows[:head] & np.uint64(self._state)) & np.uint8(1)
        # win[p] = the 8-bit window b[p−7..p] (b[p] = bit 0; bits before 0 read as 0). Windows obey the bit
        # recurrences bitwise, so the blocks below extend all 8 bits at once.
        for j in (1, 2, 4):
            win[j:head] |= win[: head - j] << np.uint8(j)
        known = head
        while known < w + n:
            lag0 = known - w - 6  # L: every bit of a new window, and of its sources, is a real bit
            block = min(lag0, w + n - known)
            for lag in _lfsr_block_taps(self.taps, w, lag0):
                start = known - lag0 - lag
                win[known : known + block] ^= win[start : start + block]
            known += block
        state = 0
        for i in range(w):
            state |= int(win[w + n - 1 - i] & 1) << i
        self._state = state
        # values: windows of `span` bits ending at position w − 1 + m, doubled up from the 8-bit windows
        vals: np.ndarray = win
        span = 8
        while span < k:
            wide = np.uint16 if span == 8 else np.uint32 if span == 16 else np.uint64
            nxt = vals.astype(wide)
            nxt[span:] |= nxt[:-span] << wide(span)
            vals, span = nxt, 2 * span
        out = vals[w - 1 : w - 1 + n]
        return out & vals.dtype.type((1 << k) - 1)


def _gf2_mulmod(a: int, b: int, mod: int, deg: int) -> int:
    """a·b mod ``mod`` over GF(2) (polynomials as int bit masks, ``mod`` of degree ``deg``)."""
    out = 0
    while b:
        if b & 1:
            out ^= a
        b >>= 1
        a <<= 1
        if (a >> deg) & 1:
            a ^= mod
    return out


_LFSR_HEAD_BITS = (
    4096  # bits of an LFSR draw computed directly from the state (the rest by block recurrences)
)


@functools.lru_cache(maxsize=16)
def _lfsr_bit_rows(taps: tuple[int, ...], width: int) -> np.ndarray:
    """Masks over the state's bits: output bit p of ``draw``'s sequence is the parity of (mask p & state)."""
    rows = [1 << (width - 1 - p) for p in range(width)]  # the state's own bits, MSB first
    for p in range(width, width + _LFSR_HEAD_BITS):
        fb = 0
        for t in taps:
            fb ^= rows[p - t]
        rows.append(fb)
    return np.array(rows, dtype=np.uint64)


@functools.lru_cache(maxsize=4096)
def _lfsr_block_taps(taps: tuple[int, ...], width: int, block: int) -> tuple[int, ...]:
    """Lags k of the recurrence b[p] = XOR_k b[p − block − k]: the set bits of x^−block mod c(x)."""
    c = 1
    for t in taps:
        c |= 1 << t
    g = c >> 1  # x·g(x) = c(x) − 1 ≡ 1 (mod c): g = x^−1 mod c
    r, base, e = 1, g, block
    while e:
        if e & 1:
            r = _gf2_mulmod(r, base, c, width)
        base = _gf2_mulmod(base, base, c, width)
        e >>= 1
    return tuple(i for i in range(width) if (r >> i) & 1)


def _check_lfsr(width: Any, taps: Any, seed: Any) -> None:
    try:
        width = operator.index(width)
        seed = operator.index(seed)
        taps = tuple(operator.index(t) for t in taps)
    except TypeError as exc:
        raise FormatError(
            f"LFSR width, taps and seed must be integers ({exc}); e.g. 32, (32, 22, 2, 1), 0xACE1"
        ) from None
    if not 2 <= width <= MAX_INTERMEDIATE_BITS:
        raise FormatError(f"lfsr_width={width} is outside 2..{MAX_INTERMEDIATE_BITS}; use 32 (the default)")
    if not taps:
        raise FormatError("lfsr_taps is empty: give the feedback taps, e.g. (32, 22, 2, 1)")
    bad = [t for t in taps if not 1 <= t <= width]
    if bad:
        raise FormatError(f"lfsr_taps {bad} are outside 1..lfsr_width={width}; taps count bits from 1 (LSB)")
    if len(set(taps)) != len(taps):
        raise FormatError(
            f"lfsr_taps {taps} repeat a tap (a repeated tap cancels in the XOR); list each once"
        )
    if width not in taps:
        raise FormatError(
            f"lfsr_taps {taps} do not include lfsr_width={width}: the top state bit would never feed back; "
            f"add {width} (e.g. (32, 22, 2, 1) for width 32)"
        )
    if not 0 < seed < (1 << width):
        raise FormatError(
            f"lfsr_seed={seed} must be in 1..2^{width}-1 (seed 0 locks the LFSR at 0); "
            f"use e.g. {0xACE1 if width >= 16 else 1}"
        )


# --------------------------------------------------------------------------------------------------- lr ↔ shift
def _check_rows(rows_per_update: Any) -> int:
    if isinstance(rows_per_update, bool):
        raise ConfigError(f"rows_per_update={rows_per_update!r} must be an integer >= 1, not a bool")
    try:
        rows = operator.index(rows_per_update)
    except TypeError:
        raise ConfigError(f"rows_per_update={rows_per_update!r} must be an integer >= 1") from None
    if rows < 1:
        raise ConfigError(
            f"rows_per_update={rows}: the float rule averages over k >= 1 learning rows per batch "
            "(k = floor(sample_frac * batch_size) + 1)"
        )
    return rows


def shift_for_lr(decor_lr: float, rows_per_update: int, *, max_shift: int = MAX_INTERMEDIATE_BITS) -> int:
    """The unit's shift s whose per-sample step η = 2^−s matches a float rule's ``decor_lr``.

    The float rule's lr is per batch over k = ``rows_per_update`` learning rows: ΔR = −lr ⟨z zᵀ⟩ R
    = −(lr/k) Σ z zᵀ R, so one learning sample of the unit should step by lr/k, and s = round(log2(k / lr))
    (nearest in log scale: η is within a factor √2 of lr/k). ``max_shift`` is the largest legal s (pass the
    format's ``r_frac``: a smaller η underflows R's LSB). Out of range: FormatError naming the fix.
    """
    rows = _check_rows(rows_per_update)
    if isinstance(decor_lr, bool) or not isinstance(decor_lr, (int, float, np.floating, np.integer)):
        raise ConfigError(f"decor_lr={decor_lr!r} must be a number > 0")
    lr = float(decor_lr)
    if not (math.isfinite(lr) and lr > 0):
        raise ConfigError(f"decor_lr={decor_lr!r} must be a finite number > 0 (e.g. 3e-5)")
    step = lr / rows
    shift = round(math.log2(rows / lr))
    if shift < 0:
        raise FormatError(
            f"decor_lr={lr:g} over k={rows} rows is a per-sample step lr/k = {step:.3g} > 1, but the unit's "
            f"η = 2^-shift is at most 1 (shift >= 0); use decor_lr <= {rows * math.sqrt(2):.3g}"
        )
    if shift > max_shift:
        raise FormatError(
            f"decor_lr={lr:g} over k={rows} rows needs shift={shift} (η = 2^-{shift} ≈ lr/k = {step:.3g}), "
            f"above the largest legal shift {max_shift} (η would underflow R's LSB 2^-r_frac); "
            f"use r_frac >= {shift} or a larger decor_lr"
        )
    return shift


def lr_for_shift(shift: int, rows_per_update: int) -> float:
    """Inverse of ``shift_for_lr``: the float per-batch lr over k learning rows that η = 2^−shift matches
    (k · 2^−shift)."""
    rows = _check_rows(rows_per_update)
    if isinstance(shift, bool):
        raise ConfigError(f"shift={shift!r} must be an integer >= 0, not a bool")
    try:
        s = operator.index(shift)
    except TypeError:
        raise ConfigError(f"shift={shift!r} must be an integer >= 0") from None
    if s < 0:
        raise ConfigError(f"shift={s}: η = 2^-shift needs shift >= 0 (η <= 1)")
    return rows * 2.0**-s


# --------------------------------------------------------------------------------------------------- format
_INT_FIELDS = (
    "size",
    "width",
    "frac",
    "r_width",
    "r_frac",
    "shift",
    "lfsr_width",
    "lfsr_seed",
    "centre_shift",
)


@dataclass(frozen=True)
class UnitFormat:
    """Number formats and rounding of one decorrelation unit (NUMERICS.md, table "Parameters").

    size d; x, z, v, p, e words: signed ``width`` W bits with ``frac`` F fraction bits; R master word:
    ``r_width`` W_R bits with ``r_frac`` F_R fraction bits; η = 2^−``shift`` per learning sample; ``rule``:
    ``offdiag`` (ΔR = −η (z zᵀ − diag z²) R) or ``whiten`` (ΔR = −η (z zᵀ R − R)); ``centre_shift`` m: 0 = no
    centring, m >= 1 subtracts a running mean with momentum 2^−m from x before R.
    """

    size: int
    width: int
    frac: int
    r_width: int
    r_frac: int
    shift: int
    rounding: str = "half_even"
    lfsr_width: int = 32
    lfsr_taps: tuple[int, ...] = (32, 22, 2, 1)
    lfsr_seed: int = 0xACE1
    rule: str = "offdiag"
    centre_shift: int = 0

    def __post_init__(self) -> None:
        for name in _INT_FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool):
                raise FormatError(f"{name}={value!r} must be an integer, not a bool")
            try:
                object.__setattr__(self, name, operator.index(value))
            except TypeError:
                raise FormatError(f"{name}={value!r} must be an integer") from None
        try:
            object.__setattr__(self, "lfsr_taps", tuple(operator.index(t) for t in self.lfsr_taps))
        except TypeError:
            raise FormatError(f"lfsr_taps={self.lfsr_taps!r} must be a sequence of integers") from None
        object.__setattr__(self, "rule", check_rule(self.rule))
        if not 0 <= self.centre_shift <= MAX_CENTRE_SHIFT:
            raise FormatError(
                f"centre_shift={self.centre_shift} is outside 0..{MAX_CENTRE_SHIFT}: 0 turns centring off, "
                f"m >= 1 is a running mean with momentum 2^-m (e.g. 6 ≈ 0.016)"
            )

        d, w, f, wr, fr, s = self.size, self.width, self.frac, self.r_width, self.r_frac, self.shift
        if d < 2:
            raise FormatError(f"size={d}: the unit decorrelates vectors of at least 2 values; use size >= 2")
        if not 8 <= w <= 18:
            raise FormatError(
                f"width={w} is outside 8..18 (data words are signed 8- to 18-bit); pick W in 8..18"
            )
        if not 0 <= f < w:
            raise FormatError(
                f"frac={f} with width={w}: need 0 <= F < W (one bit is the sign); use frac <= {w - 1}"
            )
        if wr < w:
            raise FormatError(
                f"r_width={wr} < width={w}: the R master word must be at least as wide; use >= {w}"
            )
        if fr < f:
            raise FormatError(
                f"r_frac={fr} < frac={f}: R needs at least the data's fraction bits; use >= {f}"
            )
        if wr - fr < w - f:
            raise FormatError(
                f"r_width - r_frac = {wr - fr} integer bits < width - frac = {w - f}: R's integer range must "
                f"cover the data's; use r_width >= {fr + w - f}"
            )
        if s < 0:
            raise FormatError(f"shift={s}: η = 2^-shift needs shift >= 0 (η <= 1)")
        if s > fr:
            raise FormatError(
                f"shift={s} > r_frac={fr}: η = 2^-{s} is below R's LSB 2^-{fr}, so updates underflow; "
                f"use shift <= {fr} or r_frac >= {s}"
            )
        object.__setattr__(self, "rounding", check_mode(self.rounding))
        _check_lfsr(self.lfsr_width, self.lfsr_taps, self.lfsr_seed)
        if self.rounding == "stochastic" and self.update_drop > self.lfsr_width:
            raise FormatError(
                f"stochastic rounding drops 2F+s-F_R = {self.update_drop} bits per update but the LFSR has "
                f"only lfsr_width={self.lfsr_width} random bits; raise lfsr_width or r_frac"
            )
        if self.intermediate_bits > MAX_INTERMEDIATE_BITS:
            raise FormatError(
                f"this format needs {self.intermediate_bits}-bit intermediates but the integer model uses "
                f"int64 (<= {MAX_INTERMEDIATE_BITS}); reduce r_width, or raise shift so 2F+s-F_R is not so "
                "negative"
            )

    # ------------------------------------------------------------------ derived numbers
    @property
    def one(self) -> int:
        """1.0 in the data format (2^F)."""
        return 1 << self.frac

    @property
    def r_one(self) -> int:
        """1.0 in the R format (2^F_R): the identity's diagonal."""
        return 1 << self.r_frac

    @property
    def w_min(self) -> int:
        return word_range(self.width)[0]

    @property
    def w_max(self) -> int:
        return word_range(self.width)[1]

    @property
    def r_min(self) -> int:
        return word_range(self.r_width)[0]

    @property
    def r_max(self) -> int:
        return word_range(self.r_width)[1]

    @property
    def eta(self) -> float:
        return 2.0**-self.shift

    @property
    def view_drop(self) -> int:
        """Bits dropped from R to its W-bit view Rw: F_R − F."""
        return self.r_frac - self.frac

    @property
    def update_drop(self) -> int:
        """Bits dropped from z·e (2F fraction bits, times η) to R's LSB: 2F + s − F_R (< 0: shift left)."""
        return 2 * self.frac + self.shift - self.r_frac

    @property
    def view_rounding(self) -> str:
        """Rounding of every write except the R update: the mode itself, ``half_even`` in stochastic mode."""
        return "half_even" if self.rounding == "stochastic" else self.rounding

    @property
    def product_bits(self) -> int:
        """Bits of one signed W×W product."""
        return 2 * self.width

    @property
    def acc_bits(self) -> int:
        """Bits of a full-precision sum of d products: 2W + ⌈log₂ d⌉."""
        return 2 * self.width + math.ceil(math.log2(self.size))

    @property
    def mu_bits(self) -> int:
        """Bits of a running-mean word mu (W + m; F + m fraction bits); W when centring is off (no mu state)."""
        return self.width + self.centre_shift

    @property
    def update_bits(self) -> int:
        """Bits of the update term U before rounding: z·e (2W) for offdiag, z·v − (Rw << F) (2W + 1) for whiten."""
        return 2 * self.width + (1 if self.rule == "whiten" else 0)

    @property
    def intermediate_bits(self) -> int:
        """Largest intermediate (magnitude bits plus sign) the model forms; checked against int64."""
        left = max(0, -self.update_drop)
        centring = self.mu_bits + 1 if self.centre_shift else 0  # (x << m) − mu
        return max(self.acc_bits, self.r_width, self.update_bits + left, centring) + 1

    @property
    def multipliers_per_sample(self) -> int:
        """Analytic W×W multiplies per sample: 3d²."""
        return 3 * self.size * self.size

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (taps as a list)."""
        out = asdict(self)
        out["lfsr_taps"] = list(self.lfsr_taps)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UnitFormat:
        """Inverse of ``to_dict``; unknown keys raise FormatError naming the closest field.

        Manifests written before unit v2 carry ``delayed``: ``false`` is accepted (and ignored), ``true`` is a
        FormatError because the delayed mode was removed.
        """
        values = dict(data)
        if "delayed" in values:
            delayed = values.pop("delayed")
            if delayed is not False:
                raise FormatError(
                    f"delayed={delayed!r}: the delayed-update mode was removed in unit v2 (it saved no cycles per "
                    "sample); drop 'delayed' from the manifest and re-export the unit"
                )
        names = tuple(f.name for f in fields(cls))
        for key in values:
            check_choice(key, names, "format field", error=FormatError)
        if "lfsr_taps" in values:
            values["lfsr_taps"] = tuple(values["lfsr_taps"])
        try:
            return cls(**values)
        except TypeError as exc:
            raise FormatError(f"format manifest is incomplete: {exc}") from None
