"""A family shipped by a separate package is found through the ``aol.families`` entry-point
group, by name, and tests itself with the public ``aol.testing.check_family``; and
``check_family`` rejects families that break the contract.

The package is written into a temporary directory as an installed distribution would be
(a module, its own test file, and ``<name>.dist-info/{METADATA,entry_points.txt}``) and put on
``sys.path``; nothing is registered in-process.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

import aol
from aol import AOLConv2d, AOLLinear, families
from aol.testing import (
    BOUND_CHECKS,
    ConformanceError,
    assert_bound_holds,
    check_family,
    maximise_output_norm,
    randomise,
)

PACKAGE_MODULE = "tiny_external_family"

MODULE = '''
"""A throw-away family: AOL's layers under another name, circular padding only."""
from aol import AOLConv2d, AOLLinear, MaxMin
from aol.families import LayerFamily

TINY = LayerFamily(
    name="tiny-external",
    conv_factory=AOLConv2d,
    linear_factory=AOLLinear,
    activation=MaxMin,
    padding_modes=("circular",),
    lipschitz=True,
    description="test family from a separate package",
)
'''

PACKAGE_TEST = '''
"""The separate package's own test: the public conformance checks on its family."""
from aol import families
from aol.testing import check_family
from tiny_external_family import TINY


def test_tiny_external_family_conforms():
    assert families.get("tiny-external") is TINY  # found through the entry point
    check_family(TINY)
'''


def write_external_package(root: Path) -> None:
    """The package's module, its test file and its dist-info (with the entry point)."""
    (root / f"{PACKAGE_MODULE}.py").write_text(textwrap.dedent(MODULE))
    (root / "tests").mkdir()
    (root / "tests" / f"test_{PACKAGE_MODULE}.py").write_text(textwrap.dedent(PACKAGE_TEST))
    info = root / f"{PACKAGE_MODULE}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: tiny-external-family\nVersion: 0.1\n"
    )
    (info / "entry_points.txt").write_text(
        f"[aol.families]\ntiny-external = {PACKAGE_MODULE}:TINY\n"
    )


@contextmanager
def external_package_on_path(root: Path):
    """The package on ``sys.path`` for the block; afterwards no trace of it is left."""
    write_external_package(root)
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(root))
        families._entry_point_families.cache_clear()
        try:
            yield
        finally:
            sys.modules.pop(PACKAGE_MODULE, None)
    families._entry_point_families.cache_clear()


@pytest.fixture
def external_package(tmp_path):
    with external_package_on_path(tmp_path):
        yield tmp_path


def test_family_from_a_separate_package_is_found_by_name_and_conforms(external_package):
    assert "tiny-external" in families.names()
    family = families.get("tiny-external")
    assert family.description == "test family from a separate package"
    assert family.default_padding_mode == "circular"
    layer = family.conv(3, 4, 3).double()
    randomise(layer, seed=2)
    maximise_output_norm(layer, (3, 6, 6))
    assert_bound_holds(layer, (3, 6, 6))
    network = aol.network_lipschitz_bound(
        torch.nn.Sequential(family.conv(2, 2, 3), family.activation())
    )
    assert network is not None and network >= 1.0


def test_the_separate_package_runs_its_own_conformance_test(tmp_path):
    """pytest in a fresh process, on the package's test file, with the package on the path."""
    write_external_package(tmp_path)
    repository = Path(aol.__file__).resolve().parents[1]
    path = [str(tmp_path), str(repository), os.environ.get("PYTHONPATH", "")]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, path))},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


def test_the_throw_away_family_is_gone_afterwards(tmp_path):
    with external_package_on_path(tmp_path):
        assert "tiny-external" in families.names()
    assert "tiny-external" not in families.names()
    assert PACKAGE_MODULE not in sys.modules
    assert str(tmp_path) not in sys.path


class OverstatedConv2d(AOLConv2d):
    """AOL's output scaled by 1.5 while ``lipschitz_bound()`` still says 1.0: a false bound."""

    def forward(self, x):
        return 1.5 * super().forward(x)


class OverstatedLinear(AOLLinear):
    def forward(self, x):
        return 1.5 * super().forward(x)


class GroupsTypeErrorConv2d(AOLConv2d):
    """Takes torch's argument order but raises ``TypeError`` (not ``ValueError``) for groups."""

    def __init__(
        self,
        in_channels,
        out_channels,
        kernel_size,
        stride=1,
        padding="same",
        dilation=1,
        groups=1,
        bias=True,
        padding_mode="zeros",
    ):
        if groups != 1:
            raise TypeError("groups is not an argument of this layer")
        super().__init__(
            in_channels, out_channels, kernel_size, stride, padding, dilation, 1, bias, padding_mode
        )


FALSE_BOUND = dataclasses.replace(
    families.AOL,
    name="false-bound",
    conv_factory=OverstatedConv2d,
    linear_factory=OverstatedLinear,
)
GROUPS_TYPE_ERROR = dataclasses.replace(
    families.AOL, name="groups-type-error", conv_factory=GroupsTypeErrorConv2d
)


@pytest.mark.parametrize("check", ["bound_random_weights", "bound_adversarial_weights"])
def test_check_family_rejects_a_false_bound(check):
    with pytest.raises(ConformanceError) as error:
        check_family(FALSE_BOUND, checks=[check])
    message = str(error.value)
    assert f"check {check!r} failed for family 'false-bound'" in message
    assert "kernel_size=1" in message and "exceeds stated bound" in message


def test_check_family_rejects_a_false_bound_with_every_check():
    with pytest.raises(ConformanceError, match="'bound_random_weights' failed") as error:
        check_family(FALSE_BOUND)
    assert isinstance(error.value, AssertionError)
    assert "padding_mode='zeros'" in str(error.value) and "exceeds stated bound" in str(error.value)


def test_check_family_rejects_a_conv_raising_type_error_for_groups():
    with pytest.raises(ConformanceError) as error:
        check_family(GROUPS_TYPE_ERROR, checks=["constructor_arguments"])
    message = str(error.value)
    assert "check 'constructor_arguments' failed for family 'groups-type-error'" in message
    assert "argument='groups=2'" in message and "TypeError" in message
    check_family(families.AOL, checks=["constructor_arguments"])  # the same check passes AOL


def test_check_family_refuses_an_unknown_check():
    with pytest.raises(ValueError, match="unknown check 'no-such-check'"):
        check_family("aol", checks=["no-such-check"])


@pytest.mark.parametrize("check", sorted(BOUND_CHECKS))
def test_check_family_refuses_a_bound_check_for_a_family_without_bounds(check):
    with pytest.raises(ValueError, match="lipschitz=True"):
        check_family("standard", checks=[check])


def test_check_family_leaves_the_global_random_state_alone():
    state = torch.get_rng_state()
    check_family("aol", checks=["export", "state_dict_round_trip"])
    check_family("standard", checks="export")  # one name alone is one check
    assert torch.equal(torch.get_rng_state(), state)
