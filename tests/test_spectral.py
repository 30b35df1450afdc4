"""Spectral normalisation of the convolution operator: the guaranteed bound against the exact
norm, the persistent power iteration, input-size changes and state_dict round trips."""

from __future__ import annotations

import pytest
import torch

from aol.testing import randomise
from aol.verify import jacobian_singular_values
from baselines.spectral import SpectralConv2d, SpectralLinear


def train_steps(layer, x, steps):
    layer.train()
    for _ in range(steps):
        layer(x)


@pytest.mark.parametrize("padding_mode", ["zeros", "circular"])
@pytest.mark.parametrize(("c_in", "c_out", "kernel_size", "size"), [(3, 3, 3, 16), (2, 4, 3, 14)])
def test_bound_is_above_and_within_ten_percent_of_the_exact_norm(
    padding_mode, c_in, c_out, kernel_size, size
):
    layer = SpectralConv2d(c_in, c_out, kernel_size, padding_mode=padding_mode).double()
    randomise(layer, seed=5)
    train_steps(layer, torch.randn(2, c_in, size, size, dtype=torch.float64), 3)
    layer.eval()
    exact = jacobian_singular_values(layer, (c_in, size, size))[0].item()
    bound = layer.lipschitz_bound()
    assert exact <= bound <= 1.1 * exact


def test_power_iteration_normalises_the_operator_at_the_training_size():
    """Zero-padded 3x3 kernels: the reshaped-kernel norm would not normalise ."""
    layer = SpectralConv2d(4, 4, 3).double()
    randomise(layer)
    x = torch.randn(2, 4, 9, 9, dtype=torch.float64)
    train_steps(layer, x, 5)
    layer.eval()
    exact = jacobian_singular_values(layer, (4, 9, 9))[0].item()
    assert 1.0 - 1e-12 <= exact <= 1.01  # sigma approaches the norm from below
    reshaped = torch.linalg.matrix_norm(layer.weight.detach().reshape(4, -1), 2)
    conv_norm = layer.sigma().item()
    assert conv_norm > 1.05 * reshaped.item()


def test_a_new_input_size_draws_a_new_vector_and_renormalises():
    layer = SpectralConv2d(3, 3, 3, padding_mode="circular").double()
    randomise(layer, seed=2)
    train_steps(layer, torch.randn(1, 3, 6, 6, dtype=torch.float64), 2)
    assert layer.right_vector.shape == (1, 3, 6, 6)
    train_steps(layer, torch.randn(1, 3, 11, 11, dtype=torch.float64), 2)
    assert layer.right_vector.shape == (1, 3, 11, 11)
    layer.eval()
    exact = jacobian_singular_values(layer, (3, 11, 11))[0].item()
    assert 1.0 - 1e-12 <= exact <= 1.01
    assert exact <= layer.lipschitz_bound()


def test_eval_mode_freezes_the_vector_and_export_matches():
    layer = SpectralConv2d(3, 5, 3)
    randomise(layer, seed=4)
    train_steps(layer, torch.randn(2, 3, 8, 8), 2)
    layer.eval()
    vector = layer.right_vector.clone()
    x = torch.randn(2, 3, 10, 10)
    output = layer(x)
    assert torch.equal(layer.right_vector, vector)
    torch.testing.assert_close(layer.export()(x), output)


def test_state_dict_round_trip_with_a_vector_of_another_size():
    source = SpectralConv2d(3, 4, 3).double()
    randomise(source, seed=1)
    train_steps(source, torch.randn(1, 3, 13, 13, dtype=torch.float64), 3)
    target = SpectralConv2d(3, 4, 3).double()
    target.load_state_dict(source.state_dict())
    assert target.right_vector.shape == (1, 3, 13, 13)
    x = torch.randn(2, 3, 7, 7, dtype=torch.float64)
    torch.testing.assert_close(target.eval()(x), source.eval()(x), rtol=0, atol=0)
    assert target.lipschitz_bound() == source.lipschitz_bound()


def test_dense_bound_is_the_exact_norm_over_sigma():
    layer = SpectralLinear(6, 4).double()
    randomise(layer)
    layer.eval()
    exact = torch.linalg.matrix_norm(layer.export().weight, 2).item()
    assert exact <= layer.lipschitz_bound() <= exact * (1 + 1e-8)
    train_steps(layer, torch.randn(3, 6, dtype=torch.float64), 30)
    layer.eval()
    assert torch.linalg.matrix_norm(layer.export().weight, 2).item() == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("options", "hint"),
    [
        pytest.param({"padding_mode": "reflect"}, "padding_mode", id="reflect-padding"),
        pytest.param({"stride": 2}, "stride 1", id="stride-2"),
    ],
)
def test_unsupported_settings_raise(options, hint):
    with pytest.raises(ValueError, match=hint):
        SpectralConv2d(3, 3, 3, **options)


def test_input_with_the_wrong_channels_raises():
    with pytest.raises(ValueError, match="expected input"):
        SpectralConv2d(3, 3, 3)(torch.randn(1, 2, 6, 6))
