"""Evaluation figures: loss/accuracy over a split and the correlation of a layer's inputs."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def correlation_matrix(rows: Tensor, max_rows: int = 4096) -> Tensor:
    """Pearson correlation of the columns of ``rows`` (features with zero variance correlate 0 with all)."""
    rows = rows[:max_rows].double()
    c = rows - rows.mean(0)
    std = c.pow(2).mean(0).sqrt()
    ok = std > 1e-12
    c = torch.where(ok, c / torch.where(ok, std, torch.ones_like(std)), torch.zeros_like(c))
    corr = c.T @ c / rows.shape[0]
    return corr


def mean_abs_offdiag(rows: Tensor, max_rows: int = 4096) -> float:
    """Mean |off-diagonal correlation| of the columns of ``rows``: 0 for decorrelated features."""
    d = rows.shape[1]
    if d < 2:
        return 0.0
    corr = correlation_matrix(rows, max_rows)
    off = corr.abs().sum() - corr.diagonal().abs().sum()
    return float(off / (d * (d - 1)))


@torch.no_grad()
def evaluate(net: nn.Module, x: Tensor, y: Tensor, batch_size: int = 1000) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of ``net`` in eval mode over (x, y); restores the previous mode."""
    was_training = net.training
    net.eval()
    total_loss, correct = 0.0, 0
    for i in range(0, x.shape[0], batch_size):
        logits = net(x[i : i + batch_size])
        yy = y[i : i + batch_size]
        total_loss += float(F.cross_entropy(logits, yy, reduction="sum"))
        correct += int((logits.argmax(1) == yy).sum())
    net.train(was_training)
    n = max(x.shape[0], 1)
    return total_loss / n, correct / n
