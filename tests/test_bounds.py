"""The norm bounds of ``aol.nn.bounds`` against exact Jacobians and exact circular spectra."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch

import aol.verify
from aol.nn.bounds import exponential_tail, frequency_norm_bound, gram_row_sum_bound
from aol.nn.layers import same_size_conv2d
from aol.verify import jacobian_singular_values


def exact_norm(kernel, padding_mode, size):
    c_in = kernel.shape[1]
    return jacobian_singular_values(
        lambda x: same_size_conv2d(x, kernel, None, padding_mode), (c_in, size, size)
    )[0].item()


def circular_norm_on_grid(kernel, size):
    """Largest singular value of the circular conv on ``size x size`` (Sedghi et al. 2019)."""
    spectrum = torch.fft.fft2(kernel, s=(size, size)).permute(2, 3, 0, 1)
    return torch.linalg.matrix_norm(spectrum, ord=2).max().item()


def seeded_kernel(channels, kernel_size):
    generator = torch.Generator().manual_seed(kernel_size)
    kernel = torch.randn(*channels, kernel_size, kernel_size, generator=generator)
    return kernel.double()


@pytest.mark.parametrize("iterations", [1, 2, 3])
@pytest.mark.parametrize("kernel_size", [1, 3, 5])
@pytest.mark.parametrize("channels", [(3, 5), (5, 3)])
def test_gram_row_sum_bound_is_not_far_below_the_frequency_bound(channels, kernel_size, iterations):
    kernel = seeded_kernel(channels, kernel_size)
    tight = frequency_norm_bound(kernel)
    assert gram_row_sum_bound(kernel, iterations).item() >= tight / 1.0098 - 1e-12


@pytest.mark.parametrize("padding_mode", ["zeros", "circular"])
@pytest.mark.parametrize("size", [5, 6, 7])
@pytest.mark.parametrize("kernel_size", [1, 3, 5])
@pytest.mark.parametrize("channels", [(3, 5), (5, 3)])
def test_bounds_hold_for_both_paddings_and_several_sizes(channels, kernel_size, size, padding_mode):
    kernel = seeded_kernel(channels, kernel_size)
    norm = exact_norm(kernel, padding_mode, size)
    assert norm <= frequency_norm_bound(kernel)
    assert norm <= gram_row_sum_bound(kernel).item() + 1e-12


@pytest.mark.parametrize("kernel_size", [3, 5])
def test_frequency_bound_is_within_two_percent_of_the_supremum(kernel_size):
    kernel = torch.randn(4, 4, kernel_size, kernel_size, dtype=torch.float64)
    on_fine_grid = circular_norm_on_grid(kernel, 256)  # a lower bound of the supremum
    bound = frequency_norm_bound(kernel)
    assert on_fine_grid <= bound <= 1.02 * on_fine_grid


def test_gram_iterations_tighten_the_row_sum_bound():
    kernel = torch.randn(8, 8, 3, 3, dtype=torch.float64)
    bounds = [gram_row_sum_bound(kernel, t).item() for t in (1, 2, 3)]
    assert bounds[0] > bounds[1] > bounds[2] >= circular_norm_on_grid(kernel, 128)


def test_gram_row_sum_bound_of_a_matrix_and_its_gradient():
    matrix = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    bound = gram_row_sum_bound(matrix)
    assert bound.item() >= torch.linalg.matrix_norm(matrix.detach(), 2).item()
    bound.backward()
    assert torch.isfinite(matrix.grad).all() and matrix.grad.abs().sum() > 0


@pytest.mark.parametrize(("rho", "terms"), [(1.0, 5), (1.0, 12), (0.3, 12), (2.0, 12), (0.0, 3)])
def test_exponential_tail_matches_exact_rational_sum(rho, terms):
    exact_rho = Fraction(rho)
    exact = sum(
        (exact_rho**index / math.factorial(index) for index in range(terms + 1, terms + 60)),
        Fraction(0),
    )
    tail = exponential_tail(rho, terms)
    assert tail >= float(exact)
    assert tail == pytest.approx(float(exact), rel=1e-11, abs=1e-300)


def test_exponential_tail_equals_exp_minus_partial_sum_when_that_is_accurate():
    partial = sum(1.0 / math.factorial(index) for index in range(3))
    assert exponential_tail(1.0, 2) == pytest.approx(math.e - partial, rel=1e-12)


@pytest.mark.parametrize("kernel_size", [1, 3])
def test_gram_kernel_is_the_gram_matrix_of_the_convolution(kernel_size):
    """Entries of ``A^T A`` (explicit Jacobian, an interior pixel) equal the Gram kernel's."""
    from aol.nn.bounds import correlation_gram_kernel

    kernel = torch.randn(3, 2, kernel_size, kernel_size, dtype=torch.float64)
    size = 4 * kernel_size + 1
    jacobian = aol.verify.exact_jacobian(
        lambda x: same_size_conv2d(x, kernel, None, "circular"),
        torch.zeros(1, 2, size, size, dtype=torch.float64),
    )
    gram = (jacobian.T @ jacobian).reshape(2, size, size, 2, size, size)
    centre = size // 2
    reach = kernel_size - 1
    expected = correlation_gram_kernel(kernel)
    window = gram[
        :,
        centre,
        centre,
        :,
        centre - reach : centre + reach + 1,
        centre - reach : centre + reach + 1,
    ]
    torch.testing.assert_close(window, expected)
