"""``cpl``: Convex Potential Layers (Meunier, Delattre, Araujo & Allauzen, ICML 2022).

    h(x) = x - (2 / U^2) W relu(W^T x + b)

a gradient step on a convex potential; 1-Lipschitz whenever ``U >= ||W||_2``. The paper's
step is ``2 / ||W||^2``; the authors' code divides by a power-iteration estimate of ``||W||``
on a fixed 32x32 input (MILES-PSL/Convex-Potential-Layer@c6dc197 ``layers.py``), which
approaches the norm from below and belongs to one input size: not a guaranteed bound. Here
``U`` is the Gram-iteration bound ``aol.nn.bounds.gram_row_sum_bound`` (Delattre, Barthelemy,
Araujo & Allauzen, ICML 2023; closed by the Schur test), computed differentiably in every
training step: it bounds the convolution on the infinite grid, so every input size and both
paddings. For a matrix (dense layers, 1x1 convolutions) ``MATRIX_GRAM_ITERATIONS`` squarings
bring ``U`` within ~1.5% of ``||W||``, so the step is the paper's; for a ``k x k`` kernel one
iteration, the Schur bound ``U^2 = max_i sum_{j, offsets} |G_ij|`` (AOL's Theorem 1 with
``D = I``), which is looser (the step is smaller; CPL's conv is then SLL with one scalar
``tau``). The stated bound is ``max(1, (2 / U^2) U64^2 - 1)`` with ``U64`` recomputed in
float64 from the stored weights (1 up to rounding).

With the Schur bound for matrices too (this layer's earlier normaliser), ``U^2`` was ~3.5x
``||W||^2`` on the Xavier-initialised 256 x 256 dense layers of ``aol-digits``: every dense step
~3.5x smaller than the paper's, and ``aol-digits`` reached 83.8 % clean / 50.4 % certified
(36/255) after 10 epochs instead of 94.4 % / 86.2 % (docs/families.md).
"""

from __future__ import annotations

import torch
from torch import nn

from aol.families import LayerFamily
from aol.nn.bounds import gram_row_sum_bound
from aol.nn.residual import (
    GradientStepConv2d,
    GradientStepLinear,
    gradient_step_bound,
    init_bias_uniform,
    inner_gram,
    weighted_row_sums,
)

#: Smallest ``U^2`` divided by (an all-zero weight has no effect whatever the step).
MIN_NORM_BOUND = 1e-12

#: Gram iterations for a matrix (as ``baselines.spectral``): a ``c x c`` matmul each; six
#: bring the bound within ~1.5% of the norm of a random 256 x 256 matrix.
MATRIX_GRAM_ITERATIONS = 6


def norm_bound_squared(weight: torch.Tensor) -> torch.Tensor:
    """``U^2 >= ||W||_2^2`` for ``weight`` ``[inner, c, k1, k2]`` (or a matrix), differentiable:
    the Gram iteration for a matrix or 1x1 kernel, the Schur row sums of ``A A^T`` otherwise
    (one Gram iteration, ``c^3 k^4`` multiply-adds)."""
    if weight.dim() == 2 or tuple(weight.shape[2:]) == (1, 1):
        return gram_row_sum_bound(weight, MATRIX_GRAM_ITERATIONS).square()
    return weighted_row_sums(inner_gram(weight)).max()


class _CPL:
    def reset_parameters(self) -> None:
        # Xavier-normal weights ("1-Lipschitz Layers Compared", App. H.3; 1LLC
        # models/layers/lipschitz/cpl.py@01e3f2a) and bias U(+-1/sqrt(fan_in)), as there and
        # in the authors' code
        nn.init.xavier_normal_(self.weight)
        init_bias_uniform(self)

    def step_sizes(self) -> torch.Tensor:
        """One step ``2 / U^2`` for every inner channel (the layer's dtype)."""
        bound = norm_bound_squared(self.weight).clamp_min(MIN_NORM_BOUND)
        return (2 / bound).expand(self.weight.shape[0])

    def lipschitz_bound(self) -> float:
        """``max(1, 2 tau U64^2 - 1)``, ``tau`` the half step the forward uses, ``U64`` the
        norm bound recomputed in float64 from the stored weights."""
        with torch.no_grad():
            tau = self.step_sizes().max().to(torch.float64) / 2
            weight = self.weight.detach().to(torch.float64)
            return gradient_step_bound((tau * norm_bound_squared(weight)).item())


class CPLConv2d(_CPL, GradientStepConv2d):
    """CPL convolution, ``c -> c`` channels, zero (default, as 1LLC) or circular padding."""

    def multiply_adds(self, input_shape, batch_size: int) -> int:
        """``2 C`` plus the norm bound: the Gram matrix of the kernel taps (``c^3 k^4``), or
        for a 1x1 kernel ``MATRIX_GRAM_ITERATIONS`` products of ``c x c`` matrices."""
        if self.kernel_size != (1, 1):
            return super().multiply_adds(input_shape, batch_size)
        convolutions = 2 * self.convolution_multiply_adds(input_shape, batch_size)
        return convolutions + MATRIX_GRAM_ITERATIONS * self.in_channels**3


class CPLLinear(_CPL, GradientStepLinear):
    """CPL dense layer, ``n -> n`` features."""

    def multiply_adds(self, input_shape, batch_size: int) -> int:
        """``2 b n^2`` (W and W^T) plus ``MATRIX_GRAM_ITERATIONS`` products of ``n x n``."""
        return 2 * batch_size * self.in_features**2 + MATRIX_GRAM_ITERATIONS * self.in_features**3


CPL = LayerFamily(
    name="cpl",
    conv_factory=CPLConv2d,
    linear_factory=CPLLinear,
    description=(
        "Convex Potential Layers (Meunier et al., ICML 2022): x - 2/U^2 W relu(W^T x + b), "
        "U a guaranteed Gram-iteration bound on ||W||; residual (in == out), bound 1"
    ),
    changes_channels=False,
    nonlinear=True,
)
