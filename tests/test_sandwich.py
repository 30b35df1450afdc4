"""Sandwich layers against Wang & Manchester (ICML 2023, arXiv 2301.11526, Sec. 3):
``h(x) = sqrt(2) A^T relu(sqrt(2) B x + b)`` with ``[A B]`` the Cayley transform of the scaled
weight, computed here densely (numpy) and, for the convolution, from the dense matrix of the
circular convolution (built by ``conv2d`` on basis vectors) instead of the Fourier domain."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from aol.verify import exact_jacobian, jacobian_singular_values
from baselines.sandwich import SANDWICH, SandwichConv2d, SandwichLinear


def dense_cayley_rows(scaled: np.ndarray) -> np.ndarray:
    """Orthonormal-rows Cayley transform of a wide matrix (Trockman & Kolter, ICLR 2021,
    Sec. 3): ``S^T = [U; V]``, ``Z = U - U^T + V^T V``,
    ``Q^T = [(I + Z)^-1 (I - Z); -2 V (I + Z)^-1]``."""
    tall = scaled.T
    rows = tall.shape[1]
    top, rest = tall[:rows], tall[rows:]
    skew = top - top.T + rest.T @ rest
    identity = np.eye(rows)
    inverse = np.linalg.inv(identity + skew)
    return np.concatenate([inverse @ (identity - skew), -2 * rest @ inverse]).T


def reference_sandwich(x: np.ndarray, q: np.ndarray, hidden: int, bias: np.ndarray):
    a_part, b_part = q[:, :hidden], q[:, hidden:]
    return np.sqrt(2) * a_part.T @ np.maximum(np.sqrt(2) * b_part @ x + bias, 0)


def test_dense_layer_is_the_sandwich_of_its_cayley_matrix():
    torch.manual_seed(0)
    layer = SandwichLinear(5, 3).double()
    torch.nn.init.normal_(layer.bias)
    weight = layer.weight.detach().numpy()
    q = dense_cayley_rows(layer.alpha.item() * weight / np.linalg.norm(weight))
    np.testing.assert_allclose(q @ q.T, np.eye(3), atol=1e-12)
    x = torch.randn(4, 5, dtype=torch.float64)
    expected = reference_sandwich(x.numpy().T, q, 3, layer.bias.detach().numpy()[:, None]).T
    np.testing.assert_allclose(layer(x).detach().numpy(), expected, atol=1e-12)
    assert 1 <= layer.lipschitz_bound() < 1 + 1e-8


def convolution_matrix(kernel: torch.Tensor, size: int) -> torch.Tensor:
    """Dense matrix of the circular 'same' cross-correlation with ``kernel`` on ``size^2``."""
    pad = kernel.shape[-1] // 2

    def convolve(x):
        return F.conv2d(F.pad(x, (pad, pad, pad, pad), mode="circular"), kernel)

    return exact_jacobian(convolve, torch.zeros(1, kernel.shape[1], size, size))


@pytest.mark.parametrize(("c_in", "c_out", "kernel_size"), [(2, 3, 3), (4, 2, 3), (3, 3, 1)])
def test_conv_is_the_sandwich_of_the_cayley_transformed_convolution_matrix(
    c_in, c_out, kernel_size
):
    torch.manual_seed(0)
    size = 4
    layer = SandwichConv2d(c_in, c_out, kernel_size).double()
    torch.nn.init.normal_(layer.bias)
    kernel = layer.weight.detach()
    scaled = layer.alpha.item() / kernel.norm().item() * convolution_matrix(kernel, size)
    q = dense_cayley_rows(scaled.numpy())
    np.testing.assert_allclose(q @ q.T, np.eye(c_out * size**2), atol=1e-12)
    bias = np.repeat(layer.bias.detach().numpy(), size**2)[:, None]
    x = torch.randn(3, c_in, size, size, dtype=torch.float64)
    expected = reference_sandwich(x.reshape(3, -1).numpy().T, q, c_out * size**2, bias).T
    actual = layer(x).detach().reshape(3, -1).numpy()
    np.testing.assert_allclose(actual, expected, atol=1e-10)


def test_bound_holds_at_sizes_other_than_the_prepared_one():
    torch.manual_seed(0)
    layer = SandwichConv2d(3, 4, 3).double()
    for parameter in layer.parameters():
        torch.nn.init.normal_(parameter)
    layer.train(False)
    layer(torch.randn(2, 3, 6, 6, dtype=torch.float64))  # weights prepared (cached) for 6x6
    bound = layer.lipschitz_bound()
    assert 1 <= bound < 1 + 1e-6
    for height, width in [(5, 5), (7, 3), (2, 2), (9, 8)]:
        x = torch.randn(1, 3, height, width, dtype=torch.float64)  # a random point: nonlinear
        sigma_max = jacobian_singular_values(layer, x=x)[0].item()
        assert sigma_max <= bound, (height, width)


def test_family_carries_its_activation_inside_the_layer():
    assert SANDWICH.activation().__class__ is torch.nn.Identity
    layer = SandwichLinear(4, 4).double()
    with torch.no_grad():
        layer.bias.fill_(-100.0)  # every inner pre-activation negative: the ReLU gives 0
    torch.testing.assert_close(
        layer(torch.randn(3, 4, dtype=torch.float64)).abs().max().item(), 0.0
    )


def test_the_conv_bound_is_computed_once_per_weights(monkeypatch):
    """Certification asks for each layer's bound twice (network bound, Lipschitz audit); the
    frequency-grid SVDs run once, and again after any parameter changes."""
    import baselines.cayley

    calls = []
    uncached = baselines.cayley.cayley_lipschitz_bound

    def counting(weight, alpha):
        calls.append(1)
        return uncached(weight, alpha)

    monkeypatch.setattr(baselines.cayley, "cayley_lipschitz_bound", counting)
    layer = SandwichConv2d(3, 3, 3).double().eval()
    first = layer.lipschitz_bound()
    assert layer.lipschitz_bound() == first and len(calls) == 1
    with torch.no_grad():
        layer.alpha.mul_(4)  # a larger scale: a larger rounding allowance
    assert layer.lipschitz_bound() == uncached(layer.weight, layer.alpha) ** 2 > first
    assert len(calls) == 2
