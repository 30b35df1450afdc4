"""Shared check for the tests of orthogonal convolution families (Cayley, SOC, BCOP): a layer
that changes the number of channels is an isometry or a co-isometry."""

import pytest
import torch

from aol.verify import jacobian_singular_values

#: 3 -> 6 channels (an isometry) and 6 -> 3 (a co-isometry).
CHANNEL_CHANGES = [pytest.param(3, 6, id="growing"), pytest.param(6, 3, id="shrinking")]


def assert_isometry_or_coisometry(layer: torch.nn.Module, size: int) -> torch.Tensor:
    """All ``min(c_in, c_out) size^2`` singular values of the exact Jacobian of ``layer`` on a
    ``c_in x size x size`` input are 1, to 1e-4; returns them (descending)."""
    values = jacobian_singular_values(layer, (layer.in_channels, size, size))
    assert values.numel() == min(layer.in_channels, layer.out_channels) * size * size
    assert (values - 1).abs().max() < 1e-4
    return values
