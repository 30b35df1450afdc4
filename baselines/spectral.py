"""``spectral``: spectral normalisation by a guaranteed, differentiable norm bound.

The layer computes ``conv(x, W / B(W)) + b`` (dense: ``W x / B(W) + b``) where ``B`` is
the Gram-iteration bound ``aol.nn.bounds.gram_row_sum_bound`` with ``gram_iterations``
steps: ``t`` squarings of the convolution's Gram operator on the kernel itself
(Delattre, Barthelemy, Araujo & Allauzen, "Efficient Bound of Lipschitz Constant for
Convolutional Layers by Gram Iteration", ICML 2023, Sec. 4; its spatial-domain form for
zero padding in Delattre, Barthelemy & Allauzen, "Spectral Norm of Convolutional Layers
with Circular and Zero Paddings", arXiv 2402.00240), closed by the Schur test (largest
absolute row sum). ``B(W)`` is an upper bound on ``sup_w ||K^(w)||_2``, the norm of the
convolution on the infinite grid, so it bounds

* zero padding at every input size: the zero-padded convolution is (crop) . (infinite
  convolution) . (embed), a compression of the infinite one;
* circular padding at every input size: its Gram kernel is the infinite one's summed
  over aliases, so absolute row sums only shrink (the Schur test still applies).

Other paddings (reflect, replicate) are not compressions of the infinite convolution
and are refused.

Because the forward divides by ``B(W)`` computed exactly as ``lipschitz_bound()``
recomputes it, the stated bound is ``B64(W) / B(W)``: 1 up to rounding (``B64`` is the
same bound in float64, with an allowance for float64 rounding; ``B(W)`` the normaliser
in the layer's dtype, with an allowance for the division). Unlike a power-iteration
estimate, which approaches the norm from below and must be certified by a separate
upper bound, nothing compounds over layers.

The bound is tight for orthogonal kernels (the Gram kernel is the identity, ``B = 1``),
which is where the layers start (AOL's Dirac / orthogonal initialisation); it is looser
(2.8x for one iteration, 1.6x for two, on random 64-channel kernels) far from orthogonality, which
the normalisation then penalises, as AOL's rescaling does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from aol.families import LayerFamily
from aol.nn.bounds import FLOAT64_SLACK, gram_row_sum_bound
from aol.nn.contract import (
    LipschitzConv2d,
    LipschitzLinear,
    check_image_input,
    plain_conv2d,
    plain_linear,
    same_size_conv2d,
)
from aol.nn.init import initialise_kernel, initialise_matrix

#: Default Gram iterations of the normaliser of a k x k kernel (k > 1): each one squares the
#: kernel's extent, so the second costs ~10x the first for 3x3 (docs/families.md).
GRAM_ITERATIONS = 1

#: Default Gram iterations for a matrix (dense layers, 1x1 convolutions): a c x c matmul
#: each, cheap; six bring the bound within ~1.5% of the norm of a random 256 x 256 matrix.
MATRIX_GRAM_ITERATIONS = 6


def gram_iteration_multiply_adds(kernel_shape: tuple[int, ...], iterations: int) -> int:
    """Multiply-adds of ``gram_row_sum_bound`` on a kernel ``[c_out, c_in, k1, k2]``:
    step ``s`` correlates an iterate of ``c_in x c_in`` (``c_out x c_in`` for ``s = 0``)
    taps of size ``a1 x a2`` with itself into ``(2 a1 - 1) x (2 a2 - 1)`` offsets."""
    c_out, c_in, size1, size2 = kernel_shape
    total, middle = 0, c_out
    for _ in range(iterations):
        out1, out2 = 2 * size1 - 1, 2 * size2 - 1
        total += c_in * c_in * out1 * out2 * middle * size1 * size2
        size1, size2, middle = out1, out2, c_in
    return total


class _GramNormalised:
    """``W / B(W)`` with ``B`` the Gram-iteration bound; subclasses define the product."""

    options = ("gram_iterations", "matrix_gram_iterations")

    def _set_options(
        self,
        *,
        gram_iterations: int = GRAM_ITERATIONS,
        matrix_gram_iterations: int = MATRIX_GRAM_ITERATIONS,
    ) -> None:
        for name, value in (
            ("gram_iterations", gram_iterations),
            ("matrix_gram_iterations", matrix_gram_iterations),
        ):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value}")
        self.gram_iterations = gram_iterations
        self.matrix_gram_iterations = matrix_gram_iterations

    @property
    def iterations(self) -> int:
        """The Gram iterations this layer's weight gets (a matrix or a 1x1 kernel: more)."""
        is_matrix = self.weight.dim() == 2 or tuple(self.weight.shape[2:]) == (1, 1)
        return self.matrix_gram_iterations if is_matrix else self.gram_iterations

    def normaliser(self) -> torch.Tensor:
        """``B(W)`` in the layer's dtype, differentiable in ``W``."""
        return gram_row_sum_bound(self.weight, self.iterations)

    def normalised_weight(self) -> torch.Tensor:
        return self.weight / self.normaliser()

    def weight_transform(self) -> torch.Tensor:
        return self.normalised_weight()

    def lipschitz_bound(self) -> float:
        """``B64(W) (1 + slack) / B(W)``, times an allowance for the division's rounding."""
        with torch.no_grad():
            used = self.normaliser().item()
            weight = self.weight.detach().to(torch.float64)
            guaranteed = gram_row_sum_bound(weight, self.iterations).item()
        if used <= 0:
            return 1.0 if guaranteed == 0 else float("inf")
        rounding = 1.0 + 8 * torch.finfo(self.weight.dtype).eps
        return guaranteed * (1.0 + FLOAT64_SLACK) / used * rounding


