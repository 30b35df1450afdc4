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

from aol.radius import PAPER_RADII, Radius


def margins(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``f_y - max_{j != y} f_j`` per row, in float64 (negative when misclassified)."""
    scores = scores.to(torch.float64)
    true_scores = scores.gather(1, labels[:, None]).squeeze(1)
    others = scores.scatter(1, labels[:, None], float("-inf"))
    return true_scores - others.max(dim=1).values


def certified_mask(
    scores: torch.Tensor, labels: torch.Tensor, radius: Radius | float, lipschitz_bound: float
) -> torch.Tensor:
    """Boolean per point: correct and certified at ``radius`` (a Radius or a float >= 0)."""
    if lipschitz_bound is None or not math.isfinite(lipschitz_bound) or lipschitz_bound <= 0:
        raise ValueError(
            f"certification needs a finite positive Lipschitz bound, got {lipschitz_bound!r}"
        )
    point_margins = margins(scores, labels)
    correct = scores.argmax(dim=1) == labels
    return correct & (point_margins > math.sqrt(2) * lipschitz_bound * float(radius))


def certified_robust_accuracy(
    scores: torch.Tensor,
    labels: torch.Tensor,
    radii: Iterable[Radius | float] = PAPER_RADII,
    lipschitz_bound: float = 1.0,
) -> dict[Radius | float, float]:
    """Fraction of points that are correct and certified, for each radius (keyed as given)."""
    return {
        radius: certified_mask(scores, labels, radius, lipschitz_bound).double().mean().item()
        for radius in radii
    }
