"""SLL (Araujo et al., ICLR 2023) against its paper's formula, computed without the module:
h(x) = x - 2 W T^-1 relu(W^T x + b), T = diag(t), t_i = sum_j |W^T W|_ij q_j / q_i."""

import numpy as np
import pytest
import torch

from aol.verify import jacobian_singular_values
from baselines.sll import SLLConv2d, SLLLinear
from tests.convolution_support import convolution_matrix
from tests.residual_support import gram_row_sums


def randomised(layer, seed):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in layer.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator, dtype=torch.float64))
    return layer.eval()


def test_dense_layer_is_the_paper_formula():
    layer = randomised(SLLLinear(6, 6).double(), seed=0)
    w = layer.weight.detach().numpy().T  # the paper's W: h uses W^T x
    b, q = layer.bias.detach().numpy(), np.exp(layer.log_q.detach().numpy())
    t = (np.abs(w.T @ w) * q[None, :]).sum(axis=1) / q
    x = np.random.default_rng(0).normal(size=(4, 6))
    expected = x - 2 * (np.maximum(x @ w + b, 0) / t) @ w.T
    actual = layer(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("padding_mode", ["zeros", "circular"])
@pytest.mark.parametrize("kernel_size", [1, 3])
def test_convolution_is_the_paper_formula_with_the_explicit_matrix(padding_mode, kernel_size):
    size, channels = 4, 2
    layer = randomised(SLLConv2d(channels, channels, kernel_size, padding_mode=padding_mode), 1)
    layer = layer.double()
    kernel = layer.weight.detach().numpy()
    w_transpose = convolution_matrix(kernel, size, padding_mode)  # x -> W^T x
    q = np.exp(layer.log_q.detach().numpy())
    t = np.repeat(gram_row_sums(kernel, q), size * size)  # T: one t_i per channel and pixel
    b = np.repeat(layer.bias.detach().numpy(), size * size)
    x = np.random.default_rng(1).normal(size=(3, channels * size * size))
    expected = x - 2 * (np.maximum(x @ w_transpose.T + b, 0) / t) @ w_transpose
    images = torch.from_numpy(x).reshape(3, channels, size, size)
    actual = layer(images).detach().reshape(3, -1).numpy()
    np.testing.assert_allclose(actual, expected, rtol=1e-10, atol=1e-10)
    # the SDP condition of the paper: T - W^T W >= 0 (here with the padded operator)
    gram = w_transpose @ w_transpose.T
    assert np.linalg.eigvalsh(np.diag(t) - gram).min() >= -1e-10


@pytest.mark.parametrize("padding_mode", ["zeros", "circular"])
@pytest.mark.parametrize("size", [2, 3, 7])
def test_one_lipschitz_at_every_input_size_with_every_unit_active(padding_mode, size):
    """With a large bias every ReLU is active: J = I - 2 W T^-1 W^T, the extreme case."""
    layer = randomised(SLLConv2d(3, 3, 3, padding_mode=padding_mode).double(), seed=2)
    with torch.no_grad():
        layer.bias.fill_(1e3)
    bound = layer.lipschitz_bound()
    assert 1.0 <= bound < 1.0 + 1e-8
    largest = jacobian_singular_values(layer, (3, size, size))[0].item()
    assert largest <= bound + 1e-9


def test_the_bound_follows_the_step_sizes_the_forward_uses(monkeypatch):
    """Steps 1.5x too large: the bound max(1, 2 rho - 1) is 2, and the exact Jacobian with
    every unit active exceeds 1, so a layer that skipped T would not state 1."""
    layer = randomised(SLLLinear(5, 5).double(), seed=3)
    with torch.no_grad():
        layer.bias.fill_(1e3)
    monkeypatch.setattr(SLLLinear, "step_sizes_from", lambda self, t: 3 / t)
    bound = layer.lipschitz_bound()
    assert bound == pytest.approx(2.0, rel=1e-8)
    largest = jacobian_singular_values(layer, (5,))[0].item()
    assert 1.0 < largest <= bound + 1e-9


def test_export_is_two_plain_layers_computing_the_same():
    layer = randomised(SLLConv2d(4, 4, 3).double(), seed=4)
    exported = layer.export()
    assert type(exported.first) is torch.nn.Conv2d and type(exported.second) is torch.nn.Conv2d
    x = torch.randn(2, 4, 5, 5, dtype=torch.float64)
    torch.testing.assert_close(exported(x), layer(x), rtol=1e-12, atol=1e-12)


def test_channel_changes_are_refused_with_the_reason():
    with pytest.raises(ValueError, match="residual.*in_channels must equal out_channels"):
        SLLConv2d(3, 6, 3)
    with pytest.raises(ValueError, match="in_features must equal out_features"):
        SLLLinear(5, 7)


def test_initialisation_is_the_authors_with_a_random_q():
    """q = exp(N(0, 1)) and bias U(+-1/sqrt(fan_in)), as araujoalexandre/Lipschitz-SLL-Networks
    @87865db draws them. The random q matters: with q = 1 (an earlier initialisation) the
    Schur test on this Xavier-initialised layer is looser, ||T^(1/2) W^T||^2 was 0.28 (the
    layer is near the identity), and aol-digits trained ~3x slower."""
    torch.manual_seed(0)
    layer = SLLLinear(256, 256).double()
    log_q, bias = layer.log_q.detach(), layer.bias.detach()
    assert abs(log_q.mean().item()) < 0.2 and 0.8 < log_q.std().item() < 1.2
    assert bias.abs().max().item() <= 1 / 16 and bias.std().item() > 1 / 64
    tau = layer.step_sizes().detach() / 2
    effective = torch.linalg.matrix_norm(tau.sqrt()[:, None] * layer.weight.detach(), 2) ** 2
    assert 0.4 < effective.item() <= 1.0