class SpectralConv2d(_GramNormalised, LipschitzConv2d):
    """``conv(x, W / B(W)) + b``, ``B`` the Gram-iteration bound (any size, zero/circular)."""

    def reset_parameters(self) -> None:
        # AOL's paper initialisation (Dirac / orthogonal centre tap): orthogonal, so B(W) = 1
        # is exact at the start; a normalised *random* kernel shrinks typical inputs ~2x per
        # layer, so a deep stack starts with vanishing signal and gradients
        initialise_kernel(self.weight, "paper")
        with torch.no_grad():
            if self.bias is not None:
                self.bias.zero_()

    def multiply_adds(self, input_shape, batch_size: int) -> int:
        """``C`` plus the Gram iteration on the kernel (``gram_iteration_multiply_adds``)."""
        gram = gram_iteration_multiply_adds(tuple(self.weight.shape), self.iterations)
        return self.convolution_multiply_adds(input_shape, batch_size) + gram

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_image_input(x, self.in_channels)
        return same_size_conv2d(x, self.normalised_weight(), self.bias, self.padding_mode)

    def export(self) -> nn.Conv2d:
        return plain_conv2d(self.normalised_weight(), self.bias, self.padding_mode)


class SpectralLinear(_GramNormalised, LipschitzLinear):
    """``y = W x / B(W) + b``, ``B`` the Gram-iteration bound of the matrix."""

    def reset_parameters(self) -> None:
        initialise_matrix(self.weight, "paper")  # identity / orthogonal, as for AOL
        with torch.no_grad():
            if self.bias is not None:
                self.bias.zero_()

    def multiply_adds(self, input_shape, batch_size: int) -> int:
        """``b n_in n_out`` plus the Gram iteration on the matrix."""
        shape = (self.out_features, self.in_features, 1, 1)
        gram = gram_iteration_multiply_adds(shape, self.iterations)
        return batch_size * self.in_features * self.out_features + gram

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.normalised_weight(), self.bias)

    def export(self) -> nn.Linear:
        return plain_linear(self.normalised_weight(), self.bias)


SPECTRAL = LayerFamily(
    name="spectral",
    conv_factory=SpectralConv2d,
    linear_factory=SpectralLinear,
    description=(
        "spectral normalisation by the Gram-iteration bound (Delattre et al. ICML 2023, "
        "arXiv 2402.00240): W / B(W), bound 1 for every input size, zero/circular padding"
    ),
)
