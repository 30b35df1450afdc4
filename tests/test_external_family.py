"""A family shipped by a separate package is found through the ``aol.families`` entry-point
group, by name, and passes the conformance checks.

The package is written into a temporary directory as an installed distribution would be
(a module plus ``<name>.dist-info/{METADATA,entry_points.txt}``) and put on ``sys.path``;
nothing is registered in-process.
"""

from __future__ import annotations

import textwrap

import pytest
import torch

import aol
from aol import families
from aol.testing import assert_bound_holds, maximise_output_norm, randomise

MODULE = '''
"""A throw-away family: the spectral baseline's layers under another name."""
from aol.families import LayerFamily
from aol.nn.modules import MaxMin
from baselines.spectral import SpectralConv2d, SpectralLinear

TINY = LayerFamily(
    name="tiny-external",
    conv_factory=SpectralConv2d,
    linear_factory=SpectralLinear,
    activation=MaxMin,
    padding_modes=("circular",),
    lipschitz=True,
    description="test family from a separate package",
)
'''


@pytest.fixture
def external_package(tmp_path, monkeypatch):
    (tmp_path / "tiny_external_family.py").write_text(textwrap.dedent(MODULE))
    info = tmp_path / "tiny_external_family-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: tiny-external-family\nVersion: 0.1\n"
    )
    (info / "entry_points.txt").write_text(
        "[aol.families]\ntiny-external = tiny_external_family:TINY\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    families._entry_point_families.cache_clear()
    yield
    monkeypatch.undo()
    families._entry_point_families.cache_clear()


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


def test_the_throw_away_family_is_gone_afterwards():
    assert "tiny-external" not in families.names()
