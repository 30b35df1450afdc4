"""CPL (Meunier et al., ICML 2022) against its paper's formula, computed without the module:
h(x) = x - 2 / U^2 W relu(W^T x + b), with U >= ||W|| the Gram-iteration bound (matrices) or
the Schur bound max_i sum_j |W^T W|_ij (k x k kernels)."""

import numpy as np
import pytest
import torch

from aol.verify import jacobian_singular_values
from baselines.cpl import MATRIX_GRAM_ITERATIONS, CPLConv2d, CPLLinear
from tests.convolution_support import convolution_matrix
from tests.residual_support import gram_row_sums
from tests.test_sll import randomised


def gram_iteration_bound_squared(matrix: np.ndarray, iterations: int) -> float:
    """``(max row sum |(M^T M)^(2^(t-1))|)^(1/2^(t-1)) >= ||M||^2`` by repeated squaring,
    without the module's renormalisation (small float64 matrices do not overflow)."""
    gram = matrix.T @ matrix
    for _ in range(iterations - 1):
        gram = gram @ gram
    return np.abs(gram).sum(axis=1).max() ** (1 / 2 ** (iterations - 1))


def test_dense_layer_is_the_paper_formula_with_a_guaranteed_norm_bound():
    layer = randomised(CPLLinear(6, 6).double(), seed=0)
    w = layer.weight.detach().numpy().T  # the paper's W: h uses W^T x
    b = layer.bias.detach().numpy()
    norm_bound_squared = gram_iteration_bound_squared(w.T, MATRIX_GRAM_ITERATIONS)
    assert np.linalg.norm(w, 2) ** 2 <= norm_bound_squared <= 1.05 * np.linalg.norm(w, 2) ** 2
    x = np.random.default_rng(0).normal(size=(4, 6))
    expected = x - 2 / norm_bound_squared * np.maximum(x @ w + b, 0) @ w.T
    actual = layer(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("padding_mode", ["zeros", "circular"])
def test_convolution_is_the_paper_formula_with_the_explicit_matrix(padding_mode):
    size, channels = 4, 2
    layer = randomised(CPLConv2d(channels, channels, 3, padding_mode=padding_mode).double(), 1)
    kernel = layer.weight.detach().numpy()
    w_transpose = convolution_matrix(kernel, size, padding_mode)  # x -> W^T x
    norm_bound_squared = gram_row_sums(kernel).max()
    b = np.repeat(layer.bias.detach().numpy(), size * size)
    x = np.random.default_rng(1).normal(size=(3, channels * size * size))
    expected = x - 2 / norm_bound_squared * np.maximum(x @ w_transpose.T + b, 0) @ w_transpose
    images = torch.from_numpy(x).reshape(3, channels, size, size)
    actual = layer(images).detach().reshape(3, -1).numpy()
    np.testing.assert_allclose(actual, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("padding_mode", ["zeros", "circular"])
@pytest.mark.parametrize("size", [3, 9])
def test_the_normaliser_bounds_the_convolution_norm_at_every_size(padding_mode, size):
    """U^2 >= ||W||^2 at a small and a large input (the authors' power iteration at 32x32
    does not bound other sizes); the exact norm from the explicit matrix's SVD."""
    kernel = torch.randn(3, 3, 3, 3, generator=torch.Generator().manual_seed(2)).double()
    layer = CPLConv2d(3, 3, 3, padding_mode=padding_mode).double()
    with torch.no_grad():
        layer.weight.copy_(kernel)
    step = layer.step_sizes()[0].item()  # 2 / U^2
    exact = np.linalg.norm(convolution_matrix(kernel.numpy(), size, padding_mode), 2)
    assert step * exact**2 <= 2 + 1e-12


@pytest.mark.parametrize("padding_mode", ["zeros", "circular"])
def test_one_lipschitz_with_every_unit_active(padding_mode):
    layer = randomised(CPLConv2d(3, 3, 3, padding_mode=padding_mode).double(), seed=3)
    with torch.no_grad():
        layer.bias.fill_(1e3)
    bound = layer.lipschitz_bound()
    assert 1.0 <= bound < 1.0 + 1e-8
    assert jacobian_singular_values(layer, (3, 5, 5))[0].item() <= bound + 1e-9


def test_the_bound_follows_the_step_the_forward_uses(monkeypatch):
    """A step of 3 / U^2 (1.5x too large) is stated as bound 2, not 1."""
    layer = randomised(CPLLinear(5, 5).double(), seed=4)
    step_sizes = CPLLinear.step_sizes
    monkeypatch.setattr(CPLLinear, "step_sizes", lambda self: 1.5 * step_sizes(self))
    assert layer.lipschitz_bound() == pytest.approx(2.0, rel=1e-8)


@pytest.mark.parametrize(
    "build", [lambda: CPLLinear(256, 256), lambda: CPLConv2d(64, 64, 1)], ids=["dense", "1x1"]
)
def test_matrix_steps_are_the_papers_at_initialisation(build):
    """For a matrix the step is the paper's 2 / ||W||^2 within 5%, never larger: the Schur
    bound alone (the earlier normaliser) made it ~3.5x smaller on these Xavier-initialised
    layers, which is what held CPL back on aol-digits."""
    torch.manual_seed(0)
    layer = build().double()
    matrix = layer.weight.detach().reshape(layer.weight.shape[0], -1)
    paper_step = 2 / torch.linalg.matrix_norm(matrix, 2).item() ** 2
    assert 0.95 * paper_step <= layer.step_sizes()[0].item() <= paper_step


def test_export_is_two_plain_layers_computing_the_same():
    layer = randomised(CPLLinear(7, 7).double(), seed=5)
    exported = layer.export()
    assert type(exported.first) is torch.nn.Linear and type(exported.second) is torch.nn.Linear
    x = torch.randn(3, 7, dtype=torch.float64)
    torch.testing.assert_close(exported(x), layer(x), rtol=1e-12, atol=1e-12)
