"""Cayley: orthogonality, the Fourier-domain convention, alpha, eval caching, input checks
and the rounding allowance of its bound."""

from __future__ import annotations

import pytest
import torch

import baselines.cayley as cayley_module
from aol.nn.layers import same_size_conv2d
from aol.testing import maximise_output_norm, randomise
from aol.verify import jacobian_singular_values
from baselines.cayley import (
    CayleyConv2d,
    CayleyLinear,
    apply_frequency_weights,
    frequency_weights,
    rounding_allowance,
)
from tests.orthogonality_support import CHANNEL_CHANGES, assert_isometry_or_coisometry


@pytest.mark.parametrize(
    ("kernel_size", "height", "width"), [(1, 5, 5), (3, 6, 6), (3, 7, 5), (5, 6, 8)]
)
def test_square_layer_is_orthogonal_with_circular_padding(kernel_size, height, width):
    layer = CayleyConv2d(4, 4, kernel_size).double()
    randomise(layer, seed=2)
    maximise_output_norm(layer, (4, height, width))
    layer.eval()
    values = jacobian_singular_values(layer, (4, height, width))
    assert (values - 1).abs().max() < 1e-4


@pytest.mark.parametrize(("c_in", "c_out"), CHANNEL_CHANGES)
def test_non_square_channels_give_isometry_or_coisometry(c_in, c_out):
    assert_isometry_or_coisometry(CayleyConv2d(c_in, c_out, 3).double().eval(), size=6)


@pytest.mark.parametrize("shape", [(5, 9), (9, 5), (6, 6)])
def test_dense_layer_is_orthogonal_for_any_shape(shape):
    dense = CayleyLinear(*shape).double()
    randomise(dense)
    values = torch.linalg.svdvals(dense.export().weight)
    assert (values - 1).abs().max() < 1e-10


