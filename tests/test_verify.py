"""The verification tools against closed-form answers."""

from __future__ import annotations

import torch

from aol.verify import exact_jacobian, jacobian_singular_values, power_iteration


def circular_conv_singular_values(weight: torch.Tensor, size: int) -> torch.Tensor:
    """Singular values of a circular convolution from its Fourier blocks.

    A circular convolution is block-diagonalised by the 2-D DFT: at each frequency
    it acts as the ``c_out x c_in`` matrix of the kernel's DFT (independent of any
    Jacobian code).
    """
    c_out, c_in, k, _ = weight.shape
    padded = torch.zeros(c_out, c_in, size, size, dtype=weight.dtype)
    padded[:, :, :k, :k] = weight
    # cross-correlation with a centred kernel: shift so the centre tap sits at index 0
    padded = torch.roll(padded, shifts=(-(k // 2), -(k // 2)), dims=(2, 3))
    blocks = torch.fft.fft2(padded).permute(2, 3, 0, 1)  # [size, size, c_out, c_in]
    return torch.linalg.svdvals(blocks).reshape(-1).sort(descending=True).values


def test_exact_jacobian_of_linear_layer_is_its_weight():
    layer = torch.nn.Linear(5, 3)
    jacobian = exact_jacobian(layer, torch.randn(1, 5))
    assert jacobian.dtype == torch.float64
    torch.testing.assert_close(jacobian, layer.weight.double())


def test_singular_values_of_circular_conv_match_fourier_blocks():
    conv = torch.nn.Conv2d(3, 4, 3, padding=1, padding_mode="circular", bias=False).double()
    expected = circular_conv_singular_values(conv.weight.detach(), 6)
    measured = jacobian_singular_values(conv, (3, 6, 6))
    torch.testing.assert_close(measured, expected[: measured.numel()], rtol=1e-10, atol=1e-10)


def test_power_iteration_converges_to_the_exact_norm_at_larger_size():
    conv = torch.nn.Conv2d(8, 8, 3, padding=1, padding_mode="circular", bias=False).double()
    exact = circular_conv_singular_values(conv.weight.detach(), 16)[0].item()
    result = power_iteration(conv, torch.randn(1, 8, 16, 16, dtype=torch.float64), tolerance=1e-8)
    assert result.converged
    assert result.estimate <= exact + 1e-9  # ||J v|| never exceeds the norm
    assert abs(result.estimate - exact) < 1e-4 * exact


def test_power_iteration_reports_non_convergence():
    layer = torch.nn.Linear(50, 50).double()
    result = power_iteration(layer, torch.randn(1, 50, dtype=torch.float64), max_iterations=2)
    assert result.iterations == 2 and not result.converged


def test_power_iteration_on_a_batch_finds_the_largest_block():
    """A ReLU net's Jacobian differs per point; on a batch the estimate is the max over points."""
    net = torch.nn.Sequential(
        torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 3)
    ).double()
    points = torch.randn(5, 4, dtype=torch.float64)
    per_point = [jacobian_singular_values(net, x=p[None])[0].item() for p in points]
    result = power_iteration(net, points, tolerance=1e-12, max_iterations=5000)
    assert abs(result.estimate - max(per_point)) < 1e-5
