"""Conformance suite: ``aol.testing.check_family`` over every registered layer family.

A family added later (a baseline module, or another package's entry point) is checked here
with no new test code, one test per (family, check), so a failure names both. The checks
themselves, and what each compares with what, live in ``aol.testing``.
"""

from __future__ import annotations

import pytest

from aol import families, testing

FAMILY_NAMES = families.names()
BOUNDED_FAMILY_NAMES = [name for name in FAMILY_NAMES if families.get(name).lipschitz]
UNBOUNDED_FAMILY_NAMES = [name for name in FAMILY_NAMES if name not in BOUNDED_FAMILY_NAMES]
CHECKS_FOR_EVERY_FAMILY = [name for name in testing.CHECKS if name not in testing.BOUND_CHECKS]


@pytest.mark.parametrize("check", sorted(testing.BOUND_CHECKS))
@pytest.mark.parametrize("family", BOUNDED_FAMILY_NAMES)
def test_bounded_family_passes_bound_check(family, check):
    testing.check_family(family, checks=[check])


@pytest.mark.parametrize("check", CHECKS_FOR_EVERY_FAMILY)
@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_family_passes_check(family, check):
    testing.check_family(family, checks=[check])


def test_every_check_runs_above_for_the_families_it_applies_to():
    assert set(testing.BOUND_CHECKS) | set(CHECKS_FOR_EVERY_FAMILY) == set(testing.CHECKS)
    for name in BOUNDED_FAMILY_NAMES:
        assert testing.check_names(name) == tuple(testing.CHECKS)
    for name in UNBOUNDED_FAMILY_NAMES:
        assert testing.check_names(name) == tuple(CHECKS_FOR_EVERY_FAMILY)


def test_unknown_family_lists_registered_names():
    with pytest.raises(KeyError) as error:
        families.get("no-such-family")
    message = str(error.value)
    for name in FAMILY_NAMES:
        assert name in message


def test_required_families_are_registered():
    assert {"aol", "standard"} <= set(FAMILY_NAMES)
    assert "aol" in BOUNDED_FAMILY_NAMES
    assert "standard" not in BOUNDED_FAMILY_NAMES


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_nonlinear_flag_says_whether_the_layers_are_affine(family):
    """``nonlinear`` decides at how many points the conformance checks take the Jacobian, so
    it must be True exactly when a layer is not affine: an affine f has f(a x + (1 - a) y)
    = a f(x) + (1 - a) f(y) for all x, y and a, which a ReLU inside breaks at random points."""
    import torch

    declared = families.get(family).nonlinear
    torch.manual_seed(0)
    layers = [
        families.get(family).conv(4, 4, 3).double(),
        families.get(family).linear(6, 6).double(),
    ]
    affine = []
    for layer, shape in zip(layers, [(2, 4, 6, 6), (2, 6)], strict=True):
        layer.eval()
        for parameter in layer.parameters():  # away from the initialisation's symmetries
            parameter.data.add_(0.3 * torch.randn_like(parameter))
        x, y = torch.randn(shape, dtype=torch.float64), torch.randn(shape, dtype=torch.float64)
        with torch.no_grad():
            mixed = layer(0.3 * x + 0.7 * y)
            expected = 0.3 * layer(x) + 0.7 * layer(y)
        affine.append(torch.allclose(mixed, expected, atol=1e-9, rtol=1e-9))
    assert affine[0] == affine[1], "conv and dense layers disagree"
    assert declared == (not affine[0])
