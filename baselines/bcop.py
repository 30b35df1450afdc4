"""``bcop``: Block Convolution Orthogonal Parameterization (Li, Haque, Anil, Lucas, Grosse &
Jacobsen, NeurIPS 2019; code ColinQiyangLi/LConvNet@abc14e1).

The kernel is a product of matrix-valued polynomials whose symbols are unitary at every
frequency (paper Sec. 3):

* ``H`` (``c_out x c_in``), a 1x1 kernel with orthonormal columns (``c_out >= c_in``) or rows;
* for each of ``k1 - 1`` vertical and ``k2 - 1`` horizontal steps a two-tap factor
  ``[P, I - P]`` with ``P = Q Q^T`` a symmetric projector (``Q``: ``c_in x r`` with orthonormal
  columns, ``r = max(1, c_in // 2)``); its symbol ``P + (I - P) z`` is unitary for ``|z| = 1``.

Multiplying the tap sequences (``K = H * F_1 * ... * F_m``, products of matrices) multiplies the
symbols, so ``K`` is an orthogonal convolution with circular padding at every input size, and
1-Lipschitz with zero padding (paper Sec. 3; zero padding is a crop of the infinite convolution).
Every matrix with orthonormal columns comes from Björck's iteration (Björck & Bowie, 1971)
``A <- 1.5 A - 0.5 A A^T A`` on a free parameter, 20 iterations as in the paper (3 for the dense
layer, option ``iterations``).

Differences from the reference code, on purpose:

* Before Björck the matrix is divided by the Schur bound ``sqrt(max_i sum_j |A^T A|_ij)``, a
  guaranteed upper bound on its norm, instead of a 10-step power iteration from a random vector:
  the start is deterministic (no random draw per step) and inside the iteration's convergence
  region ``sigma <= 1`` (the iteration maps ``[0, 1]`` into ``[0, 1]``).
* The projector factors act on ``c_in`` channels and ``H`` changes the channels; the reference
  builds a ``max(c_in, c_out)`` orthogonal kernel and slices it. Both are orthogonal (or
  row-orthogonal); for ``c_in == c_out`` (every 3x3 layer of the architectures) they coincide.
* Kernels of any odd size ``k1 x k2`` (``k1 - 1`` vertical then ``k2 - 1`` horizontal factors,
  alternating while both remain); the reference assumes square kernels.
* In eval mode the kernel is computed once and reused until a parameter changes.

Bound. Finitely many Björck steps leave a residual (the iteration only approaches
orthonormality), so the bound is not assumed to be 1: ``lipschitz_bound()`` takes the kernel
actually used and applies the Schur test to its Gram kernel ``K^T * K`` in float64
(``aol.nn.bounds.gram_row_sum_bound``; for ``c_out < c_in`` to the adjoint kernel, whose Gram is
the identity for row-orthogonal kernels), valid for zero and circular padding at every input
size (when that exceeds ``LOOSE_SCHUR_BOUND``, far from orthogonal, the smaller of it and the
grid bound ``aol.nn.bounds.frequency_norm_bound``); a 1x1 kernel and the dense layer get the
float64 SVD norm of their matrix. All carry the relative allowance
``aol.nn.bounds.FLOAT64_SLACK`` for the float64 rounding of the bound itself.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from aol.families import LayerFamily
from aol.nn.bounds import FLOAT64_SLACK, frequency_norm_bound, gram_row_sum_bound
from aol.nn.cache import EvalModeCache
from aol.nn.contract import (
    IterationsOption,
    LipschitzConv2d,
    LipschitzLinear,
    check_image_input,
    plain_conv2d,
    plain_linear,
    same_size_conv2d,
)

#: Björck iterations of the convolution (BCOP paper Sec. 4; 1LLC's BCOP uses the same).
ITERATIONS = 20
#: Björck iterations of the dense layer: from the Schur-scaled start a near-orthogonal matrix
#: converges quadratically, and at digits sizes 20 would make it the most expensive layer
#: (1LLC's ``BjorckLinear`` trains with 3).
DENSE_ITERATIONS = 3
#: Above this Schur bound the kernel is far from orthogonal and the grid bound
#: ``frequency_norm_bound`` (within ~1% of the norm) is computed too; the smaller one is used.
LOOSE_SCHUR_BOUND = 1.01


def schur_norm_bound(matrices: torch.Tensor) -> torch.Tensor:
    """``sqrt(max_i sum_j |(A^T A)_ij|) >= ||A||_2`` for a batch ``[..., rows, columns]``."""
    gram = matrices.mT @ matrices
    return gram.abs().sum(dim=-1).amax(dim=-1).clamp_min(torch.finfo(matrices.dtype).tiny).sqrt()


def bjorck(matrices: torch.Tensor, iterations: int) -> torch.Tensor:
    """Björck orthonormalisation of a batch ``[..., rows, columns]``: orthonormal columns if
    ``rows >= columns``, else orthonormal rows.

    ``A`` is first divided by its Schur bound (``||A|| <= 1``); each step maps the singular values
    by ``s -> s (3 - s^2) / 2``, which keeps ``[0, 1]`` in ``[0, 1]`` and converges to 1.
    """
    rows, columns = matrices.shape[-2:]
    if rows < columns:
        return bjorck(matrices.mT, iterations).mT
    result = matrices / schur_norm_bound(matrices)[..., None, None]
    for _ in range(iterations):
        result = 1.5 * result - 0.5 * result @ (result.mT @ result)
    return result


def multiply_factor(kernel: torch.Tensor, first: torch.Tensor, second: torch.Tensor, axis: int):
    """The tap product of ``kernel`` (``[o, i, a, b]``) and the two-tap factor ``[first, second]``
    along ``axis`` (2: vertical, 3: horizontal); the result is one tap longer on that axis."""
    first_part = torch.einsum("oiab,ij->ojab", kernel, first)
    second_part = torch.einsum("oiab,ij->ojab", kernel, second)
    pad_after = (0, 1) if axis == 3 else (0, 0, 0, 1)
    pad_before = (1, 0) if axis == 3 else (0, 0, 1, 0)
    return F.pad(first_part, pad_after) + F.pad(second_part, pad_before)


def factor_axes(kernel_size: tuple[int, int]) -> list[int]:
    """Axes of the two-tap factors: vertical and horizontal alternating, then the rest."""
    vertical, horizontal = kernel_size[0] - 1, kernel_size[1] - 1
    axes = []
    for step in range(max(vertical, horizontal)):
        axes += [2] * (step < vertical) + [3] * (step < horizontal)
    return axes


def bcop_kernel(
    weight: torch.Tensor, projectors: torch.Tensor | None, kernel_size, iterations: int
) -> torch.Tensor:
    """The BCOP kernel ``[c_out, c_in, k1, k2]`` from ``weight`` (``c_out x c_in``) and the
    projector parameters ``[k1 + k2 - 2, c_in, r]`` (module docstring)."""
    kernel = bjorck(weight, iterations)[:, :, None, None]
    if projectors is None:
        return kernel
    bases = bjorck(projectors, iterations)
    projections = bases @ bases.mT
    identity = torch.eye(projections.shape[-1], dtype=weight.dtype, device=weight.device)
    for projection, axis in zip(projections, factor_axes(kernel_size), strict=True):
        kernel = multiply_factor(kernel, projection, identity - projection, axis)
    return kernel


def conv_norm_bound(kernel: torch.Tensor) -> float:
    """Guaranteed bound on ``||conv(kernel)||_2`` (any padding, any size), float64 (module
    docstring): the SVD norm for a 1x1 kernel, else the Schur test on the Gram kernel of the
    side with fewer channels."""
    with torch.no_grad():
        kernel = kernel.detach().to(torch.float64)
        if kernel.shape[2:] == (1, 1):
            norm = torch.linalg.matrix_norm(kernel[:, :, 0, 0], ord=2).item()
        else:
            if kernel.shape[0] < kernel.shape[1]:  # the adjoint: same norm, Gram ~ identity
                kernel = kernel.transpose(0, 1).flip(2, 3)
            norm = gram_row_sum_bound(kernel).item() * (1.0 + FLOAT64_SLACK)
            if norm > LOOSE_SCHUR_BOUND:  # far from orthogonal: the tight grid bound may win
                norm = min(norm, frequency_norm_bound(kernel))
            return norm
        return norm * (1.0 + FLOAT64_SLACK)


class _BjorckBase(IterationsOption, EvalModeCache):
    """Option ``iterations`` and eval-mode cache shared by the conv and dense BCOP layers."""

    default_iterations = ITERATIONS

    def _cached_transform(self) -> torch.Tensor:
        """The transform of the current parameters: recomputed while training, else cached."""
        if self.training:
            return self.weight_transform()
        return self._frozen_transform()

    def _frozen_transform(self) -> torch.Tensor:
        """The transform of the current parameters, without gradient, computed once."""
        return self._cache.get(None, tuple(self.parameters()), self.weight_transform)


class BCOPConv2d(_BjorckBase, LipschitzConv2d):
    """Orthogonal (circular padding) or 1-Lipschitz (zero padding) BCOP convolution."""

    padding_modes = ("circular", "zeros")

    def _add_state(self, device, dtype) -> None:
        super()._add_state(device, dtype)
        k1, k2 = self.kernel_size
        self.projectors = None
        if k1 * k2 > 1:
            rank = max(1, self.in_channels // 2)
            shape = (k1 + k2 - 2, self.in_channels, rank)
            self.projectors = nn.Parameter(torch.empty(shape, device=device, dtype=dtype))

    def _weight_shape(self) -> tuple[int, ...]:
        return (self.out_channels, self.in_channels)

    def reset_parameters(self) -> None:
        # orthogonal initialisation, as the reference (LConvNet lconvnet/layers/bcop.py)
        nn.init.orthogonal_(self.weight)
        if self.projectors is not None:
            for matrix in self.projectors.data:
                nn.init.orthogonal_(matrix)
        if self.bias is not None:
            nn.init.zeros_(self.bias)
        self._cache.clear()

    def weight_transform(self) -> torch.Tensor:
        return bcop_kernel(self.weight, self.projectors, self.kernel_size, self.iterations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_image_input(x, self.in_channels)
        return same_size_conv2d(x, self._cached_transform(), self.bias, self.padding_mode)

    def lipschitz_bound(self) -> float:
        return conv_norm_bound(self._frozen_transform())

    def export(self) -> nn.Conv2d:
        return plain_conv2d(self._frozen_transform(), self.bias, self.padding_mode)

    def multiply_adds(self, input_shape, batch_size: int) -> int:
        """``C`` plus 1LLC Table 1's weight transform ``c^3 k t + c^3 k^3`` (``c`` the larger
        channel count, ``k^2 = k1 k2``, ``t`` Björck iterations)."""
        channels = max(self.in_channels, self.out_channels)
        k = (self.kernel_size[0] * self.kernel_size[1]) ** 0.5
        transform = channels**3 * (k * self.iterations + k**3)
        return self.convolution_multiply_adds(input_shape, batch_size) + round(transform)


class BCOPLinear(_BjorckBase, LipschitzLinear):
    """Dense layer ``y = bjorck(W) x + b`` (orthonormal columns or rows; Björck & Bowie 1971,
    the dense layer of the BCOP paper)."""

    default_iterations = DENSE_ITERATIONS

    def reset_parameters(self) -> None:
        nn.init.orthogonal_(self.weight)
        if self.bias is not None:
            nn.init.zeros_(self.bias)
        self._cache.clear()

    def weight_transform(self) -> torch.Tensor:
        return bjorck(self.weight, self.iterations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self._cached_transform(), self.bias)

    def lipschitz_bound(self) -> float:
        return conv_norm_bound(self._frozen_transform()[:, :, None, None])

    def export(self) -> nn.Linear:
        return plain_linear(self._frozen_transform(), self.bias)

    def multiply_adds(self, input_shape, batch_size: int) -> int:
        """``b n m`` plus ``2 t n m^2`` for ``t`` Björck steps (``m <= n`` the smaller size)."""
        small, large = sorted((self.in_features, self.out_features))
        return batch_size * small * large + 2 * self.iterations * large * small**2


BCOP = LayerFamily(
    name="bcop",
    conv_factory=BCOPConv2d,
    linear_factory=BCOPLinear,
    description=(
        "Block Convolution Orthogonal Parameterization (Li et al., NeurIPS 2019), Björck "
        "dense layers; bound: Schur test on the actual kernel"
    ),
)
