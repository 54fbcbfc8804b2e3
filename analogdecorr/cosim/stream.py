"""``StreamDecorrelator``: the FPGA unit's algorithm in floating point, to separate its arithmetic from its schedule.

The unit and the float ``Decorrelator`` differ in two ways: the unit's integer arithmetic (rounding, saturation,
the per-layer scale) and its *schedule*: it learns one sample at a time (each of the batch's k learning rows moves
the running mean μ by 2^−m and R by one step of η = 2^−s before the next row is transformed), and it centres with
that running mean, where the float rule takes one step per batch from the k rows' mean and centres with the batch
mean. This class runs the unit's schedule with the unit's constants (η = 2^−s, momentum 2^−m, from the same unit
plan as ``decor_numerics = "fixed"``) in float64, without words, scale or saturation: ``decor_numerics =
"stream"``. A fixed run against a stream run measures what the arithmetic costs; a stream run against a float run
what the schedule does.

Per training batch (rows sample-major, a conv layer's patches included, as in ``FixedDecorrelator``): row t < k is
z_t = (x_t − μ_t) R_tᵀ, then μ_{t+1} = μ_t + 2^−m (x_t − μ_t) and R_{t+1} = the rule's step from z_t alone; rows
t ≥ k use μ_k and R_k. Gradients flow through x (R and μ are constants, as in the unit). NP's perturbed rows
(``replay_last``) see the state their clean row saw. Eval: (x − μ) Rᵀ with the current state.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..decor import Decorrelator, decor_update, num_update_rows
from ..errors import DivergenceError
from ..fixed.format import UnitFormat


class StreamDecorrelator(Decorrelator):
    """The unit's per-sample schedule in float64 (see the module docstring). Buffers as ``Decorrelator``'s (R and
    running_mean, float32 between batches); ``lr`` is the unit's η per learning sample."""

    def __init__(self, num_features: int, fmt: UnitFormat, *, rule: str, sample_frac: float = 0.1) -> None:
        super().__init__(num_features, rule=rule, lr=2.0**-fmt.shift, sample_frac=sample_frac, centring="running")
        self.momentum = 2.0**-fmt.centre_shift if fmt.centre_shift else 0.0
        # (μ_t, R_t for t < k, k, μ_k, R_k) of the last training batch, float64: what NP's replay needs
        self._last: tuple[Tensor, Tensor, int, Tensor, Tensor] | None = None

    def extra_repr(self) -> str:
        return f"{self.num_features}, rule={self.rule!r}, eta=2^{math.log2(self.lr):g} per sample, " \
               f"momentum={self.momentum:g} per sample"

    def forward(self, x: Tensor) -> Tensor:
        """Training: the batch's rows through the unit's schedule (module docstring). Eval: (x − μ) Rᵀ."""
        if not self.training:
            self._last = None
            return super().forward(x)
        self._check_input(x)
        d = self.num_features
        rows = x.reshape(-1, d)
        n = rows.shape[0]
        k = min(n, num_update_rows(x.shape[0], self.sample_frac) * (n // x.shape[0]))
        with torch.no_grad():
            R = self.R.to(torch.float64)
            mu = self.running_mean.to(torch.float64)
            X = rows.detach().to(torch.float64)
            Rs = torch.empty(k, d, d, dtype=torch.float64)
            mus = torch.empty(k, d, dtype=torch.float64)
            for t in range(k):
                Rs[t], mus[t] = R, mu
                z = ((X[t] - mu) @ R.T)[None]
                if self.momentum:
                    mu = mu + self.momentum * (X[t] - mu)
                R = decor_update(R, z, X[t : t + 1], rule=self.rule, lr=self.lr)
            if not math.isfinite(float(R.sum() + mu.sum())):
                raise DivergenceError(self._divergence_message(self.name, "R became NaN/Inf in this update"))
            self.last_R, self.last_mean = self.R, self.running_mean.clone()
            self._buffers["R"] = R.to(self.R.dtype)
            self.running_mean.copy_(mu)
            self._last = (mus, Rs, k, mu, R)
        return self._apply(rows, mus, Rs, k, mu, R).reshape(x.shape)

    @staticmethod
    def _apply(rows: Tensor, mus: Tensor, Rs: Tensor, k: int, mu: Tensor, R: Tensor) -> Tensor:
        """Row t < k through (μ_t, R_t), the others through (μ, R): differentiable in ``rows``."""
        r = rows.to(torch.float64)
        first = torch.bmm((r[:k] - mus)[:, None, :], Rs.transpose(1, 2))[:, 0, :]
        rest = (r[k:] - mu) @ R.T
        return torch.cat([first, rest]).to(rows.dtype)

    def replay_last(self, rows: Tensor) -> Tensor:
        """NP's perturbed rows, each through the state its clean row saw; no state change."""
        if self._last is None:
            return self.transform(rows)
        flat = rows.reshape(-1, self.num_features)
        return self._apply(flat, *self._last).reshape(rows.shape)