@pytest.mark.parametrize(("height", "width", "kernel_size"), [(6, 6, 3), (7, 5, 3), (5, 5, 5)])
def test_fourier_convention_reproduces_circular_conv2d(height, width, kernel_size):
    """Without the Cayley map the Fourier-domain product is exactly torch's circular conv."""
    kernel = torch.randn(4, 3, kernel_size, kernel_size, dtype=torch.float64)
    x = torch.randn(2, 3, height, width, dtype=torch.float64)
    padded = torch.nn.functional.pad(kernel, (0, width - kernel_size, 0, height - kernel_size))
    centred = torch.roll(padded, shifts=(-(kernel_size // 2),) * 2, dims=(2, 3))
    spectrum = torch.fft.rfft2(centred).conj().permute(2, 3, 0, 1).reshape(-1, 4, 3)
    expected = same_size_conv2d(x, kernel, None, "circular")
    torch.testing.assert_close(apply_frequency_weights(x, spectrum, None), expected)


@pytest.mark.parametrize("kernel_size", [(2, 2), (4, 3), (3, 2)])
def test_even_kernels_are_centred_as_torch_same_padding(kernel_size):
    """Tap (k - 1) // 2 is the centre, as in nn.Conv2d(padding="same"), not k // 2."""
    kernel = torch.randn(4, 3, *kernel_size, dtype=torch.float64)
    x = torch.randn(2, 3, 6, 5, dtype=torch.float64)
    spectrum = torch.fft.rfft2(cayley_module.wrapped_kernel(kernel, 6, 5)).conj()
    by_fft = torch.fft.irfft2(
        torch.einsum("oihw,nihw->nohw", spectrum, torch.fft.rfft2(x)), s=(6, 5)
    )
    torch_same = torch.nn.Conv2d(3, 4, kernel_size, padding="same", padding_mode="circular")
    torch_same = torch_same.double()
    with torch.no_grad():
        torch_same.weight.copy_(kernel)
        torch_same.bias.zero_()
    torch.testing.assert_close(by_fft, torch_same(x))


def test_alpha_is_a_parameter_from_construction_and_is_trained():
    layer = CayleyConv2d(3, 3, 3)
    optimiser = torch.optim.SGD(layer.parameters(), lr=0.1)  # built before any forward
    assert any(parameter is layer.alpha for parameter in layer.parameters())
    before = layer.alpha.item()
    layer(torch.randn(2, 3, 6, 6)).square().sum().backward()
    optimiser.step()
    assert layer.alpha.item() != before
    dense = CayleyLinear(4, 4)
    assert "alpha" in dict(dense.named_parameters())


def test_eval_mode_computes_the_transform_once_and_invalidates_on_change(monkeypatch):
    calls = []
    original = cayley_module.frequency_weights

    def counting(*args):
        calls.append(args[2:])
        return original(*args)

    monkeypatch.setattr(cayley_module, "frequency_weights", counting)
    layer = CayleyConv2d(3, 3, 3).double().eval()
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    first = layer(x)
    torch.testing.assert_close(layer(x), first)
    assert len(calls) == 1
    layer(torch.randn(1, 3, 8, 8, dtype=torch.float64))  # a new size: computed once more
    layer(torch.randn(1, 3, 8, 8, dtype=torch.float64))
    assert len(calls) == 2
    with torch.no_grad():
        layer.weight.mul_(-1.0)  # an in-place change (as an optimiser makes)
    changed = layer(x)
    assert len(calls) == 3
    layer.train()
    layer(x)
    layer.eval()
    layer(x)
    assert len(calls) == 5  # train() dropped the cache; training never uses it
    fresh = CayleyConv2d(3, 3, 3).double().eval()
    fresh.load_state_dict(layer.state_dict())
    torch.testing.assert_close(changed, fresh(x))
    assert not torch.allclose(changed, first)


def test_eval_cache_follows_load_state_dict():
    source = CayleyLinear(5, 5).double()
    randomise(source, seed=3)
    target = CayleyLinear(5, 5).double().eval()
    x = torch.randn(2, 5, dtype=torch.float64)
    target(x)
    target.load_state_dict(source.state_dict())
    torch.testing.assert_close(target(x), source.eval()(x))


def test_input_sizes_the_layer_cannot_handle_raise():
    layer = CayleyConv2d(3, 3, 5)
    with pytest.raises(ValueError, match="expected input"):
        layer(torch.randn(1, 2, 8, 8))
    with pytest.raises(ValueError, match="circular"):
        CayleyConv2d(3, 3, 3, padding_mode="zeros")
    with pytest.raises(ValueError, match="expected input"):
        layer.export()(torch.randn(3, 3, 3))


@pytest.mark.parametrize("size", [(2, 2), (1, 3), (2, 5), (6, 6)])
def test_wrapped_kernel_is_the_circular_convolution_even_below_the_kernel_size(size):
    weight = torch.randn(4, 3, 3, 3, dtype=torch.float64)
    x = torch.randn(2, 3, *size, dtype=torch.float64)
    spectrum = torch.fft.rfft2(cayley_module.wrapped_kernel(weight, *size)).conj()
    by_fft = torch.fft.irfft2(torch.einsum("oihw,nihw->nohw", spectrum, torch.fft.rfft2(x)), s=size)
    torch.testing.assert_close(by_fft, same_size_conv2d(x, weight, None, "circular"))


@pytest.mark.parametrize("size", [(2, 2), (4, 6), (1, 3)])
def test_inputs_smaller_than_the_kernel_are_handled_orthogonally(size):
    layer = CayleyConv2d(3, 3, 5).double()
    randomise(layer, seed=4)
    layer.eval()
    singular_values = jacobian_singular_values(layer, (3, *size))
    torch.testing.assert_close(singular_values, torch.ones_like(singular_values), atol=1e-8, rtol=0)


@pytest.mark.parametrize("size", [5, 8, 13, 16])
@pytest.mark.parametrize(("seed", "alpha_factor"), [(0, 1.0), (1, 10.0), (2, 100.0)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_rounding_allowance_covers_the_measured_defect(dtype, seed, alpha_factor, size):
    """Max over frequencies of ||Q(f)||_2 of the *computed* Q (in float64), large alpha included."""
    generator = torch.Generator().manual_seed(seed)
    layer = CayleyConv2d(6, 4, 3).to(dtype)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator))
        layer.alpha.mul_(alpha_factor)
        weights = frequency_weights(layer.weight, layer.alpha, size, size)
    norms = torch.linalg.matrix_norm(weights.to(torch.complex128), ord=2)
    assert norms.max().item() <= layer.lipschitz_bound()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_rounding_allowance_covers_the_measured_defect_of_a_dense_layer(dtype):
    dense = CayleyLinear(9, 5).to(dtype)
    with torch.no_grad():
        dense.alpha.mul_(50.0)
    measured = torch.linalg.matrix_norm(dense.export().weight.double(), 2).item()
    assert measured <= dense.lipschitz_bound()


def test_rounding_allowance_is_negligible_in_float64_and_grows_with_alpha():
    assert rounding_allowance(torch.float64, 64, 3.0) < 1e-9
    assert rounding_allowance(torch.float32, 64, 3.0) > rounding_allowance(torch.float64, 64, 3.0)
    assert rounding_allowance(torch.float64, 8, 10.0) > rounding_allowance(torch.float64, 8, 1.0)
