"""``FixedDecorrelator``: a ``Decorrelator`` whose arithmetic is the FPGA unit's integer model, sample by sample.

Per training batch the layer's rows (a conv layer's patches: sample-major) are mapped into the unit's words
(``scale``) and streamed through ``fixed.model.run``, exactly as the unit would see them: the first
k = num_update_rows rows (the rows the float rule learns from) with learn = 1, each updating R (and the running
mean μ) before the next row, then the remaining rows with learn = 0 (forward only, one block). The unit's state
(R, μ, LFSR) lives in int64 buffers, so checkpoints resume bit for bit. The unit centres with its running mean,
not the batch mean the float rule uses.

What the rules see:
- z is the unit's z, dequantised (z_int · 2^−F / scale): the float layers after it see the unit's output.
- BP needs a gradient through the layer: a straight-through surrogate z_fixed + (x − x.detach()) @ R_floatᵀ,
  R_float the unit's R view (Rw · 2^−F) from before the batch; no gradient flows through the running mean.
- FA's backward uses ``last_R`` = that same R_float.
- NP's perturbed rows (``replay_last``) run through the unit's forward (learn = 0) with, row by row, the state
  that produced the clean row's z (row t < k: the state before its update; the others: the state after the
  k updates). So a perturbed row equal to its clean row gives the same z, as in the float path (which uses
  the R and mean of the clean pass); NP's loss difference then comes from its noise, not from the unit having
  moved on. The perturbed pass never changes the state and is not part of the recorded stream.
- Eval (and ``transform()`` without arguments) is the unit's forward with the current state, no update.

A shadow float ``Decorrelator`` (the float rule, same lr, same inputs, centred like the unit: ``running``
centring, the running mean from before each batch) runs beside it; ``pop_epoch_stats`` reports how far the unit's
R and z are from it, and the unit's saturation counts, for results.json.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..decor import Decorrelator, num_update_rows
from ..errors import DivergenceError
from ..fixed import model as unit_model
from ..fixed.format import UnitFormat, round_shift, saturate
from ..fixed.model import UnitState
from .scale import HEADROOM_BITS, check_first_batch, choose_scale, quantize

#: Saturation keys reported per layer: "x" (mapping into the words) and the model's overflow counts.
SATURATION_KEYS = ("x", "xc", "rw", "z", "p", "v", "e", "r")


def unit_run(
    fmt: UnitFormat, X: np.ndarray, learn: bool | np.ndarray, state: UnitState
) -> tuple[np.ndarray, UnitState, dict]:
    """``fixed.model.run`` over the rows X (learn: one bit per row, or one for all) from ``state``:
    (z ints, the state after them, overflow counts)."""
    res = unit_model.run(fmt, X, learn=learn, state=state)
    return res.z, res.state, res.overflow_counts


class FixedDecorrelator(Decorrelator):
    """The unit's integer arithmetic behind the ``Decorrelator`` interface (see the module docstring).

    Buffers (all in the state_dict): the float mirrors R (the unit's R view, Rw · 2^−F) and running_mean (μ in
    real units), the unit's state R_int, mu_int, lfsr, the layer's ``scale`` (0 until the first batch chose
    it) and ``samples_seen``; the shadow float decorrelator's buffers under ``shadow.``.
    """

    def __init__(
        self,
        num_features: int,
        fmt: UnitFormat,
        *,
        rule: str,
        lr: float,
        sample_frac: float = 0.1,
        mean_momentum: float = 0.1,
        scale: float | None = None,
        retune: Callable[[float], UnitFormat] | None = None,
        headroom: int = HEADROOM_BITS,
    ) -> None:
        super().__init__(num_features, rule=rule, lr=lr, sample_frac=sample_frac, mean_momentum=mean_momentum)
        self.fmt = fmt
        # the format for a scale (cosim.unit.UnitPlan.format_for): a derived shift follows the layer's scale so
        # that the unit steps by η · scale² = decor_lr / k in real units; None keeps ``fmt`` whatever the scale
        self.retune = retune
        self.scale_given = scale is not None
        self.headroom = headroom
        s0 = UnitState.reset(fmt)
        self.register_buffer("R_int", torch.from_numpy(np.array(s0.R, dtype=np.int64)))
        self.register_buffer("mu_int", torch.from_numpy(np.array(s0.mu, dtype=np.int64)))
        self.register_buffer("lfsr", torch.tensor([int(s0.lfsr)], dtype=torch.int64))
        self.register_buffer("scale", torch.tensor([float(scale or 0.0)], dtype=torch.float64))
        self.register_buffer("samples_seen", torch.zeros(1, dtype=torch.int64))
        # The float twin the distances are measured from: same rule, centred like the unit (its running mean).
        self.shadow = Decorrelator(num_features, rule=rule, lr=lr, sample_frac=sample_frac,
                                   mean_momentum=mean_momentum, centring="running")
        self.recorder: Any = None  # a record.StreamRecorder, attached by the trainer
        self._scale: float | None = None
        self._scale_checked = False
        self._last: tuple[Any, np.ndarray, int] | None = None  # (state before, learning rows, k) of the last batch
        self._shadow_failed = False
        self._reset_stats()
        self._sync_mirrors()

    def extra_repr(self) -> str:
        f = self.fmt
        return (f"{self.num_features}, rule={self.rule!r}, fixed W={f.width} F={f.frac} W_R={f.r_width} "
                f"F_R={f.r_frac} s={f.shift} rounding={f.rounding!r}")

    # ------------------------------------------------------------------ state
    @property
    def state(self) -> Any:
        """The unit's state now (numpy views of the buffers)."""
        return UnitState(self.R_int.numpy(), self.mu_int.numpy(), int(self.lfsr[0]))

    def _set_state(self, state: Any) -> None:
        self._buffers["R_int"] = torch.from_numpy(np.ascontiguousarray(state.R, dtype=np.int64))
        self._buffers["mu_int"] = torch.from_numpy(np.ascontiguousarray(state.mu, dtype=np.int64))
        self.lfsr[0] = int(state.lfsr)

    @property
    def scale_value(self) -> float:
        """The layer's scale as a Python float (cached: reading a tensor element costs more than the lookup)."""
        if self._scale is None:
            self.__dict__["_scale"] = float(self.scale[0])
        return self._scale

    def r_view_float(self, R_int: np.ndarray) -> Tensor:
        """Rw · 2^−F: the R the multipliers see, in real units (float32)."""
        f = self.fmt
        rw, _ = saturate(round_shift(np.asarray(R_int, dtype=np.int64), f.view_drop, f.view_rounding), f.width)
        return torch.from_numpy(np.ldexp(rw.astype(np.float64), -f.frac)).float()

    def _mean_float(self, mu_int: np.ndarray) -> Tensor:
        m = self.fmt.centre_shift
        scale = self.scale_value or 1.0
        return torch.from_numpy(np.ldexp(np.asarray(mu_int, dtype=np.float64), -(self.fmt.frac + m)) / scale).float()

    def _sync_mirrors(self) -> None:
        self._buffers["R"] = self.r_view_float(self.R_int.numpy())
        self._buffers["running_mean"] = self._mean_float(self.mu_int.numpy())

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self._last, self._scale = None, None
        self._scale_checked = self.scale_value != 0.0
        if self._scale_checked and self.retune is not None:
            self._use_format(self.retune(self.scale_value))  # the state loaded is in that format already

    def _use_format(self, fmt: UnitFormat) -> None:
        self.fmt = fmt
        if self.recorder is not None:
            self.recorder.fmt = fmt

    # ------------------------------------------------------------------ arithmetic
    def _dequantize(self, Z: np.ndarray, like: Tensor) -> Tensor:
        factor = 2.0**-self.fmt.frac / (self.scale_value or 1.0)
        return (torch.from_numpy(Z).to(torch.float64) * factor).to(like.dtype)

    def _ensure_scale(self, rows: Tensor) -> float:
        """The layer's scale: chosen (or, if given, checked) on the first batch it sees."""
        if not self._scale_checked:
            scale = self.scale_value if self.scale_given else choose_scale(rows, self.fmt, self.headroom)
            check_first_batch(rows, scale, self.fmt, self.name, self.scale_given, self.headroom)
            self.scale[0] = scale
            self._scale, self._scale_checked = None, True
            fmt = self.retune(scale) if self.retune is not None else self.fmt
            if fmt != self.fmt:  # before the first sample: the reset state of the layer's own format
                self._use_format(fmt)
                self._set_state(UnitState.reset(fmt))
                self._sync_mirrors()
        return self.scale_value

    def _forward_only(self, X: np.ndarray, state: Any) -> tuple[np.ndarray, dict]:
        z, _, counts = unit_run(self.fmt, X, False, state)
        return z, counts

    def forward(self, x: Tensor) -> Tensor:
        """Training: stream the batch's rows through the unit (see the module docstring). Eval: forward only."""
        self._check_input(x)
        d = self.num_features
        rows = x.reshape(-1, d)
        if not self.training:
            self.__dict__["_last"] = None  # replay_last now replays this forward-only pass (the current state)
            with torch.no_grad():
                X, _ = quantize(rows, self.scale_value or self._ensure_scale(rows), self.fmt)
                Z, _ = self._forward_only(X, self.state)
                z = self._dequantize(Z, x)
            return self._straight_through(z, x, self.R).reshape(x.shape)
        with torch.no_grad():
            scale = self._ensure_scale(rows)
            X, sat = quantize(rows, scale, self.fmt)
            n = X.shape[0]
            k = min(n, num_update_rows(x.shape[0], self.sample_frac) * (n // x.shape[0]))
            R_before, mean_before = self.R, self.running_mean
            state0 = self.state  # views of buffers that are replaced, never written in place, after the batch
            learn = np.zeros(n, dtype=bool)
            learn[:k] = True
            Z, state, c = unit_run(self.fmt, X, learn, state0)
            counts = dict.fromkeys(SATURATION_KEYS, 0)
            counts["x"] = sat
            _add(counts, c)
            if self.recorder is not None:
                self.recorder.add(X, learn, Z, state0, scale)
            self._set_state(state)
            self._sync_mirrors()
            # plain attributes set through __dict__: nn.Module.__setattr__ costs more than the rest of a batch
            self.__dict__.update(_last=(state0, X[:k], k), last_R=R_before, last_mean=mean_before)
            self.samples_seen[0] += n
            z = self._dequantize(Z, x)
            self._stats["samples"] += n
            self._stats["learned"] += k
            _add(self._stats["saturation"], counts)
            self._shadow_step(rows, z)
        return self._straight_through(z, x, R_before).reshape(x.shape)

    def _shadow_step(self, rows: Tensor, z: Tensor) -> None:
        """The float rule on the same rows; a diverging shadow is dropped (reported as None), never fatal."""
        if self._shadow_failed:
            return
        try:
            z_shadow = self.shadow(rows.detach())
        except DivergenceError:
            self._shadow_failed = True
            return
        self._stats["dz2"] += float(((z - z_shadow) ** 2).sum())
        self._stats["z2"] += float((z_shadow**2).sum())

    @staticmethod
    def _straight_through(z: Tensor, x: Tensor, R: Tensor) -> Tensor:
        """z with the surrogate gradient of (x − μ) Rᵀ when autograd asks for one."""
        if not (torch.is_grad_enabled() and x.requires_grad):
            return z
        rows = x.reshape(-1, R.shape[0])
        return z + (rows - rows.detach()) @ R.T.to(x.dtype)

    def replay_last(self, rows: Tensor) -> Tensor:
        """NP's perturbed rows through the unit, each with the state its clean row saw (no state change).

        One model run from the batch's initial state over the interleaved stream p_0, x_0, p_1, x_1, ...,
        p_{k−1}, x_{k−1}, p_k, ..., p_{n−1}, where x_t are the clean learning rows (learn = 1) and p_t the
        perturbed rows (learn = 0: a forward-only sample changes no state), so p_t meets exactly the state
        that x_t met.
        """
        if self._last is None:
            return self.transform(rows)
        state0, X_learn, k = self._last
        P, _ = quantize(rows.reshape(-1, self.num_features), self.scale_value, self.fmt)
        n = P.shape[0]
        stream = np.concatenate([np.stack([P[:k], X_learn], axis=1).reshape(2 * k, -1), P[k:]])
        learn = np.zeros(n + k, dtype=bool)
        learn[1 : 2 * k : 2] = True
        Z, _, _ = unit_run(self.fmt, stream, learn, state0)
        perturbed = np.concatenate([Z[0 : 2 * k : 2], Z[2 * k :]])
        return self._dequantize(perturbed, rows).reshape(rows.shape)

    def transform(self, x: Tensor, mean: Tensor | None = None, R: Tensor | None = None) -> Tensor:
        """No arguments: the unit's forward with its current state (no update). With mean/R: the float
        formula (x − mean) Rᵀ of the base class."""
        if mean is not None or R is not None:
            return super().transform(x, mean, R)
        rows = x.reshape(-1, self.num_features)
        X, _ = quantize(rows, self.scale_value or choose_scale(rows, self.fmt, self.headroom), self.fmt)
        Z, _ = self._forward_only(X, self.state)
        return self._dequantize(Z, x).reshape(x.shape)

    # ------------------------------------------------------------------ results
    def _reset_stats(self) -> None:
        self._stats: dict[str, Any] = {"samples": 0, "learned": 0, "dz2": 0.0, "z2": 0.0,
                                       "saturation": dict.fromkeys(SATURATION_KEYS, 0)}

    def pop_epoch_stats(self) -> dict[str, Any]:
        """This epoch's figures for results.json (then reset): samples, saturation counts, distances to the
        shadow float decorrelator (relative Frobenius: R at the end of the epoch, z over the epoch)."""
        s = self._stats
        r_fixed = torch.from_numpy(np.ldexp(self.R_int.numpy().astype(np.float64), -self.fmt.r_frac))
        r_float = self.shadow.R.to(torch.float64)
        r_dist = None if self._shadow_failed else float((r_fixed - r_float).norm() / r_float.norm())
        out = {
            "samples": s["samples"],
            "learned": s["learned"],
            "saturation": dict(s["saturation"]),
            "r_rel_dist": r_dist,
            "z_rel_dist": math.sqrt(s["dz2"] / s["z2"]) if s["z2"] > 0 and not self._shadow_failed else None,
            "scale": self.scale_value,
        }
        self._reset_stats()
        return out


def _add(total: dict, counts: dict) -> None:
    for key, v in counts.items():
        total[key] = total.get(key, 0) + int(v)
