"""Certified robust accuracy from logit margins (AOL paper Sec. 6; Tsuzuku et al., NeurIPS 2018).

A point is certified at l2 radius eps when it is classified correctly and

    f_y(x) - max_{j != y} f_j(x) > sqrt(2) * L * eps,

where L is a guaranteed upper bound on the network's Lipschitz constant: an
eps-perturbation moves each logit difference by at most sqrt(2) * L * eps.
Margins are computed in float64.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

#: The radii the papers report (AOL paper Tables 3-4; 1LLC Table 2): 36/255, 72/255, 108/255 and 1.
PAPER_EPSILONS = (36 / 255, 72 / 255, 108 / 255, 1.0)


def margins(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``f_y - max_{j != y} f_j`` per row, in float64 (negative when misclassified)."""
    scores = scores.to(torch.float64)
    true_scores = scores.gather(1, labels[:, None]).squeeze(1)
    others = scores.scatter(1, labels[:, None], float("-inf"))
    return true_scores - others.max(dim=1).values


def certified_mask(
    scores: torch.Tensor, labels: torch.Tensor, epsilon: float, lipschitz_bound: float
) -> torch.Tensor:
    """Boolean per point: correct and certified at radius ``epsilon``."""
    if lipschitz_bound is None or not math.isfinite(lipschitz_bound) or lipschitz_bound <= 0:
        raise ValueError(
            f"certification needs a finite positive Lipschitz bound, got {lipschitz_bound!r}"
        )
    point_margins = margins(scores, labels)
    correct = scores.argmax(dim=1) == labels
    return correct & (point_margins > math.sqrt(2) * lipschitz_bound * epsilon)


def certified_robust_accuracy(
    scores: torch.Tensor,
    labels: torch.Tensor,
    epsilons: Iterable[float] = PAPER_EPSILONS,
    lipschitz_bound: float = 1.0,
) -> dict[float, float]:
    """Fraction of points that are correct and certified, for each radius."""
    return {
        float(eps): certified_mask(scores, labels, eps, lipschitz_bound).double().mean().item()
        for eps in epsilons
    }
