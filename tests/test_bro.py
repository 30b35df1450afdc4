"""BRO layers against the block reflector formula of Lai et al. (ICML 2025, arXiv 2505.15174),
computed here without the Fourier domain: ``W = I - 2 V (V^T V + eps I)^-1 V^T`` with ``V``
the dense matrix of the circular convolution, built by ``conv2d`` on basis vectors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from aol.verify import exact_jacobian, jacobian_singular_values
from baselines.bro import EPSILON_RATIO, BROConv2d, BROLinear, frequency_factors


def reference_reflector(matrix: torch.Tensor, eps: float) -> torch.Tensor:
    """``I - 2 V (V^T V + eps I)^-1 V^T`` by a plain float64 inverse."""
    gram = matrix.T @ matrix + eps * torch.eye(matrix.shape[1], dtype=torch.float64)
    return torch.eye(matrix.shape[0], dtype=torch.float64) - 2 * matrix @ torch.linalg.inv(gram) @ (
        matrix.T
    )


def paper_eps(kernel: torch.Tensor) -> float:
    """The module docstring's ``eps = EPSILON_RATIO ||V||_F^2 / r``."""
    return EPSILON_RATIO * kernel.square().sum().item() / kernel.shape[1]


def circular_convolution_matrix(kernel: torch.Tensor, size: int) -> torch.Tensor:
    """Dense matrix of the circular 'same' cross-correlation with ``kernel`` on ``size^2``."""
    pad = kernel.shape[-1] // 2

    def convolve(x):
        return F.conv2d(F.pad(x, (pad, pad, pad, pad), mode="circular"), kernel)

    return exact_jacobian(convolve, torch.zeros(1, kernel.shape[1], size, size))


def interior(channels: int, size: int, pad: int) -> torch.Tensor:
    """Flat indices of the ``channels x size x size`` interior of a padded canvas."""
    canvas = size + 2 * pad
    grid = torch.arange(channels * canvas * canvas).reshape(channels, canvas, canvas)
    return grid[:, pad : pad + size, pad : pad + size].reshape(-1)


@pytest.mark.parametrize(
    ("c_in", "c_out", "padding_mode", "size"),
    [(4, 4, "circular", 5), (3, 5, "circular", 4), (5, 2, "zeros", 4), (4, 4, "zeros", 3)],
)
def test_conv_is_the_block_reflector_of_its_convolution_matrix(c_in, c_out, padding_mode, size):
    torch.manual_seed(0)
    layer = BROConv2d(c_in, c_out, 3, padding_mode=padding_mode, bias=False).double()
    kernel = layer.weight.detach()
    pad = 1 if padding_mode == "zeros" else 0
    canvas = size + 2 * pad
    reflector = reference_reflector(circular_convolution_matrix(kernel, canvas), paper_eps(kernel))
    rows, columns = interior(c_out, size, pad), interior(c_in, size, pad)
    expected = reflector[rows][:, columns]
    actual = exact_jacobian(layer, torch.zeros(1, c_in, size, size, dtype=torch.float64))
    torch.testing.assert_close(actual, expected, rtol=0, atol=1e-10)


def test_dense_matrix_is_the_symmetric_orthogonal_block_reflector():
    torch.manual_seed(0)
    layer = BROLinear(8, 8).double()
    matrix = layer.weight_transform().detach()
    expected = reference_reflector(layer.weight.detach(), paper_eps(layer.weight.detach()))
    torch.testing.assert_close(matrix, expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(matrix, matrix.T, rtol=0, atol=1e-12)
    singular_values = torch.linalg.svdvals(matrix)
    assert (singular_values - 1).abs().max() < 1e-4
    eigenvalues = torch.linalg.eigvalsh(matrix)  # rank 4 of 8: four -1, four +1
    assert (eigenvalues[:4] + 1).abs().max() < 1e-4 and (eigenvalues[4:] - 1).abs().max() < 1e-12


def test_rectangular_dense_layer_is_a_block_of_the_reflector():
    torch.manual_seed(0)
    layer = BROLinear(3, 7).double()
    expected = reference_reflector(layer.weight.detach(), paper_eps(layer.weight.detach()))
    torch.testing.assert_close(
        layer.weight_transform().detach(), expected[:7, :3], rtol=0, atol=1e-12
    )


@pytest.mark.parametrize(("channels", "kernel_size", "size"), [(4, 3, 6), (6, 1, 4), (2, 5, 5)])
def test_square_circular_conv_is_orthogonal(channels, kernel_size, size):
    torch.manual_seed(0)
    layer = BROConv2d(channels, channels, kernel_size, padding_mode="circular").double()
    singular_values = jacobian_singular_values(layer, (channels, size, size))
    assert (singular_values - 1).abs().max() < 1e-4


@pytest.mark.parametrize("padding_mode", ["zeros", "circular"])
def test_bound_holds_at_sizes_other_than_the_prepared_one(padding_mode):
    torch.manual_seed(0)
    layer = BROConv2d(4, 6, 3, padding_mode=padding_mode).double()
    torch.nn.init.normal_(layer.weight)
    layer.train(False)
    layer(torch.randn(2, 4, 6, 6, dtype=torch.float64))  # factors prepared (cached) for 6x6
    bound = layer.lipschitz_bound()
    assert 1 <= bound < 1 + 1e-7
    for height, width in [(5, 5), (7, 9), (2, 3), (11, 4)]:
        sigma_max = jacobian_singular_values(layer, (4, height, width))[0].item()
        assert sigma_max <= bound, (height, width)


def test_float32_factors_stay_under_the_float32_bound_at_many_sizes():
    """The float32 bound covers rounding the float64 factors ``Y`` to complex64:
    ``||I - 2 Y Y^H|| = max(1, 2 ||Y||^2 - 1)`` measured in float64 at several sizes."""
    torch.manual_seed(0)
    layer = BROConv2d(32, 32, 3)
    bound = layer.lipschitz_bound()
    assert 1 < bound < 1 + 1e-5
    assert layer.double().lipschitz_bound() < 1 + 1e-7
    weight = layer.weight.detach().float()
    for height, width in [(5, 5), (8, 8), (13, 6), (34, 34)]:
        factors = frequency_factors(weight, height, width).to(torch.complex128)
        largest = torch.linalg.matrix_norm(factors, ord=2).max().item()
        assert max(1.0, 2 * largest**2 - 1) <= bound, (height, width)


def test_rank_ratio_sets_the_columns_of_v_and_is_checked():
    assert BROConv2d(8, 8, 3, rank_ratio=0.25).weight.shape == (8, 2, 3, 3)
    assert BROLinear(3, 10).weight.shape == (10, 5)
    with pytest.raises(ValueError, match="rank_ratio"):
        BROConv2d(8, 8, 3, rank_ratio=0)
