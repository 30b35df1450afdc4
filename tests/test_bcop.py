"""BCOP (Li et al., NeurIPS 2019): the kernel is the paper's block-convolution product, the
circular layer is orthogonal, and the bound comes from the kernel actually used."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aol.verify import jacobian_singular_values
from baselines.bcop import BCOPConv2d, BCOPLinear, bjorck
from baselines.lot import LOTConv2d, LOTLinear
from tests.orthogonality_support import CHANNEL_CHANGES, assert_isometry_or_coisometry


def polar(matrix: np.ndarray) -> np.ndarray:
    """The exact orthogonal polar factor ``U V^T`` (what Björck's iteration converges to)."""
    left, _, right = np.linalg.svd(matrix, full_matrices=False)
    return left @ right


def randomised(layer: torch.nn.Module, seed: int) -> torch.nn.Module:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in layer.parameters():
            parameter.copy_(
                torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype)
            )
    return layer


def paper_kernel(layer: BCOPConv2d) -> np.ndarray:
    """BCOP paper Sec. 3: ``H`` then the 2x2 blocks ``[[P Q, P (I - Q)], [(I - P) Q,
    (I - P)(I - Q)]]`` multiplied as matrix-valued tap sequences, with exact polar factors."""
    head = polar(layer.weight.detach().numpy())
    projections = [polar(q) @ polar(q).T for q in layer.projectors.detach().numpy()]
    identity = np.eye(head.shape[1])
    kernel = head[:, :, None, None]
    for p, q in zip(projections[0::2], projections[1::2], strict=True):
        block = np.empty((*p.shape, 2, 2))
        for row, vertical in enumerate((p, identity - p)):
            for column, horizontal in enumerate((q, identity - q)):
                block[:, :, row, column] = vertical @ horizontal
        a, b = kernel.shape[2:]
        product = np.zeros((*kernel.shape[:2], a + 1, b + 1))
        for i in range(a):
            for j in range(b):
                for r in range(2):
                    for c in range(2):
                        product[:, :, i + r, j + c] += kernel[:, :, i, j] @ block[:, :, r, c]
        kernel = product
    return kernel


@pytest.mark.parametrize("kernel_size", [3, 5])
def test_kernel_is_the_papers_block_product(kernel_size):
    layer = randomised(BCOPConv2d(4, 4, kernel_size, iterations=60).double(), seed=0)
    expected = paper_kernel(layer)
    np.testing.assert_allclose(layer.weight_transform().detach().numpy(), expected, atol=1e-9)


@pytest.mark.parametrize(("c_in", "c_out", "kernel_size"), [(4, 4, 1), (4, 4, 3), (3, 3, 5)])
def test_circular_layer_is_orthogonal(c_in, c_out, kernel_size):
    layer = randomised(BCOPConv2d(c_in, c_out, kernel_size).double(), seed=1)
    singular_values = jacobian_singular_values(layer.eval(), (c_in, 6, 6))
    assert torch.allclose(singular_values, torch.ones_like(singular_values), atol=1e-4)


@pytest.mark.parametrize(("c_in", "c_out"), CHANNEL_CHANGES)
def test_channel_changes_are_semi_orthogonal(c_in, c_out):
    layer = randomised(BCOPConv2d(c_in, c_out, 3).double(), seed=2).eval()
    singular_values = assert_isometry_or_coisometry(layer, size=5)
    assert singular_values[0] <= layer.lipschitz_bound()


def test_one_by_one_kernel_is_an_orthogonal_matrix_not_signs():
    """A 1x1 kernel is one orthogonal matrix (not each entry orthonormalised to +-1)."""
    layer = randomised(BCOPConv2d(5, 5, 1).double(), seed=3)
    matrix = layer.weight_transform()[:, :, 0, 0].detach()
    torch.testing.assert_close(matrix.T @ matrix, torch.eye(5, dtype=torch.float64))
    assert (matrix.abs() < 0.99).any()


def circular_norm(kernel: torch.Tensor, size: int) -> float:
    """Exact norm of the circular convolution on ``size x size``: largest per-frequency norm."""
    spectrum = torch.fft.fft2(kernel.double(), s=(size, size)).permute(2, 3, 0, 1)
    return torch.linalg.matrix_norm(spectrum, ord=2).max().item()


def test_float32_bound_is_that_of_the_rounded_kernel():
    """In float32 the Björck residual makes the kernel's norm differ from 1; the bound is above
    the exact norm of the kernel used, at several sizes, and still close to 1."""
    layer = randomised(BCOPConv2d(16, 16, 3), seed=4).eval()
    kernel = layer.weight_transform().detach()
    bound = layer.lipschitz_bound()
    exact = max(circular_norm(kernel, size) for size in (3, 4, 7, 16))
    assert exact <= bound < 1 + 1e-4


def test_few_iterations_stay_contractive_and_bounded():
    """One Björck step is far from orthogonal but contractive; the bound holds for both
    paddings and the grid bound ``frequency_norm_bound`` takes over when the Schur test is loose."""
    layer = randomised(BCOPConv2d(4, 4, 3, iterations=1).double(), seed=5).eval()
    bound = layer.lipschitz_bound()
    for padding_mode in ("circular", "zeros"):
        layer.padding_mode = padding_mode
        sigma_max = jacobian_singular_values(layer, (4, 7, 5))[0].item()
        assert sigma_max <= min(bound, 1.0) + 1e-12
    assert bound <= 1.0099  # the grid bound is at most 1.0098 times a norm <= 1


def test_dense_layer_is_the_polar_factor():
    layer = randomised(BCOPLinear(7, 4, iterations=60).double(), seed=6)
    expected = polar(layer.weight.detach().numpy())
    np.testing.assert_allclose(layer.weight_transform().detach().numpy(), expected, atol=1e-9)
    assert abs(layer.lipschitz_bound() - 1) < 1e-8


def test_bjorck_keeps_singular_values_at_most_one():
    matrices = torch.randn(3, 9, 5, dtype=torch.float64) * 100
    for iterations in (1, 2, 5):
        assert torch.linalg.matrix_norm(bjorck(matrices, iterations), ord=2).max() <= 1 + 1e-12


@pytest.mark.parametrize(
    ("build", "default"),
    [
        (lambda **option: BCOPConv2d(4, 4, 3, **option), 20),
        (lambda **option: BCOPLinear(5, 4, **option), 3),
        (lambda **option: LOTConv2d(4, 4, 3, **option), 10),
        (lambda **option: LOTLinear(5, 4, **option), 3),
    ],
)
def test_iterations_option_has_a_default_per_layer_and_refuses_zero(build, default):
    """BCOP and LOT share ``aol.nn.contract.IterationsOption``: the paper's count by default
    (BCOP Sec. 4: 20; LOT Sec. 4: 10), 3 for the dense layers, and one message below 1."""
    assert build().iterations == default
    assert build(iterations=7).iterations == 7
    assert "iterations=7" in repr(build(iterations=7))
    with pytest.raises(ValueError, match="iterations must be >= 1, got 0"):
        build(iterations=0)
