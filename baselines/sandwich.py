"""``sandwich``: sandwich layers (Wang & Manchester, ICML 2023, "Direct Parameterization of
Lipschitz-Bounded Deep Networks", arXiv 2301.11526; code acfr/LBDN@d81ed68 ``layer.py``).

A sandwich layer carries its activation: ``h(x) = sqrt(2) A^T relu(sqrt(2) B x + b)``, where
``[A B] = cayley(alpha W / ||W||_F)`` has orthonormal rows (``A``: ``c_out x c_out``,
``B``: ``c_out x c_in``; ``W`` is ``c_out x (c_out + c_in)``). Dense layers use the matrices;
convolutions use them per frequency of the 2-D DFT (Wang & Manchester, Algorithm 1): the
kernel ``W`` (``c_out x (c_out + c_in) x k x k``) is laid on the input's torus and each
frequency's matrix goes through the Cayley transform (``baselines.cayley``), then
``y = irfft(sqrt(2) A^H rfft(relu(irfft(sqrt(2) B rfft(x)) + b)))``: circular padding.

Bound (Wang & Manchester, Theorem 3.2, stated for the matrices actually used): the
Jacobian is ``2 A^H D B`` with ``D`` diagonal in ``[0, 1]`` (pixels x channels). For
``M = [A B]``, ``0 <= M^H D M <= ||M||^2 I``, so ``2 M^H D M - ||M||^2 I`` has norm at most
``||M||^2`` and ``2 A^H D B`` is an off-diagonal block of it: ``Lip(h) <= ||M||^2 =
max_f ||[A(f) B(f)]||^2``, whatever the computed ``A, B``. Dense: ``||[A B]||`` from a
float64 SVD of the matrix used. Convolution, every input size: ``||[A(f) B(f)]|| <= 1 +``
the Cayley rounding allowance of ``baselines.cayley`` (a first-order rounding-model
allowance, not a proof; measured in ``tests/test_cayley.py``), squared.

Differences from the reference code, on purpose:

* No ``Psi``: for ReLU, ``Psi relu(Psi^-1 v + b) = relu(v + Psi b)``, so it is absorbed by
  the bias (1-Lipschitz Layers Compared, Prach et al., CVPR 2024, App. H.4; their
  ``numerical_stable`` forward); the layer's ``bias`` is the inner bias, no output bias.
* ``alpha`` is a parameter from construction, normalised by the kernel's spatial Frobenius
  norm (the reference creates it in the first forward, after the optimiser, so it is never
  trained: LBDN ``train.py``); the per-frequency matrices are computed for each input size
  (cached per size in eval mode), with no centring shift matrix.
* The dense layer is ``SandwichFc`` for every shape (no separate linear ``SandwichLin``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from aol.families import LayerFamily
from aol.nn.bounds import FLOAT64_SLACK
from aol.nn.contract import frozen_parameter
from baselines.cayley import (
    ScaledCayleyConv2d,
    ScaledCayleyConv2dInference,
    ScaledCayleyLinear,
    cached_lipschitz_bound,
    cayley_lipschitz_bound,
)

SQRT2 = math.sqrt(2.0)


def sandwich_conv_forward(x: torch.Tensor, weights: torch.Tensor, bias) -> torch.Tensor:
    """The circular sandwich convolution with per-frequency ``[A(f) B(f)]`` (``[F, out,
    out + in]``): two products, the ReLU in pixel space between them."""
    batch, c_in, height, width = x.shape
    c_out = weights.shape[1]
    a_part, b_part = weights[:, :, :c_out], weights[:, :, c_out:]
    inner = _frequency_product(x, SQRT2 * b_part)
    if bias is not None:
        inner = inner + bias[None, :, None, None]
    return _frequency_product(F.relu(inner), SQRT2 * a_part.mH)


def _frequency_product(x: torch.Tensor, matrices: torch.Tensor) -> torch.Tensor:
    batch, channels, height, width = x.shape
    spectrum = torch.fft.rfft2(x).permute(2, 3, 1, 0).reshape(-1, channels, batch)
    product = matrices @ spectrum.to(matrices.dtype)
    product = product.reshape(height, width // 2 + 1, -1, batch).permute(3, 2, 0, 1)
    return torch.fft.irfft2(product, s=(height, width))


class _SandwichBase:
    """Initialisation shared by the conv and dense layers."""

    def reset_parameters(self) -> None:
        # acfr/LBDN@d81ed68 layer.py: xavier_normal_ weights, alpha = ||W||, zero bias
        nn.init.xavier_normal_(self.weight)
        with torch.no_grad():
            self.alpha.copy_(self.weight.norm())
        if self.bias is not None:
            nn.init.zeros_(self.bias)
        self._cache.clear()


class SandwichConv2d(_SandwichBase, ScaledCayleyConv2d):
    """Sandwich convolution with its ReLU inside (stride 1, circular, 'same' size); its
    ``frequency_weights`` are ``[A(f) B(f)]``."""

    apply_weights = staticmethod(sandwich_conv_forward)

    def _weight_shape(self) -> tuple[int, ...]:
        return (self.out_channels, self.out_channels + self.in_channels, *self.kernel_size)

    def lipschitz_bound(self) -> float:
        return cached_lipschitz_bound(self._cache, self.weight, self.alpha, power=2)

    def multiply_adds(self, input_shape, batch_size: int) -> int:
        """Own count (not in 1LLC Table 1), per pixel: ``b c_out (c_in + c_out)`` for the two
        products and ``(c_in + c_out) c_out^2`` for the Cayley transform; FFTs not counted."""
        height, width = input_shape[-2:]
        c_in, c_out = self.in_channels, self.out_channels
        return height * width * (batch_size + c_out) * c_out * (c_in + c_out)

    def export(self) -> SandwichConv2dInference:
        return SandwichConv2dInference(self)


class SandwichConv2dInference(ScaledCayleyConv2dInference):
    """Frozen copy of a ``SandwichConv2d``: ``[A(f) B(f)]`` computed once per input size."""

    apply_weights = staticmethod(sandwich_conv_forward)

    def lipschitz_bound(self) -> float:
        return cayley_lipschitz_bound(self.weight, self.alpha) ** 2


def sandwich_dense_forward(x: torch.Tensor, matrix: torch.Tensor, bias) -> torch.Tensor:
    """``sqrt(2) A^T relu(sqrt(2) B x + b)`` with ``[A B] = matrix``."""
    out_features = matrix.shape[0]
    a_part, b_part = matrix[:, :out_features], matrix[:, out_features:]
    return F.linear(F.relu(F.linear(x, SQRT2 * b_part, bias)), SQRT2 * a_part.mT)


def sandwich_dense_bound(matrix: torch.Tensor) -> float:
    """``||[A B]||^2`` from a float64 SVD of the matrix used, plus a margin for its rounding."""
    with torch.no_grad():
        norm = torch.linalg.matrix_norm(matrix.detach().to(torch.float64), ord=2).item()
    return norm**2 * (1.0 + FLOAT64_SLACK)


class SandwichLinear(_SandwichBase, ScaledCayleyLinear):
    """Dense sandwich layer ``sqrt(2) A^T relu(sqrt(2) B x + b)`` with its ReLU inside."""

    def _weight_shape(self) -> tuple[int, ...]:
        return (self.out_features, self.out_features + self.in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sandwich_dense_forward(x, self.cayley_matrix(), self.bias)

    def lipschitz_bound(self) -> float:
        return sandwich_dense_bound(self.weight_transform())

    def multiply_adds(self, input_shape, batch_size: int) -> int:
        """``b out (in + out)`` for the two products, ``(in + out) out^2`` for the transform."""
        width = self.in_features + self.out_features
        return (batch_size + self.out_features) * self.out_features * width

    def export(self) -> SandwichLinearInference:
        return SandwichLinearInference(self)


class SandwichLinearInference(nn.Module):
    """Frozen dense sandwich layer: the transformed ``[A B]`` and the bias."""

    def __init__(self, layer: SandwichLinear) -> None:
        super().__init__()
        with torch.no_grad():
            self.matrix = nn.Parameter(layer.weight_transform().detach(), requires_grad=False)
        self.bias = frozen_parameter(layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sandwich_dense_forward(x, self.matrix, self.bias)

    def lipschitz_bound(self) -> float:
        return sandwich_dense_bound(self.matrix)


SANDWICH = LayerFamily(
    name="sandwich",
    conv_factory=SandwichConv2d,
    linear_factory=SandwichLinear,
    description=(
        "Sandwich layers with their ReLU inside, convolutions in the Fourier domain "
        "(Wang & Manchester, ICML 2023); bound ||[A B]||^2"
    ),
    activation=nn.Identity,
    nonlinear=True,  # the ReLU inside: conformance takes the Jacobian at several points
)
