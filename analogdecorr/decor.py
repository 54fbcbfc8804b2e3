"""Input decorrelation layers: z = (x − μ) Rᵀ with R learned by a local rule (SPEC §2).

Rows are samples. R is state (a buffer), not a gradient-trained parameter: autograd flows through the
centring x − mean(x) but never through R. In training mode every forward pass updates R from the first
k = floor(sample_frac·N) + 1 rows of the batch, in O(k·d²) work (the d×d correlation matrix is never
formed and multiplied by R).

Column convention of SPEC §2 (z = R x̃) and the row convention used here (z = x̃ Rᵀ) describe the same R.

The layers (``Layer``: decorrelator → linear map → activation; built by ``DecorLinear`` and ``DecorConv2d``)
are the ones ``analogdecorr train`` trains: ``models.build_model`` stacks them.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from analogdecorr.choices import check_choice
from analogdecorr.errors import ConfigError, DataError, DivergenceError

if TYPE_CHECKING:
    from analogdecorr.models import Network

#: The decorrelation rules (SPEC §2); the learning rules that train the weights are rules.RULES.
DECOR_RULES = ("scaled", "offdiag", "whiten", "kappa", "scaled_left")
#: The rules that pin z's power to the raw input's (R ← s·(...)). ``scaled`` is the paper's dense-layer form, R
#: multiplied on the right (R ← s (R − η R ⟨z zᵀ⟩)); ``scaled_left`` the same step multiplied on the left like every
#: other rule (R ← s (R − η ⟨z zᵀ⟩ R)). They agree for small η; at η·λ_max ≈ 0.1 with few rows per update the right
#: form loses rank while the left one stays conditioned (tests/test_decor.py, sims/README_where.md).
SCALED_RULES = ("scaled", "scaled_left")
# Not a decorrelation rule: centring only (R stays the identity). The baseline that separates what demeaning each
# layer's input does from what decorrelating it does (measured: most of NP's rescue at small decor lr is centring).
CENTRE = "centre"
#: How a training forward centres its input: ``batch`` subtracts the batch mean (the paper's form; gradients flow
#: through it), ``running`` subtracts the running mean from before this batch and then updates it (a constant to
#: autograd): the streaming form the FPGA unit computes, which cannot see a batch's mean before its samples.
CENTRINGS = ("batch", "running")
# Not a learning rule either: the oracle. R is the exact ZCA whitening (Σ + ε I)^(-1/2) of the layer's centred input
# over the whole training set, set by ``refit_zca`` (the trainer calls it before every epoch, because hidden layers'
# inputs move as the weights learn) and never changed by a forward pass: the upper bound on how well a learned R can
# decorrelate (not on accuracy: measured, NP trains worse with it than with the best learned rule).
# ε = zca_eps · mean eigenvalue of Σ keeps directions without variance (digits' constant pixels) finite.
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
    # `scaled`, `scaled_left`: s pins output power to input power; x is the raw (not demeaned) input, z the rows
    # as given.
    # s stays a tensor (no host synchronisation).
    s = (x_raw.norm(dim=1) / (z.norm(dim=1) + _NORM_EPS)).mean() if rule in SCALED_RULES else None
    if scale_free:
        # Rows scaled by 1/√m, m = mean diag⟨z zᵀ⟩: every ⟨z zᵀ⟩ below is then the correlation divided by m.
        z = z * (z * z).mean().clamp_min(torch.finfo(z.dtype).tiny).rsqrt()
    alpha = -lr / k  # (·) Zᵀ Z / k = ⟨z zᵀ⟩
    # Each rule as one fused R·(row scaling) + (d×k)(k×d) product: two passes over R, no d³ work.
    if rule == "scaled":
        # R ← s R; R ← R − η R C  ⇔  R ← s (R − η (R Zᵀ) Z / k), C with its diagonal kept.
        return torch.addmm(R, R @ z.T, z, alpha=alpha).mul_(s)
    if rule == "scaled_left":  # R ← s (R − η ⟨z zᵀ⟩ R) = s (R − η Zᵀ (Z R) / k)
        return torch.addmm(R, z.T, z @ R, alpha=alpha).mul_(s)
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
        centring: str = "batch",
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
        check_choice(centring, CENTRINGS, "centring")
        if not isinstance(zca_eps, (int, float)) or not (math.isfinite(zca_eps) and zca_eps > 0):
            raise ConfigError(
                f"zca_eps must be a finite number > 0 (the oracle's eigenvalue floor, relative to the mean "
                f"eigenvalue), got {zca_eps!r}; the default is 1e-3."
            )
        self.num_features = num_features
        self.centring = centring
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
        """Training: z = (x − batch mean) Rᵀ with R before the update, then R is updated (``running``
        centring: the running mean from before the batch in place of the batch mean, then it is updated).

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
        if self.centring == "running":
            mean = self._running_mean_then_update(mean.detach())
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
            self.last_mean = mean_d  # a fresh tensor (the batch or running mean), never modified afterwards
            self.last_R = R_used
            if self.centring == "batch":
                self.running_mean.lerp_(mean_d, self.mean_momentum)
            self._buffers["R"] = R_new  # the registered buffer, replaced (nn.Module.__setattr__ is slow per step)
        return z

    def _running_mean_then_update(self, batch_mean: Tensor) -> Tensor:
        """``running`` centring: a copy of the running mean from before this batch; then the running mean moves
        towards ``batch_mean``."""
        with torch.no_grad():
            used = self.running_mean.clone()
            if not math.isfinite(float(batch_mean.sum())):
                raise DataError(self._nonfinite_input_message())
            self.running_mean.lerp_(batch_mean, self.mean_momentum)
        return used

    def _fixed_R(self, x: Tensor, mean: Tensor) -> Tensor:
        """Training forward of the settings whose R no rule updates: ``centre`` (z = x − mean, R = I) and the
        ``zca`` oracle (z = (x − mean) Rᵀ with the R ``fit_zca`` last set); the mean is the batch mean, or the
        running mean with ``running`` centring."""
        with torch.no_grad():
            mean_d = mean.detach()
            if not math.isfinite(float(mean_d.sum())):
                raise DataError(self._nonfinite_input_message())
            self.last_mean = mean_d.clone()
            self.last_R = self.R
            if self.centring == "batch":
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


