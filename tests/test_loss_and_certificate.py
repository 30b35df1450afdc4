"""Offset cross-entropy and certified robust accuracy."""

from __future__ import annotations

import math

import pytest
import torch

from aol.certificate import certified_robust_accuracy, margins
from aol.loss import OffsetCrossEntropy
from aol.radius import PAPER_RADII, Radius


def test_loss_matches_the_released_unit_test():
    """All logits 0, u = 1, t = 1, 10 classes: 1 + log(e^-1 + 9)

    The value of the released unit test, berndprach/AOL@562bddf ``unittests/``.
    """
    loss = OffsetCrossEntropy(offset=1.0, temperature=1.0)(torch.zeros(1, 10), torch.tensor([3]))
    assert loss.item() == pytest.approx(1 + math.log(math.exp(-1) + 9))


def test_loss_formula_with_paper_defaults():
    scores = torch.randn(6, 5, dtype=torch.float64)
    labels = torch.tensor([0, 1, 2, 3, 4, 0])
    u, t = math.sqrt(2), 0.25
    expected = 0.0
    for row, label in zip(scores, labels, strict=True):
        shifted = row.clone()
        shifted[label] -= u
        expected += t * (torch.logsumexp(shifted / t, 0) - shifted[label] / t).item()
    assert OffsetCrossEntropy()(scores, labels).item() == pytest.approx(expected / 6)


def test_margins_are_float64_and_signed():
    scores = torch.tensor([[3.0, 1.0, 2.5], [0.0, 2.0, 1.0]], dtype=torch.float32)
    result = margins(scores, torch.tensor([0, 0]))
    assert result.dtype == torch.float64
    torch.testing.assert_close(result, torch.tensor([0.5, -2.0], dtype=torch.float64))


def test_threshold_is_strict_and_scales_with_the_bound():
    eps = 0.5
    threshold = math.sqrt(2) * eps
    scores = torch.tensor(
        [[threshold, 0.0], [threshold + 1e-9, 0.0], [2 * threshold + 1e-9, 0.0]],
        dtype=torch.float64,
    )
    labels = torch.zeros(3, dtype=torch.long)
    assert certified_robust_accuracy(scores, labels, [eps], 1.0)[eps] == pytest.approx(2 / 3)
    assert certified_robust_accuracy(scores, labels, [eps], 2.0)[eps] == pytest.approx(1 / 3)
    assert certified_robust_accuracy(scores, labels, [0.0], 1.0)[0.0] == pytest.approx(1.0)
    # a Radius is the same threshold as its float, and keys its result
    by_radius = certified_robust_accuracy(scores, labels, [Radius.parse("1/2")], 1.0)
    assert by_radius == {Radius.parse(eps): pytest.approx(2 / 3)}
    assert list(certified_robust_accuracy(scores, labels)) == list(PAPER_RADII)
    with pytest.raises(ValueError, match="bound"):
        certified_robust_accuracy(scores, labels, [eps], None)


def test_certified_points_of_a_linear_classifier_are_truly_robust():
    """For f(x) = W x + b the distance to the nearest decision boundary is exact:
    min_j (f_y - f_j) / ||w_y - w_j||. Every certified point must have it above eps."""
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(4, 6, generator=generator, dtype=torch.float64)
    weight /= torch.linalg.matrix_norm(weight, ord=2)  # Lipschitz constant exactly 1
    points = torch.randn(500, 6, generator=generator, dtype=torch.float64) * 3
    scores = points @ weight.T
    labels = scores.argmax(1)
    labels[::7] = (labels[::7] + 1) % 4  # some misclassified points
    for radius in PAPER_RADII:
        eps = float(radius)
        fraction = certified_robust_accuracy(scores, labels, [radius], lipschitz_bound=1.0)[radius]
        certified = 0
        for score, label in zip(scores, labels, strict=True):
            others = [j for j in range(4) if j != label]
            distance = min(
                (score[label] - score[j]) / (weight[label] - weight[j]).norm() for j in others
            )
            robust = distance.item() > eps
            certified += robust
        # the certificate may be loose but never claims a non-robust point
        assert fraction * len(points) <= certified
        assert fraction > 0
