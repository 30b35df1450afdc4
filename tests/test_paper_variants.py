"""The AOL paper's exact variants: tight initialisation of every layer of every paper
architecture, dilated convolutions (AOL-DIL), strided convolutions (Tables 7 and 9)."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

from aol import AOLConv2d, AOLLinear, architectures
from aol.nn.rescaling import (
    AOL_EPSILON,
    conv_rescaling_factors,
    conv_rescaling_factors_by_self_convolution,
    linear_rescaling_factors,
)
from aol.testing import randomise
from aol.verify import exact_jacobian, jacobian_singular_values

#: The AOL paper's architectures (Tables 2, 6-9) with both downsamplings, and the
#: digits-sized one the default pipeline trains.
PAPER_ARCHITECTURES = (
    "aol-small", "aol-medium", "aol-large", "aol-fc", "aol-std", "aol-alt", "aol-dil",
    "aol-std-strided", "aol-alt-strided", "aol-dil-strided",
)  # fmt: skip
TIGHT = (1 + AOL_EPSILON) ** -0.5  # d for a column whose |P^T P| row sums to 1


def _layer_configurations(name: str) -> set[tuple]:
    """Distinct AOL layer configurations of ``name`` on CIFAR, built without memory.

    AOL-FC is taken at 8x8 inputs (192 -> 4096 first layer, the same orthonormal-column
    initialisation as 3072 -> 4096) so that its Gram matrices stay cheap.
    """
    size = 8 if name == "aol-fc" else 32
    with torch.device("meta"):
        model = architectures.build(name, "aol", 10, 3, size)
    found = set()
    for layer in model.modules():
        if isinstance(layer, AOLConv2d):
            found.add(("conv", layer.in_channels, layer.out_channels, layer.kernel_size,
                       layer.stride, layer.dilation))  # fmt: skip
        elif isinstance(layer, AOLLinear):
            found.add(("linear", layer.in_features, layer.out_features))
    return found


CONFIGURATIONS = sorted(set().union(*(_layer_configurations(n) for n in PAPER_ARCHITECTURES)))


def _gram(matrix: torch.Tensor) -> torch.Tensor:
    """``M^T M``, through a sparse product when ``M`` is mostly zero (identity and Dirac
    initialisations), so the 4096-wide identities of AOL-FC cost nothing."""
    if (matrix != 0).sum() <= 2 * max(matrix.shape):
        sparse = matrix.to_sparse()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
            return torch.sparse.mm(sparse.t(), sparse).to_dense()
    return matrix.T @ matrix


def _assert_tight_matrix(matrix: torch.Tensor) -> None:
    """Every row of ``|M^T M|`` sums to 1 (so ``d = 1``, Theorem 1) and ``M`` has unit
    singular values: ``M^T M = I`` (``out >= in``) or ``M M^T = I`` (``out < in``)."""
    gram = _gram(matrix)
    row_sums = gram.abs().sum(dim=1)
    torch.testing.assert_close(row_sums, torch.ones_like(row_sums), atol=1e-4, rtol=0)
    n_out, n_in = matrix.shape
    if n_in * n_in * n_out <= 2**28:  # the library's own factors, where they are cheap
        factors = linear_rescaling_factors(matrix)
        torch.testing.assert_close(factors, torch.full_like(factors, TIGHT), atol=1e-4, rtol=0)
    small = gram if n_out >= n_in else _gram(matrix.T)
    torch.testing.assert_close(small, torch.eye(len(small)), atol=1e-5, rtol=0)


@pytest.mark.parametrize("configuration", CONFIGURATIONS, ids=str)
def test_every_paper_layer_is_tight_at_initialisation(configuration):
    """d = 1 for every AOL layer (the bound is tight at the start, paper Sec. 5) and the
    rescaled layer's singular values are 1 (for a strided conv: its non-zero ones).

    A conv initialised with one non-zero tap has ``J^T J`` equal to that tap's Gram matrix
    at every pixel, so its Lemma 2 factors and singular values are those of the centre
    matrix; the conv factors themselves are computed where they are cheap.
    """
    torch.manual_seed(0)
    if configuration[0] == "linear":
        _, n_in, n_out = configuration
        _assert_tight_matrix(AOLLinear(n_in, n_out).weight.detach())
        return
    _, c_in, c_out, kernel, stride, dilation = configuration
    layer = AOLConv2d(c_in, c_out, kernel, stride=stride, dilation=dilation)
    weight = layer.weight.detach()
    centre = weight[:, :, kernel[0] // 2, kernel[1] // 2].clone()
    off_centre = weight.clone()
    off_centre[:, :, kernel[0] // 2, kernel[1] // 2] = 0
    assert not off_centre.any()
    if c_in * kernel[0] * kernel[1] <= 1024:
        factors = conv_rescaling_factors(weight)
        torch.testing.assert_close(factors, torch.full_like(factors, TIGHT), atol=1e-5, rtol=0)
    if stride == (1, 1):
        _assert_tight_matrix(centre)
    else:  # the subsampled map passes one pixel of each 2x2 block: a partial isometry
        assert c_out >= c_in
        _assert_tight_matrix(centre)


@pytest.mark.parametrize(
    ("c_in", "c_out", "kernel", "stride", "dilation", "padding_mode"),
    [
        (4, 4, 3, 1, 3, "circular"),
        (8, 4, 1, 1, 1, "zeros"),
        (3, 6, 2, 2, 1, "zeros"),
        (4, 8, 2, 2, 1, "circular"),
    ],
)
def test_small_paper_layers_have_unit_singular_values_by_exact_jacobian(
    c_in, c_out, kernel, stride, dilation, padding_mode
):
    layer = AOLConv2d(c_in, c_out, kernel, stride, "same", dilation, padding_mode=padding_mode)
    values = jacobian_singular_values(layer, (c_in, 6, 6))
    nonzero = values[values > 1e-9]
    torch.testing.assert_close(nonzero, torch.ones_like(nonzero), atol=1e-5, rtol=0)
    expected = c_out * 36 // stride**2 if c_out < c_in else c_in * 36 // stride**2
    assert nonzero.numel() == expected


def test_narrowing_paper_init_is_not_plain_orthogonal_rows():
    """The 4c -> 2c layer after ConcatenationPooling: orthonormal rows would give d < 1."""
    rows = torch.empty(64, 128)
    torch.nn.init.orthogonal_(rows)
    assert linear_rescaling_factors(rows).max() < 0.6  # why the released code repeats columns
    assert linear_rescaling_factors(AOLLinear(128, 64).weight).min() > 0.99


def _dilated_kernel(weight: torch.Tensor, dilation: int) -> torch.Tensor:
    """The kernel with ``dilation - 1`` zeros between its taps."""
    c_out, c_in, k1, k2 = weight.shape
    spread = weight.new_zeros(c_out, c_in, dilation * (k1 - 1) + 1, dilation * (k2 - 1) + 1)
    spread[:, :, ::dilation, ::dilation] = weight
    return spread


@pytest.mark.parametrize("dilation", [2, 3])
def test_dilated_factors_equal_those_of_the_spread_kernel(dilation):
    """Lemma 2 with dilated offsets: the undilated factors are the spread kernel's."""
    weight = torch.randn(3, 4, 3, 3, dtype=torch.float64)
    spread = _dilated_kernel(weight, dilation)
    torch.testing.assert_close(
        conv_rescaling_factors(weight), conv_rescaling_factors_by_self_convolution(spread)
    )


