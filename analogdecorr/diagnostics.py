"""Per-layer instruments the study reads next to accuracy: the eigenvalue spread of each layer's decorrelated input,
and how well node perturbation's update points along the true gradient.

Mean |off-diagonal correlation| cannot see conditioning: a rule can decorrelate well and still shrink the top
eigenvalue of ⟨zzᵀ⟩ a hundred-fold (SPEC §2). ``input_spectrum`` reports that spectrum; ``np_gradient_cosine``
compares NP's estimate G with the backprop gradient on a probe batch, on whatever backend holds the weights (on
tiles: NP's analog reads against the gradient of the exact weights).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

if TYPE_CHECKING:
    from .models import Network
    from .rules import NodePerturbation

#: Eigenvalues below RANK_TOL·λ_max count as null directions (outside the numerical range). The rows are float32:
#: a direction without variance picks up rounding noise of relative variance ≈ d·ε₃₂² ≈ 1e-11, far below this,
#: while any genuine spread up to 1e10 stays inside the range.
RANK_TOL = 1e-10


def input_spectrum(z: Tensor, max_rows: int = 4096) -> dict[str, float | int | None]:
    """Spectrum of the centred covariance Σ = ⟨(z − z̄)(z − z̄)ᵀ⟩ of the rows of ``z`` (first ``max_rows``).

    Returns eig_max (λ_max), eig_min (smallest eigenvalue, clipped at 0), rank (eigenvalues above
    RANK_TOL·λ_max) and cond = λ_max / (smallest eigenvalue in that range): the condition number of Σ on the
    directions that carry variance (equal to numpy's cond(Σ) when Σ has full rank). A rank below d means
    directions without variance: constant inputs (digits' blank pixels), dead units, or fewer probe rows than
    features (then the small eigenvalues are the sample covariance's, not the distribution's). cond and rank
    are None/0 for an input without any variance.
    """
    rows = z[:max_rows].reshape(-1, z.shape[-1]).double()
    c = rows - rows.mean(0)
    lam = torch.linalg.eigvalsh(c.T @ c / rows.shape[0])  # ascending
    top = float(lam[-1])
    bottom = max(float(lam[0]), 0.0)
    if not top > 0 or not math.isfinite(top):
        return {"eig_max": top if math.isfinite(top) else None, "eig_min": bottom, "rank": 0, "cond": None}
    kept = lam[lam > RANK_TOL * top]
    return {"eig_max": top, "eig_min": bottom, "rank": int(kept.numel()), "cond": top / float(kept[0])}


def true_gradients(
    net: Network, weights: Sequence[tuple[Tensor, Tensor | None]], x: Tensor, y: Tensor
) -> list[Tensor]:
    """∂L/∂W of every layer for the mean cross-entropy on (x, y), computed digitally with the given exact
    (W, b) per layer and each decorrelator's z = (x − running mean) Rᵀ (evaluation centring, the current R, no
    state change): the gradient a perfect backprop would follow at the network's present weights."""
    ws = [w.detach().clone().float().requires_grad_(True) for w, _ in weights]
    with torch.enable_grad():
        h = net.shape_input(x)
        for layer, w, (_, b) in zip(net.layers, ws, weights, strict=True):
            rows = layer.to_rows(h)
            dec = layer.decor  # the float formula with its R and mean (a fixed-point unit: their float views)
            z = dec.transform(rows, dec.running_mean, dec.R) if dec is not None else rows
            out = F.linear(z, w, None if b is None else b.detach().float())
            h = layer.act(layer.from_rows(out, h.shape[0]))
        return list(torch.autograd.grad(F.cross_entropy(h, y), ws))


def cosine(a: Tensor, b: Tensor) -> float:
    """cos∠(a, b) of two tensors flattened (float64); NaN when either is zero."""
    a, b = a.flatten().double(), b.flatten().double()
    denom = float(a.norm() * b.norm())
    return float(a @ b) / denom if denom > 0 else math.nan


def np_gradient_cosine(
    net: Network,
    rule: NodePerturbation,
    weights: Sequence[tuple[Tensor, Tensor | None]],
    x: Tensor,
    y: Tensor,
    generator: torch.Generator,
) -> list[float]:
    """Per layer, cos(G_NP, ∂L/∂W) on the probe batch (x, y): G_NP = dᵀz is one NP estimate (one draw of ξ
    from ``generator``, the rule's σ and antithetic setting, forward reads through the network as it runs, so
    tiles read with their noise), ∂L/∂W the exact gradient at ``weights``. The network is in evaluation mode
    throughout (decorrelators centre with their running mean and do not learn); the rule's own generator and
    every weight are untouched. 1 means NP moves the weights exactly downhill; 0 means no better than chance."""
    was_training = net.training
    net.eval()
    try:
        _, _, updates, _ = rule.estimate(net, x, y, generator=generator)
        grads = true_gradients(net, weights, x, y)
    finally:
        net.train(was_training)
    return [cosine(d.T @ z, g) for (z, d), g in zip(updates, grads, strict=True)]
