"""Amaranth building blocks for the unit's arithmetic: ``rnd(v, k)``, saturation (sign-bit checks) and the
Fibonacci LFSR (one step, and n values ahead as flat XORs), mirroring ``hdl/NUMERICS.md`` and
``analogdecorr.fixed.format`` bit for bit.

All functions return combinational expressions; the unit registers them where its pipeline wants a stage.
Saturation returns the clamped value and a one-bit "clamped" flag that feeds the sticky overflow flag.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Mux, Value, signed

from ..fixed.format import ROUNDING_MODES, UnitFormat, check_mode


def round_shift(v: Value, k: int, mode: str, rand: Value | None = None) -> Value:
    """``rnd(v, k)``: drop the ``k`` ≥ 0 low bits of the signed value ``v`` (result stays signed).

    ``trunc`` floor(v/2^k); ``half_up`` floor((v + 2^(k−1))/2^k); ``half_even`` nearest, ties to even
    (adds 2^(k−1) − 1 + bit k of v, then floors); ``stochastic`` floor((v + r)/2^k), r = the k low bits of
    ``rand``.
    The additions widen by one bit, so nothing wraps.
    """
    check_mode(mode, ROUNDING_MODES)
    v = Value.cast(v).as_signed()
    if k < 0:
        raise ValueError(f"round_shift drops k >= 0 bits, got k={k}")
    if k == 0:
        return v
    if mode == "trunc":
        return v >> k
    if mode == "half_up":
        return (v + (1 << (k - 1))) >> k
    if mode == "half_even":
        parity = v[k] if k < len(v) else v[-1]  # bit k of the sign-extended v: the parity of floor(v/2^k)
        return (v + ((1 << (k - 1)) - 1) + parity) >> k
    if rand is None:
        raise ValueError("stochastic rounding needs rand (the LFSR state)")
    return (v + Value.cast(rand)[:k]) >> k


def saturate(v: Value, width: int) -> tuple[Value, Value]:
    """Clamp signed ``v`` to a signed ``width``-bit word: (clamped value, clamped flag).

    The range check looks only at the sign bits: ``v`` fits iff bits [width − 1, len(v)) are all equal, so no
    full-width comparator (carry chain) is built; the clamp direction is the top bit.
    """
    v = Value.cast(v).as_signed()
    if len(v) <= width:
        return v, Const(0, 1)
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    top = v[width - 1 :]
    fits = top.all() | ~top.any()
    out = Mux(fits, v[:width].as_signed(), Mux(v[-1], Const(lo, signed(width)), Const(hi, signed(width))))
    return out.as_signed(), ~fits


# --------------------------------------------------------------------------------------------------- LFSR
def lfsr_step(state: Value, taps: tuple[int, ...]) -> Value:
    """One step of the Fibonacci LFSR: feedback = XOR of bits (tap − 1); state ← (state << 1 | fb) mod 2^w."""
    state = Value.cast(state)
    fb = state[taps[0] - 1]
    for t in taps[1:]:
        fb = fb ^ state[t - 1]
    return Cat(fb, state[: len(state) - 1])


def _lfsr_symbolic(width: int, taps: tuple[int, ...], n: int) -> list[list[frozenset[int]]]:
    """States 0..n of the LFSR as GF(2) sums of the start state's bits: [step][bit] = set of start bit indices."""
    bits = [frozenset((i,)) for i in range(width)]
    out = [bits]
    for _ in range(n):
        fb: frozenset[int] = frozenset()
        for t in taps:
            fb = fb ^ bits[t - 1]
        bits = [fb] + bits[: width - 1]
        out.append(bits)
    return out


def _xor_of(state: Value, indices: frozenset[int]) -> Value:
    out: Value = Const(0, 1)
    for i in sorted(indices):
        out = out ^ state[i]
    return out


def lfsr_ahead(state: Value, taps: tuple[int, ...], n: int, low_bits: int) -> tuple[list[Value], list[Value]]:
    """The ``n`` consecutive LFSR values from ``state`` (low ``low_bits`` bits each, state first) and the
    states after 0..n steps, each bit a flat XOR of ``state``'s bits (depth ⌈log₄ taps-reach⌉ LUTs, not n)."""
    state = Value.cast(state)
    sym = _lfsr_symbolic(len(state), taps, n)
    values = [Cat(*(_xor_of(state, sym[k][b]) for b in range(low_bits))) for k in range(n)]
    states = [Cat(*(_xor_of(state, bits) for bits in sym[k])) for k in range(n + 1)]
    return values, states

def uses_lfsr(fmt: UnitFormat) -> bool:
    """True when the R update draws LFSR values (stochastic mode with bits to drop)."""
    return fmt.rounding == "stochastic" and fmt.update_drop > 0