@pytest.mark.parametrize("padding_mode", ["zeros", "circular"])
@pytest.mark.parametrize(("dilation", "size"), [(2, 7), (3, 5), (4, 4)])
def test_dilated_conv_is_1_lipschitz_by_exact_jacobian(padding_mode, dilation, size):
    """Random weights; sizes where the dilated taps wrap around (circular) or fall off."""
    layer = AOLConv2d(3, 4, 3, dilation=dilation, padding_mode=padding_mode).double()
    randomise(layer)
    x = torch.randn(1, 3, size, size, dtype=torch.float64)
    assert layer(x).shape == (1, 4, size, size)
    assert jacobian_singular_values(layer, x=x)[0] <= 1 + 1e-9


@pytest.mark.parametrize("padding_mode", ["zeros", "circular"])
@pytest.mark.parametrize(("kernel", "stride", "size"), [(2, 2, 6), (2, 2, 5), (3, 2, 7)])
def test_strided_conv_is_the_subsampled_stride_1_conv(padding_mode, kernel, stride, size):
    """Its Jacobian is rows of the stride-1 Jacobian, so the stride-1 factors bound it."""
    layer = AOLConv2d(3, 4, kernel, stride, padding_mode=padding_mode).double()
    randomise(layer)
    x = torch.randn(1, 3, size, size, dtype=torch.float64)
    rescaled = layer.weight_transform().detach()
    left = (kernel - 1) // 2
    padded_size = size + kernel - 1

    def stride_1_conv(image):
        mode = "constant" if padding_mode == "zeros" else "circular"
        pads = (left, kernel - 1 - left, left, kernel - 1 - left)
        return F.conv2d(F.pad(image, pads, mode=mode), rescaled)

    full = exact_jacobian(stride_1_conv, x).reshape(4, size, size, -1)
    kept = full[:, ::stride, ::stride].reshape(-1, full.shape[-1])
    strided = exact_jacobian(lambda image: layer(image) - layer.bias[:, None, None], x)
    torch.testing.assert_close(strided, kept)
    assert padded_size > size and torch.linalg.matrix_norm(strided, ord=2) <= 1 + 1e-9
    assert torch.linalg.matrix_norm(full.reshape(-1, full.shape[-1]), ord=2) <= 1 + 1e-9
