"""Input decorrelation layers: z = (x − μ) Rᵀ with R learned by a local rule (SPEC §2).

Rows are samples. R is state (a buffer), not a gradient-trained parameter: autograd flows through the
centring x − mean(x) but never through R. In training mode every forward pass updates R from the first
k = floor(sample_frac·N) + 1 rows of the batch, in O(k·d²) work (the d×d correlation matrix is never
formed and multiplied by R).

Column convention of SPEC §2 (z = R x̃) and the row convention used here (z = x̃ Rᵀ) describe the same R.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from analogdecorr.choices import check_choice
from analogdecorr.errors import ConfigError, DataError, DivergenceError

if TYPE_CHECKING:
    from analogdecorr.models import Network

#: The decorrelation rules (SPEC §2); the learning rules that train the weights are rules.RULES.
DECOR_RULES = ("scaled", "offdiag", "whiten", "kappa")
# Not a decorrelation rule: centring only (R stays the identity). The baseline that separates what demeaning each
# layer's input does from what decorrelating it does (measured: most of NP's rescue at small decor lr is centring).
CENTRE = "centre"
# Not a learning rule either: the oracle. R is the exact ZCA whitening (Σ + ε I)^(-1/2) of the layer's centred input
# over the whole training set, set by ``refit_zca`` (the trainer calls it before every epoch, because hidden layers'
# inputs move as the weights learn) and never changed by a forward pass: the upper bound a learned decorrelator can
# reach. ε = zca_eps · mean eigenvalue of Σ keeps directions without variance (digits' constant pixels) finite.
ZCA = "zca"
#: Decorrelator settings whose R no learning rule updates.
FIXED_R = (CENTRE, ZCA)

_NORM_EPS = 1e-8  # the ε in s = ⟨‖x‖ / (‖z‖ + ε)⟩ of the `scaled` rule


def _check_rule(rule: str) -> None:
    check_choice(rule, DECOR_RULES, "decorrelation rule")


def _check_positive_lr(lr: float) -> None:
    if not isinstance(lr, (int, float)) or isinstance(lr, bool) or not math.isfinite(lr) or lr <= 0:
        raise ConfigError(
            f"decorrelation lr must be a finite number > 0, got {lr!r}; "
            "use e.g. 1e-3 for standardised inputs (3e-4 to 1e-3 is the useful range)."
        )


def num_update_rows(n: int, sample_frac: float) -> int:
    """Number of leading batch rows used for the R update: floor(sample_frac·n) + 1, capped at n."""
    return min(int(math.floor(sample_frac * n)) + 1, n)


def decor_update(
    R: Tensor,
    z: Tensor,
    x_raw: Tensor,
    *,
    rule: str,
    lr: float,
    scale_free: bool = False,
    kappa: float = 0.5,
) -> Tensor:
    """Return R after one step of `rule` computed from k rows z = x̃ Rᵀ (k×d) and their raw inputs (k×d).

    O(k·d²): R C = (R Zᵀ) Z / k and C R = Zᵀ (Z R) / k; diagonal terms are elementwise row scalings.
    With scale_free, the correlation ⟨z zᵀ⟩ entering the rule is divided by the mean of its diagonal.
    Pure function (R is not modified); used by Decorrelator and usable by integer-model comparisons.
    """
    _check_rule(rule)
    k = z.shape[0]
    # `scaled`: s pins output power to input power; x is the raw (not demeaned) input, z the rows as given.
    # s stays a tensor (no host synchronisation).
    s = (x_raw.norm(dim=1) / (z.norm(dim=1) + _NORM_EPS)).mean() if rule == "scaled" else None
    if scale_free:
        # Rows scaled by 1/√m, m = mean diag⟨z zᵀ⟩: every ⟨z zᵀ⟩ below is then the correlation divided by m.
        z = z * (z * z).mean().clamp_min(torch.finfo(z.dtype).tiny).rsqrt()
    alpha = -lr / k  # (·) Zᵀ Z / k = ⟨z zᵀ⟩
    # Each rule as one fused R·(row scaling) + (d×k)(k×d) product: two passes over R, no d³ work.
    if rule == "scaled":
        # R ← s R; R ← R − η R C  ⇔  R ← s (R − η (R Zᵀ) Z / k), C with its diagonal kept.
        return torch.addmm(R, R @ z.T, z, alpha=alpha).mul_(s)
    sq = (z * z).mean(0)  # diag⟨z zᵀ⟩, shape (d,)
    zr = z @ R  # k×d
    if rule == "offdiag":  # R − η (⟨z zᵀ⟩ R − diag⟨z²⟩ R)
        return torch.addmm(R * (1.0 + lr * sq)[:, None], z.T, zr, alpha=alpha)
    if rule == "whiten":  # R − η (⟨z zᵀ⟩ R − R)
        return torch.addmm(R * (1.0 + lr), z.T, zr, alpha=alpha)
    # kappa: R − η [(1−κ) (⟨z zᵀ⟩ − diag⟨z²⟩) R + κ diag(⟨z²⟩ − 1) R]
    row = 1.0 + lr * (1.0 - kappa) * sq - lr * kappa * (sq - 1.0)
    return torch.addmm(R * row[:, None], z.T, zr, alpha=alpha * (1.0 - kappa))


class Decorrelator(nn.Module):
    """Learned decorrelating transform z = (x − μ) Rᵀ; R updated by a local rule in every training forward.

    Input is (N, d) or (N, L, d) (L positions per sample, e.g. conv patches): the mean is taken over all
    leading dimensions and the update uses all positions of the first k samples. ``rule`` is one of DECOR_RULES,
    or ``centre`` / ``zca`` (FIXED_R: no rule updates R; ``zca``'s R is set by ``fit_zca``, see ``refit_zca``).
    Buffers: R (d×d, identity at start) and running_mean (d,). Plain attributes (not saved):
    last_mean / last_R, the mean and R used by the most recent forward pass (detached), and name, the
    layer name used in divergence messages.
    """

    def __init__(
        self,
        num_features: int,
        rule: str = "scaled",
        lr: float = 1e-3,
        sample_frac: float = 0.1,
        mean_momentum: float = 0.1,
        scale_free: bool = False,
        kappa: float = 0.5,
        zca_eps: float = 1e-3,
    ) -> None:
        super().__init__()
        if isinstance(num_features, bool) or not isinstance(num_features, int) or num_features <= 0:
            raise ConfigError(
                f"num_features must be a positive integer (the input width d), got {num_features!r}."
            )
        if rule not in FIXED_R:
            _check_rule(rule)
        _check_positive_lr(lr)
        if not isinstance(sample_frac, (int, float)) or not (0.0 < sample_frac <= 1.0):
            raise ConfigError(
                f"sample_frac must be in (0, 1] (fraction of the batch used for the R update), got "
                f"{sample_frac!r}; the default is 0.1."
            )
        if not isinstance(mean_momentum, (int, float)) or not (0.0 <= mean_momentum <= 1.0):
            raise ConfigError(f"mean_momentum must be in [0, 1], got {mean_momentum!r}; the default is 0.1.")
        if not isinstance(kappa, (int, float)) or not (0.0 <= kappa <= 1.0):
            raise ConfigError(
                f"kappa must be in [0, 1] (0: decorrelate only, 1: normalise variances only), got {kappa!r}; "
                "the default is 0.5."
            )
        if not isinstance(zca_eps, (int, float)) or not (math.isfinite(zca_eps) and zca_eps > 0):
            raise ConfigError(
                f"zca_eps must be a finite number > 0 (the oracle's eigenvalue floor, relative to the mean "
                f"eigenvalue), got {zca_eps!r}; the default is 1e-3."
            )
        self.num_features = num_features
        self.rule = rule
        self.lr = float(lr)
        self.sample_frac = float(sample_frac)
        self.mean_momentum = float(mean_momentum)
        self.scale_free = bool(scale_free)
        self.kappa = float(kappa)
        self.zca_eps = float(zca_eps)
        self.name = "decorrelator"
        self.register_buffer("R", torch.eye(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.last_mean: Tensor | None = None
        self.last_R: Tensor | None = None

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, rule={self.rule!r}, lr={self.lr:g}, sample_frac={self.sample_frac:g}, "
            f"scale_free={self.scale_free}" + (f", kappa={self.kappa:g}" if self.rule == "kappa" else "")
            + (f", zca_eps={self.zca_eps:g}" if self.rule == ZCA else "")
        )

    def _check_input(self, x: Tensor, values: bool = True) -> None:
        if x.dim() not in (2, 3):
            raise DataError(
                f"{self.name}: expected input of shape (N, {self.num_features}) or "
                f"(N, L, {self.num_features}), got shape {tuple(x.shape)}."
            )
        if x.shape[-1] != self.num_features:
            raise DataError(
                f"{self.name}: input has {x.shape[-1]} features but the layer expects {self.num_features}; "
                "check the dataset's feature count against the model's input size."
            )
        if x.shape[0] == 0:
            raise DataError(f"{self.name}: empty input batch.")
        if values and not bool(torch.isfinite(x).all()):
            raise DataError(self._nonfinite_input_message())

    def _nonfinite_input_message(self) -> str:
        return f"{self.name}: input batch contains NaN or Inf; check the data (or the previous layer's output)."

    def forward(self, x: Tensor) -> Tensor:
        """Training: z = (x − batch mean) Rᵀ with R before the update, then R is updated.

        Eval: z = (x − running_mean) Rᵀ, no state change.
        """
        # In training the batch mean carries any NaN/Inf of the input, so the values are checked through it below
        # (d numbers, in the same synchronisation as R's check) instead of a pass over the whole batch.
        self._check_input(x, values=not self.training)
        d = self.num_features
        if not self.training:
            mean = self.running_mean
            self.last_mean = mean.detach().clone()
            self.last_R = self.R.detach()
            return (x - mean) @ self.R.T

        mean = x.reshape(-1, d).mean(0)  # differentiable: BP flows through the centring
        if self.rule in FIXED_R:
            return self._fixed_R(x, mean)
        R_used = self.R  # replaced (never modified in place) by the update below, so autograd may keep it
        z = (x - mean) @ R_used.T
        with torch.no_grad():
            mean_d = mean.detach()
            k = num_update_rows(x.shape[0], self.sample_frac)
            z_k = z.detach()[:k].reshape(-1, d)
            x_k = x.detach()[:k].reshape(-1, d)
            R_new = decor_update(
                R_used, z_k, x_k, rule=self.rule, lr=self.lr, scale_free=self.scale_free, kappa=self.kappa
            )
            # One synchronisation; NaN/Inf anywhere makes the sum non-finite. Nothing is stored before it passes.
            if not math.isfinite(float(R_new.sum() + mean_d.sum())):
                if not math.isfinite(float(mean_d.sum())):
                    raise DataError(self._nonfinite_input_message())
                raise DivergenceError(self._divergence_message(self.name, "R became NaN/Inf in this update"))
            self.last_mean = mean_d  # a fresh tensor (the batch mean), never modified afterwards
            self.last_R = R_used
            self.running_mean.lerp_(mean_d, self.mean_momentum)
            self._buffers["R"] = R_new  # the registered buffer, replaced (nn.Module.__setattr__ is slow per step)
        return z

    def _fixed_R(self, x: Tensor, mean: Tensor) -> Tensor:
        """Training forward of the settings whose R no rule updates: ``centre`` (z = x − batch mean, R = I) and
        the ``zca`` oracle (z = (x − batch mean) Rᵀ with the R ``fit_zca`` last set)."""
        with torch.no_grad():
            mean_d = mean.detach()
            if not math.isfinite(float(mean_d.sum())):
                raise DataError(self._nonfinite_input_message())
            self.last_mean = mean_d.clone()
            self.last_R = self.R
            self.running_mean.mul_(1.0 - self.mean_momentum).add_(mean_d, alpha=self.mean_momentum)
        return x - mean if self.rule == CENTRE else (x - mean) @ self.R.T

    @torch.no_grad()
    def fit_zca(self, mean: Tensor, cov: Tensor) -> None:
        """Set R to the ZCA whitening U diag((λ + ε)^(-1/2)) Uᵀ of the input covariance ``cov`` = U diag(λ) Uᵀ
        (ε = zca_eps · mean(λ)) and the running mean to ``mean``: afterwards ⟨z zᵀ⟩ = Σ (Σ + ε I)^(-1) ≈ I.
        The oracle's only way of changing R (any rule may be fitted, but only ``zca`` is refitted by training)."""
        cov = cov.double()
        cov = 0.5 * (cov + cov.T)
        lam, U = torch.linalg.eigh(cov)
        lam = lam.clamp_min(0.0)
        eps = self.zca_eps * max(float(lam.mean()), torch.finfo(torch.float64).tiny)
        R = (U * (lam + eps).rsqrt()) @ U.T
        if not bool(torch.isfinite(R).all()):
            raise DivergenceError(self._divergence_message(self.name, "the ZCA fit of R is NaN/Inf"))
        self._buffers["R"] = R.to(self.R.dtype)
        self.running_mean.copy_(mean.to(self.running_mean.dtype))

    def transform(self, x: Tensor, mean: Tensor | None = None, R: Tensor | None = None) -> Tensor:
        """Pure (x − mean) Rᵀ, no state change. mean defaults to running_mean, R to the current R.

        NP's perturbed pass should pass mean=self.last_mean and R=self.last_R: after a training forward,
        self.R has already been updated, while the clean z used last_R.
        """
        mean = self.running_mean if mean is None else mean
        R = self.R if R is None else R
        return (x - mean) @ R.T

    def replay_last(self, rows: Tensor) -> Tensor:
        """``rows`` through the transform the last training forward applied, without changing any state: NP's
        perturbed pass (the mean and R the clean rows used: last_mean, last_R)."""
        return self.transform(rows, self.last_mean, self.last_R)

    def _divergence_message(self, name: str, what: str) -> str:
        return (
            f"layer {name!r}: decorrelation diverged ({what}). The decorrelation lr {self.lr:g} is likely "
            f"too high for this layer's input scale (R diverges once lr·λ_max(⟨z zᵀ⟩) is of order 1); "
            f"try decor_lr={self.lr / 10:g} (10× smaller) or scale_free=True."
        )

    def check_finite(self, name: str) -> None:
        """Raise DivergenceError naming `name` and the likely cause if R or running_mean holds NaN/Inf."""
        if not bool(torch.isfinite(self.R).all()):
            raise DivergenceError(self._divergence_message(name, "R contains NaN/Inf"))
        if not bool(torch.isfinite(self.running_mean).all()):
            raise DivergenceError(
                f"layer {name!r}: the running mean of the decorrelation input contains NaN/Inf; the input "
                f"activity diverged upstream (lower the learning rates, e.g. decor_lr={self.lr / 10:g}, "
                "or use scale_free=True)."
            )


@torch.no_grad()
def refit_zca(net: Network, x: Tensor, chunk: int = 1000) -> int:
    """Fit every ``zca`` decorrelator of ``net`` to its layer's input over all of ``x`` (the training set), in
    layer order: layer l's input is computed through the already refitted layers before it. Returns the number of
    refitted layers (0: nothing to do, no pass made).

    Statistics are accumulated in float64 over chunks of ``chunk`` samples (all positions of a conv layer), so
    memory stays O(chunk·width + d²); the cost is one forward pass of x through layers 0..l−1 per zca layer l.
    No other state changes (the passes use ``transform``, not the training forward)."""
    targets = [i for i, layer in enumerate(net.layers) if getattr(layer.decor, "rule", None) == ZCA]
    for target in targets:
        decor = net.layers[target].decor
        d = decor.num_features
        total = torch.zeros(d, dtype=torch.float64)
        outer = torch.zeros(d, d, dtype=torch.float64)
        count = 0
        for start in range(0, x.shape[0], chunk):
            h = net.shape_input(x[start : start + chunk])
            for layer in net.layers[:target]:
                rows = layer.to_rows(h)
                z = layer.decor.transform(rows) if layer.decor is not None else rows
                h = layer.act(layer.from_rows(layer.linear(z), h.shape[0]))
            rows = net.layers[target].to_rows(h).double()
            total += rows.sum(0)
            outer += rows.T @ rows
            count += rows.shape[0]
        if count == 0:
            raise DataError("refit_zca: the training set is empty; the zca oracle needs training data.")
        mean = total / count
        if not bool(torch.isfinite(outer).all()):
            raise DataError(decor._nonfinite_input_message())
        decor.fit_zca(mean, outer / count - torch.outer(mean, mean))
    return len(targets)


class DecorLinear(nn.Module):
    """Decorrelator followed by nn.Linear: y = ((x − μ) Rᵀ) Wᵀ + b. Attributes .decor and .linear."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, **decor_kwargs) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.decor = Decorrelator(in_features, **decor_kwargs)
        self.linear = nn.Linear(in_features, out_features, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(self.decor(x))


def _pair(v: int | tuple[int, int], what: str) -> tuple[int, int]:
    t = (v, v) if isinstance(v, int) else tuple(v)
    if len(t) != 2 or any(not isinstance(i, int) for i in t):
        raise ConfigError(f"{what} must be an int or a pair of ints, got {v!r}.")
    return t  # type: ignore[return-value]


class DecorConv2d(nn.Module):
    """Conv layer with a decorrelated input: R acts on C·kh·kw patches (F.unfold), then the conv weight
    is applied as a matmul on the decorrelated patches. Output is shaped like nn.Conv2d's.

    Attributes .decor (Decorrelator over C·kh·kw features) and .conv (nn.Conv2d holding weight and bias;
    with R = I and zero mean, the layer equals .conv). The mean is per patch element (over samples and
    positions); the R update uses all patches of the first k samples.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        dilation: int | tuple[int, int] = 1,
        bias: bool = True,
        **decor_kwargs,
    ) -> None:
        super().__init__()
        for what, v in (("in_channels", in_channels), ("out_channels", out_channels)):
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ConfigError(f"{what} must be a positive integer, got {v!r}.")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.stride = _pair(stride, "stride")
        self.padding = _pair(padding, "padding")
        self.dilation = _pair(dilation, "dilation")
        if min(*self.kernel_size, *self.stride, *self.dilation) <= 0 or min(self.padding) < 0:
            raise ConfigError(
                f"invalid conv geometry kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, dilation={self.dilation}: sizes/strides/dilations must be ≥ 1, "
                "padding ≥ 0."
            )
        self.patch_size = in_channels * self.kernel_size[0] * self.kernel_size[1]
        self.decor = Decorrelator(self.patch_size, **decor_kwargs)
        self.conv = nn.Conv2d(
            in_channels, out_channels, self.kernel_size, self.stride, self.padding, self.dilation, bias=bias
        )

    def output_size(self, h: int, w: int) -> tuple[int, int]:
        """Spatial output size for an h×w input (as nn.Conv2d)."""
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = self.kernel_size, self.stride, self.padding, self.dilation
        return (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1

    def patches(self, x: Tensor) -> Tensor:
        """(N, C, H, W) → (N, L, C·kh·kw) patches, feature order matching conv.weight.flatten(1)."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise DataError(
                f"{self.decor.name}: expected input (N, {self.in_channels}, H, W), "
                f"got shape {tuple(x.shape)}."
            )
        ho, wo = self.output_size(x.shape[2], x.shape[3])
        if ho <= 0 or wo <= 0:
            raise DataError(
                f"{self.decor.name}: input {x.shape[2]}×{x.shape[3]} is smaller than the kernel "
                f"{self.kernel_size} (with padding {self.padding}); increase padding or use a smaller kernel."
            )
        cols = F.unfold(x, self.kernel_size, dilation=self.dilation, padding=self.padding, stride=self.stride)
        return cols.transpose(1, 2)

    def forward(self, x: Tensor) -> Tensor:
        ho, wo = self.output_size(x.shape[2], x.shape[3]) if x.dim() == 4 else (0, 0)
        z = self.decor(self.patches(x))  # (N, L, C·kh·kw)
        y = z @ self.conv.weight.flatten(1).T
        if self.conv.bias is not None:
            y = y + self.conv.bias
        return y.transpose(1, 2).reshape(x.shape[0], self.out_channels, ho, wo)
