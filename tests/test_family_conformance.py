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
