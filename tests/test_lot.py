"""LOT (Xu, Li & Li, NeurIPS 2022): the layer is the orthogonal polar factor of the circular
convolution, orthogonal with circular padding, and its bound is checked on every canvas."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aol.verify import jacobian_singular_values
from baselines import lot
from baselines.lot import LOTConv2d, LOTLinear
from tests.convolution_support import convolution_matrix


def near_identity(layer: torch.nn.Module, seed: int, scale: float = 0.3) -> torch.nn.Module:
    """Identity (Dirac) weights plus noise: well-conditioned frequency matrices."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        noise = torch.randn(layer.weight.shape, generator=generator, dtype=layer.weight.dtype)
        layer.weight.add_(scale * noise)
        if layer.bias is not None:
            layer.bias.normal_(generator=generator)
    return layer


def test_layer_is_the_polar_factor_of_the_circular_convolution():
    """Paper Sec. 3: ``W = (V V^T)^(-1/2) V`` for the whole circular operator ``V``; its polar
    factor ``U R^T`` (SVD) is the layer's Jacobian, up to the eps = 1e-4 regulariser."""
    size = 5
    layer = near_identity(LOTConv2d(3, 3, 3, iterations=30).double(), seed=0).eval()
    operator = convolution_matrix(layer.weight.detach().numpy(), size, "circular")
    left, _, right = np.linalg.svd(operator)
    expected = left @ right
    x = torch.zeros(1, 3, size, size, dtype=torch.float64, requires_grad=True)
    jacobian = torch.autograd.functional.jacobian(lambda v: layer(v) - layer.bias[:, None, None], x)
    np.testing.assert_allclose(jacobian.reshape(expected.shape).numpy(), expected, atol=1e-3)


@pytest.mark.parametrize(("kernel_size", "size"), [(1, 6), (3, 6), (3, 5), (5, 4)])
def test_circular_layer_is_orthogonal(kernel_size, size):
    """The regulariser maps each singular value ``s`` of ``V^(f)`` to at most
    ``s / sqrt(s^2 + 1e-4)``, and Newton-Schulz converges slowly for small ``s / max s``: with
    well-conditioned frequency matrices of norm ~10 the layer is orthogonal to 1e-4."""
    layer = LOTConv2d(4, 4, kernel_size).double()
    layer = near_identity(layer, seed=1, scale=0.2 / kernel_size).eval()  # ||noise^|| < ~0.5
    with torch.no_grad():
        layer.weight.mul_(10.0)
    singular_values = jacobian_singular_values(layer, (4, size, size))
    assert torch.allclose(singular_values, torch.ones_like(singular_values), atol=1e-4)


def test_zero_padding_is_the_references_pad_convolve_crop():
    """LOT's zero padding: pad k // 2, circular LOT convolution on that canvas, crop."""
    layer = near_identity(LOTConv2d(2, 3, 3, padding_mode="zeros").double(), seed=2).eval()
    circular = LOTConv2d(2, 3, 3, padding_mode="circular").double().eval()
    circular.load_state_dict(layer.state_dict())
    x = torch.randn(2, 2, 4, 6, dtype=torch.float64)
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
    torch.testing.assert_close(layer(x), circular(padded)[:, :, 1:-1, 1:-1])
    assert jacobian_singular_values(layer, (2, 4, 6))[0] <= layer.lipschitz_bound()


def test_bound_is_checked_on_every_new_canvas(monkeypatch):
    """The stated bound is the same for every size, and matrices above it are refused."""
    layer = near_identity(LOTConv2d(4, 4, 3), seed=3).eval()
    bound = layer.lipschitz_bound()
    assert 1 < bound < 1 + 1e-6
    for size in (3, 4, 7):
        weights = layer.frequency_weights(size, size).to(torch.complex128)
        assert torch.linalg.matrix_norm(weights, ord=2).max() <= bound
    monkeypatch.setattr(lot, "conv_lipschitz_bound", lambda weight: 0.999)
    with pytest.raises(RuntimeError, match="above the stated bound"):
        layer(torch.randn(1, 4, 9, 9))


def test_training_and_eval_compute_the_same_function():
    layer = near_identity(LOTConv2d(3, 5, 3), seed=4)
    x = torch.randn(2, 3, 6, 6)
    training_output = layer(x)
    torch.testing.assert_close(layer.eval()(x), training_output, atol=1e-5, rtol=1e-5)


def test_dense_layer_is_the_polar_factor():
    layer = LOTLinear(6, 4, iterations=40).double()
    with torch.no_grad():
        layer.weight.mul_(10.0)  # singular values >> sqrt(eps): the regulariser is negligible
    left, _, right = np.linalg.svd(layer.weight.detach().numpy(), full_matrices=False)
    np.testing.assert_allclose(layer.weight_transform().detach().numpy(), left @ right, atol=1e-3)
    assert layer.lipschitz_bound() <= 1 + 1e-8


def test_exported_layer_stays_frozen_when_its_parent_trains():
    """A parent's .train() must not switch the exported layer back to the training path."""
    torch.manual_seed(0)
    layer = LOTConv2d(3, 3, 3)
    exported = torch.nn.Sequential(layer.export())
    x = torch.randn(2, 3, 6, 6)
    exported.eval()
    with torch.no_grad():
        frozen = exported(x)
    exported.train()
    assert exported.training and not exported[0].source.training
    with torch.no_grad():
        assert torch.equal(exported(x), frozen)