# ----------------------------------------------------------------------------------------------------------
# The layers: every trainable stage of a network is (decorrelator?) → linear map → activation


def _pair(v: int | tuple[int, int], what: str) -> tuple[int, int]:
    if isinstance(v, int) and not isinstance(v, bool):
        return (v, v)
    t = tuple(v) if isinstance(v, (tuple, list)) else ()
    if len(t) != 2 or any(isinstance(i, bool) or not isinstance(i, int) for i in t):
        raise ConfigError(f"{what} must be an int or a pair of ints, got {v!r}.")
    return t  # type: ignore[return-value]


@dataclass(frozen=True)
class ConvGeometry:
    """Patch geometry of a convolutional layer: input C×H×W (H, W None: taken from each input), kernel, stride,
    padding, dilation (each an int or an (h, w) pair, stored as pairs)."""

    in_channels: int
    height: int | None
    width: int | None
    kernel: int | tuple[int, int]
    stride: int | tuple[int, int] = 1
    padding: int | tuple[int, int] = 0
    dilation: int | tuple[int, int] = 1

    def __post_init__(self) -> None:
        for what in ("kernel", "stride", "padding", "dilation"):
            object.__setattr__(self, what, _pair(getattr(self, what), what if what != "kernel" else "kernel_size"))
        if isinstance(self.in_channels, bool) or not isinstance(self.in_channels, int) or self.in_channels <= 0:
            raise ConfigError(f"in_channels must be a positive integer, got {self.in_channels!r}.")
        if min(*self.kernel, *self.stride, *self.dilation) <= 0 or min(self.padding) < 0:
            raise ConfigError(
                f"invalid conv geometry kernel_size={self.kernel}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}: sizes/strides/dilations must be ≥ 1, padding ≥ 0."
            )

    def output_size(self, h: int, w: int) -> tuple[int, int]:
        """Spatial output size for an h×w input (as nn.Conv2d)."""
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = self.kernel, self.stride, self.padding, self.dilation
        return (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1

    @property
    def out_height(self) -> int:
        return self.output_size(*self._size())[0]

    @property
    def out_width(self) -> int:
        return self.output_size(*self._size())[1]

    @property
    def patch_size(self) -> int:
        return self.in_channels * self.kernel[0] * self.kernel[1]

    @property
    def positions(self) -> int:
        return self.out_height * self.out_width

    def _size(self) -> tuple[int, int]:
        if self.height is None or self.width is None:
            raise ConfigError(
                "this conv layer was built without an input size, which a local learning rule needs (it maps "
                "rows back to images outside a forward pass); build it with input_size=(H, W)"
            )
        return self.height, self.width

    def for_input(self, x: Tensor, name: str) -> ConvGeometry:
        """This geometry sized for the image batch ``x`` (DataError naming ``name`` if ``x`` cannot be one)."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise DataError(f"{name}: expected input (N, {self.in_channels}, H, W), got shape {tuple(x.shape)}.")
        h, w = int(x.shape[2]), int(x.shape[3])
        if (h, w) == (self.height, self.width):
            return self
        ho, wo = self.output_size(h, w)
        if ho <= 0 or wo <= 0:
            raise DataError(
                f"{name}: input {h}×{w} is smaller than the kernel {self.kernel} (with padding "
                f"{self.padding}); increase padding or use a smaller kernel."
            )
        return dataclasses.replace(self, height=h, width=w)

    def to_rows(self, x: Tensor) -> Tensor:
        """(N, C, H, W) → (N·positions, C·kh·kw) patch rows, features in the order of a conv weight's flatten(1)."""
        patches = F.unfold(x, self.kernel, dilation=self.dilation, padding=self.padding, stride=self.stride)
        return patches.transpose(1, 2).reshape(-1, self.patch_size)

    def from_rows(self, rows: Tensor, n: int) -> Tensor:
        """(N·positions, out) rows → (N, out, H_out, W_out)."""
        ho, wo = self.output_size(*self._size())
        return rows.reshape(n, ho * wo, -1).transpose(1, 2).reshape(n, -1, ho, wo)

    def rows_to_input(self, grad_rows: Tensor, n: int) -> Tensor:
        """Adjoint of ``to_rows``: row-space gradients back to (N, C, H, W) (fold sums the overlaps)."""
        cols = grad_rows.reshape(n, self.positions, self.patch_size).transpose(1, 2)
        return F.fold(cols, self._size(), self.kernel, dilation=self.dilation, padding=self.padding,
                      stride=self.stride)


#: ``decorrelator=NEW`` (the default of the layer constructors): a Decorrelator built from the keyword arguments.
NEW: Any = object()


class Layer(nn.Module):
    """One trainable stage: optional decorrelator ``decor``, linear map ``linear`` (on rows), activation ``act``.

    A convolution is the same thing applied to image patches: ``conv`` (a ConvGeometry; None for a dense layer)
    unfolds the input into rows of C·kh·kw patches, the decorrelator decorrelates the rows and ``linear`` maps
    them. That keeps one representation for all learning rules (each sees a layer's input rows z and delivers an
    update (z, d)) and for both backends (the analog backend swaps ``linear`` for a crossbar tile, dense or conv
    alike). Build one with :class:`DecorLinear` or :class:`DecorConv2d`; ``analogdecorr.models.build_model``
    does the same.
    """

    def __init__(self, linear: nn.Module, decor: nn.Module | None, act: nn.Module,
                 conv: ConvGeometry | None = None) -> None:
        super().__init__()
        self.linear = linear
        self.decor = decor
        self.act = act
        self.conv = conv

    @property
    def in_rows_features(self) -> int:
        return self.conv.patch_size if self.conv else self.linear.in_features

    def _name(self) -> str:
        return self.decor.name if self.decor is not None else type(self).__name__

    def to_rows(self, x: Tensor) -> Tensor:
        """The rows the decorrelator and the linear map see: the flattened input of a dense layer, the unfolded
        patches of a conv layer (N·positions rows)."""
        if self.conv is None:
            return x.flatten(1)
        return self.conv.for_input(x, self._name()).to_rows(x)

    def from_rows(self, rows: Tensor, n: int) -> Tensor:
        """The linear map's output rows back into the layer's output shape."""
        return rows if self.conv is None else self.conv.from_rows(rows, n)

    def rows_to_input(self, grad_rows: Tensor, n: int) -> Tensor:
        """Adjoint of ``to_rows``: row-space gradients back to the input's shape."""
        return grad_rows if self.conv is None else self.conv.rows_to_input(grad_rows, n)

    def forward(self, x: Tensor) -> Tensor:
        g = self.conv.for_input(x, self._name()) if self.conv is not None else None
        rows = x.flatten(1) if g is None else g.to_rows(x)
        z = self.decor(rows) if self.decor is not None else rows
        out = self.linear(z)
        return self.act(out if g is None else g.from_rows(out, x.shape[0]))


def _decorrelator(features: int, decorrelator: Any, decor_kwargs: dict[str, Any]) -> nn.Module | None:
    if decorrelator is NEW:
        return Decorrelator(features, **decor_kwargs)
    if decor_kwargs:
        raise ConfigError(
            f"decorrelator options {sorted(decor_kwargs)} given with decorrelator={decorrelator!r}; give either "
            "the options (a new Decorrelator) or the module"
        )
    return decorrelator


class DecorLinear(Layer):
    """A dense layer: y = act(((x − μ) Rᵀ) Wᵀ + b) on inputs (N, in_features) (further dims are flattened).

    The layer ``analogdecorr train`` builds for an MLP. ``decor_kwargs`` (rule, lr, sample_frac, scale_free,
    kappa, mean_momentum) configure its :class:`Decorrelator`; ``decorrelator`` replaces it by a given module
    (None: no decorrelation). ``act`` defaults to the identity. Attributes .decor, .linear, .act.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, act: nn.Module | None = None,
                 decorrelator: Any = NEW, **decor_kwargs: Any) -> None:
        decor = _decorrelator(in_features, decorrelator, decor_kwargs)
        super().__init__(nn.Linear(in_features, out_features, bias=bias), decor, act or nn.Identity())

    @property
    def in_features(self) -> int:
        return self.linear.in_features

    @property
    def out_features(self) -> int:
        return self.linear.out_features


class DecorConv2d(Layer):
    """A conv layer with a decorrelated input: R acts on the C·kh·kw patches (F.unfold), then the weight is
    applied as a matrix to the decorrelated patch rows. Output is shaped like nn.Conv2d's.

    The layer ``analogdecorr train`` builds for a conv net. The weight is ``linear.weight`` (out × C·kh·kw;
    :attr:`conv_weight` is the same tensor shaped like nn.Conv2d's); with R = I and zero mean the layer equals
    ``F.conv2d(x, conv_weight, linear.bias, ...)``. The mean is per patch element (over samples and positions);
    the R update uses the first ``floor(sample_frac · rows) + 1`` patch rows of the batch (all positions of its
    first samples). ``input_size=(H, W)`` fixes the input size, which local learning rules need; without it any
    size is accepted. ``decor_kwargs``, ``decorrelator`` and ``act`` as for :class:`DecorLinear`.
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
        *,
        input_size: tuple[int, int] | None = None,
        act: nn.Module | None = None,
        decorrelator: Any = NEW,
        **decor_kwargs: Any,
    ) -> None:
        if isinstance(out_channels, bool) or not isinstance(out_channels, int) or out_channels <= 0:
            raise ConfigError(f"out_channels must be a positive integer, got {out_channels!r}.")
        h, w = _pair(input_size, "input_size") if input_size is not None else (None, None)
        g = ConvGeometry(in_channels, h, w, kernel_size, stride, padding, dilation)
        decor = _decorrelator(g.patch_size, decorrelator, decor_kwargs)
        super().__init__(nn.Linear(g.patch_size, out_channels, bias=bias), decor, act or nn.Identity(), g)

    @property
    def in_channels(self) -> int:
        return self.conv.in_channels

    @property
    def out_channels(self) -> int:
        return self.linear.out_features

    @property
    def conv_weight(self) -> Tensor:
        """The weight shaped like nn.Conv2d's (out, C, kh, kw): a view of ``linear.weight``."""
        return self.linear.weight.view(self.out_channels, self.in_channels, *self.conv.kernel)
