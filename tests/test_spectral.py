"""Spectral normalisation by the Gram-iteration bound: the normaliser bounds the exact norm
(dense Jacobians) at every input size and padding, the stated bound is 1 up to rounding
(for a whole ConvNet-XS during training: tests/test_trained_network_bound.py), export,
state_dict round trips."""

from __future__ import annotations

import pytest
import torch

from aol.testing import randomise
from aol.verify import jacobian_singular_values
from baselines.spectral import (
    SpectralConv2d,
    SpectralLinear,
    gram_iteration_multiply_adds,
)


def train_steps(layer, x, steps):
    layer.train()
    for _ in range(steps):
        layer(x)


def raw_operator_norm(layer, input_shape):
    """Exact norm of the convolution with the raw (unnormalised) weight."""
    raw = torch.nn.Conv2d(
        layer.in_channels, layer.out_channels, layer.kernel_size, padding="same",
        padding_mode=layer.padding_mode, bias=False, dtype=torch.float64,
    )  # fmt: skip
    with torch.no_grad():
        raw.weight.copy_(layer.weight)
    return jacobian_singular_values(raw, input_shape)[0].item()


@pytest.mark.parametrize("padding_mode", ["zeros", "circular"])
@pytest.mark.parametrize(("c_in", "c_out", "kernel_size", "size"), [(3, 3, 3, 16), (2, 4, 3, 14)])
def test_bound_is_above_the_exact_norm_and_one_up_to_rounding(
    padding_mode, c_in, c_out, kernel_size, size
):
    layer = SpectralConv2d(c_in, c_out, kernel_size, padding_mode=padding_mode).double()
    randomise(layer, seed=5)
    train_steps(layer, torch.randn(2, c_in, size, size, dtype=torch.float64), 3)
    layer.eval()
    exact = jacobian_singular_values(layer, (c_in, size, size))[0].item()
    bound = layer.lipschitz_bound()
    assert exact <= bound <= 1 + 1e-8
    # the normaliser bounds the raw operator: the normalised one has norm <= 1
    assert raw_operator_norm(layer, (c_in, size, size)) <= layer.normaliser().item()


def test_the_normaliser_bounds_the_operator_where_the_reshaped_kernel_does_not():
    """Zero-padded 3x3 kernels: the reshaped-kernel norm would not normalise."""
    layer = SpectralConv2d(4, 4, 3).double()
    randomise(layer)
    layer.eval()
    exact = jacobian_singular_values(layer, (4, 9, 9))[0].item()
    assert exact <= 1.0 + 1e-12
    reshaped = torch.linalg.matrix_norm(layer.weight.detach().reshape(4, -1), 2)
    conv_norm = raw_operator_norm(layer, (4, 9, 9))
    assert conv_norm > 1.05 * reshaped.item()
    assert conv_norm <= layer.normaliser().item()


def test_the_bound_holds_at_every_input_size_without_state():
    layer = SpectralConv2d(3, 3, 3, padding_mode="circular").double()
    randomise(layer, seed=2)
    train_steps(layer, torch.randn(1, 3, 6, 6, dtype=torch.float64), 2)
    layer.eval()
    for size in (3, 6, 11):
        exact = jacobian_singular_values(layer, (3, size, size))[0].item()
        assert exact <= layer.lipschitz_bound() <= 1 + 1e-8


def test_an_orthogonal_kernel_keeps_norm_one():
    """At the Dirac / orthogonal initialisation the Gram kernel is the identity: B(W) = 1."""
    layer = SpectralConv2d(4, 6, 3, padding_mode="circular").double()
    assert layer.normaliser().item() == pytest.approx(1.0, abs=1e-6)  # float32 init
    exact = jacobian_singular_values(layer, (4, 5, 5))[0].item()
    assert exact == pytest.approx(1.0, abs=1e-6)


def test_eval_mode_and_export_match():
    layer = SpectralConv2d(3, 5, 3)
    randomise(layer, seed=4)
    train_steps(layer, torch.randn(2, 3, 8, 8), 2)
    layer.eval()
    x = torch.randn(2, 3, 10, 10)
    output = layer(x)
    torch.testing.assert_close(layer.export()(x), output)


def test_state_dict_round_trip():
    source = SpectralConv2d(3, 4, 3).double()
    randomise(source, seed=1)
    target = SpectralConv2d(3, 4, 3).double()
    target.load_state_dict(source.state_dict())
    x = torch.randn(2, 3, 7, 7, dtype=torch.float64)
    torch.testing.assert_close(target.eval()(x), source.eval()(x), rtol=0, atol=0)
    assert target.lipschitz_bound() == source.lipschitz_bound()


def test_dense_bound_and_more_iterations_tighten():
    layer = SpectralLinear(6, 4, matrix_gram_iterations=8).double()
    randomise(layer)
    layer.eval()
    exact = torch.linalg.matrix_norm(layer.export().weight, 2).item()
    assert exact <= layer.lipschitz_bound() <= 1 + 1e-8
    # (W^T W)^128 is nearly rank one: its row-sum bound, to the power 1/256, is within 1%
    assert exact >= 0.99
    loose = SpectralLinear(6, 4, matrix_gram_iterations=1).double()
    loose.load_state_dict(layer.state_dict())
    assert torch.linalg.matrix_norm(loose.export().weight, 2).item() < exact


def test_multiply_adds_count_the_gram_iterations():
    # step 0: 3x3 taps (c_out 4) -> 5x5, 3*3*25*4*9; step 1: 5x5 (c_in 3) -> 9x9, 3*3*81*3*25
    assert gram_iteration_multiply_adds((4, 3, 3, 3), 2) == 8100 + 54675
    layer = SpectralConv2d(3, 4, 3, gram_iterations=2)
    assert layer.multiply_adds((3, 5, 5), 2) == 2 * 25 * 3 * 4 * 9 + 8100 + 54675


@pytest.mark.parametrize(
    ("options", "hint"),
    [
        pytest.param({"padding_mode": "reflect"}, "padding_mode", id="reflect-padding"),
        pytest.param({"stride": 2}, "stride 1", id="stride-2"),
        pytest.param({"gram_iterations": 0}, "gram_iterations", id="no-iterations"),
    ],
)
def test_unsupported_settings_raise(options, hint):
    with pytest.raises(ValueError, match=hint):
        SpectralConv2d(3, 3, 3, **options)


def test_input_with_the_wrong_channels_raises():
    with pytest.raises(ValueError, match="expected input"):
        SpectralConv2d(3, 3, 3)(torch.randn(1, 2, 6, 6))
