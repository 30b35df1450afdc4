"""AOL-specific checks: tight initialisation, the rescaling from its definition, export, errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import aol
from aol import AOLConv2d, AOLLinear, ConcatenationPooling, FirstChannels, MaxMin
from aol.nn.contract import LipschitzConv2d
from aol.nn.rescaling import (
    conv_rescaling_factors,
    conv_rescaling_factors_by_self_convolution,
    linear_rescaling_factors,
)
from aol.verify import exact_jacobian, jacobian_singular_values


@pytest.mark.parametrize(
    ("c_in", "c_out", "kernel_size", "padding_mode"),
    [(4, 4, 3, "zeros"), (4, 4, 5, "circular"), (3, 8, 3, "zeros"), (3, 8, 1, "circular")],
)
def test_conv_is_isometry_at_paper_init(c_in, c_out, kernel_size, padding_mode):
    layer = AOLConv2d(c_in, c_out, kernel_size, padding_mode=padding_mode)
    singular_values = jacobian_singular_values(layer, (c_in, 5, 5))
    assert singular_values.numel() == c_in * 25
    torch.testing.assert_close(singular_values, torch.ones_like(singular_values), atol=1e-5, rtol=0)


@pytest.mark.parametrize(("n_in", "n_out"), [(8, 8), (5, 12), (1, 3)])
def test_linear_is_isometry_at_paper_init(n_in, n_out):
    singular_values = jacobian_singular_values(AOLLinear(n_in, n_out), (n_in,))
    assert singular_values.numel() == n_in
    torch.testing.assert_close(singular_values, torch.ones_like(singular_values), atol=1e-5, rtol=0)


def test_random_init_is_not_an_isometry_but_is_bounded():
    layer = AOLConv2d(4, 4, 3, init="random")
    singular_values = jacobian_singular_values(layer, (4, 6, 6))
    assert singular_values[0] <= 1 + 1e-6
    assert singular_values[-1] < 0.9  # the bound is not tight for generic weights


@pytest.mark.parametrize("kernel_size", [3, (3, 5)])
def test_conv_factors_equal_row_sums_of_explicit_jacobian(kernel_size):
    """d_a^-2 - eps = sum_j |J^T J|_{(a, pixel), j} at an interior pixel of the un-rescaled conv."""
    c_in, c_out = 3, 2
    k1, k2 = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
    weight = torch.randn(c_out, c_in, k1, k2, dtype=torch.float64)
    border = 2 * max(k1, k2) - 2
    size = 2 * border + 1
    pixel = border  # at least 2k-2 away from every border

    def plain_conv(x):
        return F.conv2d(x, weight, padding=(k1 // 2, k2 // 2))

    jacobian = exact_jacobian(plain_conv, torch.zeros(1, c_in, size, size, dtype=torch.float64))
    gram = (jacobian.T @ jacobian).abs()
    rows = [a * size * size + pixel * size + pixel for a in range(c_in)]
    expected = (gram[rows].sum(dim=1) + 1e-6).rsqrt()
    torch.testing.assert_close(conv_rescaling_factors(weight), expected, rtol=1e-12, atol=0)
    torch.testing.assert_close(
        conv_rescaling_factors_by_self_convolution(weight), expected, rtol=1e-12, atol=0
    )


def test_linear_factors_from_definition():
    weight = torch.randn(5, 4, dtype=torch.float64)
    gram = weight.T @ weight
    expected = torch.tensor(
        [(sum(abs(gram[i, j].item()) for j in range(4)) + 1e-6) ** -0.5 for i in range(4)],
        dtype=torch.float64,
    )
    torch.testing.assert_close(linear_rescaling_factors(weight), expected, rtol=1e-12, atol=0)


def test_one_by_one_conv_reduces_to_dense_case():
    weight = torch.randn(6, 4, 1, 1, dtype=torch.float64)
    torch.testing.assert_close(
        conv_rescaling_factors(weight), linear_rescaling_factors(weight[:, :, 0, 0])
    )


def test_rescaling_is_recomputed_from_the_current_weight():
    layer = AOLLinear(4, 4, init="random")
    x = torch.randn(3, 4)
    before = layer(x)
    with torch.no_grad():
        layer.weight.mul_(10.0)  # the rescaling undoes a global scale of P
    torch.testing.assert_close(layer(x), before, rtol=1e-5, atol=1e-6)


def test_export_gives_plain_layers_and_same_outputs():
    model = torch.nn.Sequential(
        ConcatenationPooling(2),
        AOLConv2d(12, 16, 1, init="random"),
        MaxMin(),
        AOLConv2d(16, 16, 3, padding_mode="circular", init="random"),
        MaxMin(),
        FirstChannels(4),
        torch.nn.Flatten(),
        AOLLinear(64, 10, init="random"),
    )
    x = torch.rand(7, 3, 8, 8)
    exported = aol.export(model)
    kinds = {type(module) for module in exported.modules()}
    assert AOLConv2d not in kinds and AOLLinear not in kinds
    assert torch.nn.Conv2d in kinds and torch.nn.Linear in kinds
    torch.testing.assert_close(exported(x), model(x), rtol=1e-6, atol=1e-7)
    assert model.training and isinstance(model[1], AOLConv2d)  # original untouched


@pytest.mark.parametrize(
    ("arguments", "hint"),
    [
        ({"stride": 0}, "stride"),
        ({"dilation": 0}, "dilation"),
        ({"groups": 2}, "groups"),
        ({"kernel_size": 2}, "odd"),
        ({"padding": "valid"}, "same"),
        ({"padding_mode": "reflect"}, "padding_mode"),
        ({"init": "xavier"}, "init"),
    ],
)
def test_unsupported_conv_arguments_raise_with_advice(arguments, hint):
    options = {"in_channels": 4, "out_channels": 4, "kernel_size": 3} | arguments
    with pytest.raises(ValueError, match=hint):
        AOLConv2d(**options)


class _StrideOneConv(LipschitzConv2d):
    """A constrained conv that declares neither ``supports_stride`` nor ``supports_dilation``."""

    def reset_parameters(self) -> None:
        torch.nn.init.zeros_(self.weight)


@pytest.mark.parametrize(
    ("arguments", "hint"), [({"stride": 2}, "ConcatenationPooling"), ({"dilation": 2}, "dilation")]
)
def test_stride_and_dilation_are_refused_with_advice_unless_supported(arguments, hint):
    """AOLConv2d supports both (Lemma 2 holds for them); a family that does not says what to do."""
    with pytest.raises(ValueError, match=hint):
        _StrideOneConv(4, 4, 3, **arguments)
    assert AOLConv2d(4, 4, 3, **arguments).lipschitz_bound() == 1.0


def test_even_kernels_need_a_stride():
    with pytest.raises(ValueError, match="odd"):
        AOLConv2d(4, 4, 2)
    assert AOLConv2d(4, 4, 2, stride=2)(torch.zeros(1, 4, 6, 6)).shape == (1, 4, 3, 3)


def test_maxmin_sorts_adjacent_pairs():
    x = torch.tensor([[1.0, 3.0, 5.0, -2.0]])
    torch.testing.assert_close(MaxMin()(x), torch.tensor([[3.0, 1.0, 5.0, -2.0]]))
    image = torch.randn(2, 6, 3, 3)
    out = MaxMin()(image)
    torch.testing.assert_close(out[:, 0::2], torch.maximum(image[:, 0::2], image[:, 1::2]))
    torch.testing.assert_close(out[:, 1::2], torch.minimum(image[:, 0::2], image[:, 1::2]))
    with pytest.raises(ValueError, match="even"):
        MaxMin()(torch.randn(2, 3))


def test_concatenation_pooling_is_an_orthogonal_space_to_depth():
    pooling = ConcatenationPooling(2)
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    out = pooling(x)
    assert out.shape == (1, 4, 2, 2)
    assert torch.equal(out[0, :, 0, 0], torch.tensor([0.0, 1.0, 4.0, 5.0]))
    singular_values = jacobian_singular_values(pooling, (3, 4, 4))
    torch.testing.assert_close(singular_values, torch.ones_like(singular_values))
    with pytest.raises(ValueError, match="divisible"):
        pooling(torch.randn(1, 1, 5, 4))


def test_first_channels():
    x = torch.randn(2, 5, 3)
    assert torch.equal(FirstChannels(2)(x), x[:, :2])
    with pytest.raises(ValueError, match="channels"):
        FirstChannels(6)(x)


class Residual(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = AOLLinear(4, 4)

    def forward(self, x):
        return x + self.layer(x)  # Lipschitz 2, not 1: the product rule does not apply


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        pytest.param(lambda: [AOLLinear(4, 4), MaxMin()], 1.0, id="aol-and-maxmin"),
        pytest.param(lambda: [Residual()], None, id="residual"),
        pytest.param(lambda: [torch.nn.Linear(4, 4)], None, id="plain-linear"),
    ],
)
def test_network_bound_refuses_what_it_cannot_vouch_for(build, expected):
    bound = aol.network_lipschitz_bound(torch.nn.Sequential(*build()))
    if expected is None:
        assert bound is None
    else:
        assert bound == expected


@pytest.mark.parametrize("shape", [(5, 4, 3, 3), (3, 6, 1, 1), (4, 2, 3, 5)])
def test_conv_factor_gradient_matches_plain_autograd_and_finite_differences(shape):
    """The hand-written backward of the rescaling against autograd of the reference formula."""
    weight = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(conv_rescaling_factors, (weight,))
    upstream = torch.randn(shape[1], dtype=torch.float64)
    (fast,) = torch.autograd.grad(conv_rescaling_factors(weight), weight, upstream)
    (reference,) = torch.autograd.grad(
        conv_rescaling_factors_by_self_convolution(weight), weight, upstream
    )
    torch.testing.assert_close(fast, reference, rtol=1e-10, atol=1e-12)
