"""Shared parts of residual "gradient-step" layers ``h(x) = x - A^T diag(s) relu(A x + b)``.

SLL (Araujo et al., ICLR 2023) and CPL (Meunier et al., ICML 2022) are both of this form,
with ``A`` a convolution (or a matrix) from ``c`` channels to ``inner`` channels and step
sizes ``s = 2 tau >= 0``, one per inner channel (CPL: one scalar). With ``T = diag(tau)`` and
``D = diag(relu') in [0, 1]`` any (Clarke) Jacobian is ``J = I - 2 A^T T^(1/2) D T^(1/2) A``
(``D`` and ``T`` are diagonal in the same basis), symmetric with spectrum in
``[1 - 2 ||T^(1/2) A||^2, 1]``, so

    Lip(h) <= max(1, 2 rho - 1)  for any  rho >= ||T^(1/2) A||^2 = ||T^(1/2) A A^T T^(1/2)||.

The weighted Schur test gives such a ``rho`` for every positive weight vector ``q``:
``rho = max_i tau_i sum_{j, offsets} |G_ij| q_j / q_i`` with ``G`` the kernel of ``A A^T``
(SLL's Theorem; "1-Lipschitz Layers Compared", Prach et al., CVPR 2024, Sec. 2.1). For a
convolution the bound holds at every input size with zero and circular padding: the padded
operator is a compression of the convolution on the infinite grid (zero padding), or its
Gram entries are sums of the infinite ones (circular padding), and neither increases a
weighted absolute row sum. The second convolution must be the exact adjoint of the first:
``adjoint_same_size_conv2d`` is, for odd kernels and both paddings.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from aol.nn.bounds import FLOAT64_SLACK
from aol.nn.contract import (
    LipschitzConv2d,
    LipschitzLinear,
    check_image_input,
    plain_conv2d,
    plain_linear,
    same_size_conv2d,
)
from aol.nn.rescaling import conv_gram_blocks


def adjoint_same_size_conv2d(u: torch.Tensor, weight: torch.Tensor, padding_mode: str):
    """``A^T u`` for ``A = same_size_conv2d(., weight, None, padding_mode)`` (odd kernel):
    the correlation with the transposed, spatially flipped kernel and the same padding."""
    return same_size_conv2d(u, adjoint_kernel(weight), None, padding_mode)


def adjoint_kernel(weight: torch.Tensor) -> torch.Tensor:
    """``[inner, c, k1, k2] -> [c, inner, k1, k2]``: the kernel of the adjoint correlation."""
    return weight.transpose(0, 1).flip(-2, -1)


def inner_gram(weight: torch.Tensor) -> torch.Tensor:
    """The Gram kernel of ``A A^T``, ``A`` the correlation with ``weight`` ``[inner, c, k1,
    k2]``, as ``[inner, inner, offsets]`` (``W W^T`` as ``[inner, inner, 1]`` for a matrix
    ``[inner, c]``), up to a flip of the offsets, which no row sum sees. From the Gram matrix
    of the kernel taps (``c^3 k^4`` multiply-adds, ``aol.nn.rescaling.conv_gram_blocks``)."""
    if weight.dim() == 2:
        return (weight @ weight.T)[:, :, None]
    return conv_gram_blocks(weight.transpose(0, 1))


def weighted_row_sums(gram: torch.Tensor, q: torch.Tensor | None = None) -> torch.Tensor:
    """``t_i = sum_{j, offsets} |G_ij| q_j / q_i`` (``q`` None: all ones), one per inner
    channel: SLL's ``T`` ("SDP-based Lipschitz Layers", Araujo et al., ICLR 2023, Thm. 3)."""
    sums = gram.abs().sum(dim=2)
    if q is None:
        return sums.sum(dim=1)
    return (sums * q[None, :]).sum(dim=1) / q


def init_bias_uniform(layer: nn.Module) -> None:
    """Bias ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``, ``fan_in`` the taps of one inner channel
    (torch's ``nn.Conv2d`` default, kept by the SLL and CPL authors and by 1LLC)."""
    if layer.bias is not None:
        bound = 1.0 / math.sqrt(layer.weight[0].numel())
        with torch.no_grad():
            layer.bias.uniform_(-bound, bound)


def gradient_step_bound(rho: float) -> float:
    """``max(1, 2 rho - 1)``, ``rho`` a float64 Schur bound enlarged for its own rounding."""
    return max(1.0, 2.0 * rho * (1.0 + FLOAT64_SLACK) - 1.0)


class GradientStep(nn.Module):
    """The exported residual layer: ``x - second(relu(first(x)))`` with plain torch layers
    (``first``: ``A`` and the bias; ``second``: ``A^T`` with the step sizes folded in)."""

    def __init__(self, first: nn.Module, second: nn.Module) -> None:
        super().__init__()
        self.first = first
        self.second = second

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - self.second(torch.relu(self.first(x)))


class _GradientStepLayer:
    """What the conv and the dense gradient-step layer share. A family subclass defines
    ``schur_weights()`` (``q``, or None) and ``step_sizes_from(row_sums)`` (``s = 2 tau``
    from ``t = weighted_row_sums(inner_gram(weight), q)``), or overrides ``step_sizes()``
    and ``lipschitz_bound()`` together (CPL)."""

    #: What the error for ``in != out`` calls the sizes ("channels" or "features").
    size_name = "channels"

    def _set_options(self) -> None:
        size_in, size_out = self._sizes()
        if size_in != size_out:
            raise ValueError(
                f"{type(self).__name__} is residual (x - f(x)): in_{self.size_name} must equal "
                f"out_{self.size_name}, got {size_in} and {size_out}; widen with zero "
                f"{self.size_name} or narrow with FirstChannels around a layer of one size"
            )

    def schur_weights(self) -> torch.Tensor | None:
        return None

    def step_sizes_from(self, row_sums: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def step_sizes(self) -> torch.Tensor:
        """``s = 2 tau`` per inner channel, as the forward uses them (the layer's dtype)."""
        gram = inner_gram(self.weight)
        return self.step_sizes_from(weighted_row_sums(gram, self.schur_weights()))

    def weight_transform(self) -> torch.Tensor:
        """The training-time transform: the Gram kernel of ``A A^T``, its row sums, ``s``."""
        return self.step_sizes()

    def lipschitz_bound(self) -> float:
        """``max(1, 2 rho - 1)``, ``rho = max_i tau_i t_i`` in float64 with the ``tau`` the
        forward uses and ``t`` recomputed in float64 from the stored weights."""
        with torch.no_grad():
            tau = self.step_sizes().to(torch.float64) / 2
            q = self.schur_weights()
            q = None if q is None else q.to(torch.float64)
            row_sums = weighted_row_sums(inner_gram(self.weight.to(torch.float64)), q)
            return gradient_step_bound((tau * row_sums).max().item())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        steps = self.step_sizes()
        inner = torch.relu(self._operator(x, self.weight, self.bias))
        return x - self._adjoint(inner * self._per_channel(steps), self.weight)


class GradientStepConv2d(_GradientStepLayer, LipschitzConv2d):
    """``x - A^T diag(s) relu(A x + b)``, ``A`` the 'same' correlation with ``weight``
    ``[c, c, k1, k2]`` (inner width ``c``, as "1-Lipschitz Layers Compared" builds SLL/CPL)."""

    def _sizes(self) -> tuple[int, int]:
        return self.in_channels, self.out_channels

    def _operator(self, x, weight, bias):
        check_image_input(x, self.in_channels)
        return same_size_conv2d(x, weight, bias, self.padding_mode)

    def _adjoint(self, u, weight):
        return adjoint_same_size_conv2d(u, weight, self.padding_mode)

    @staticmethod
    def _per_channel(values: torch.Tensor) -> torch.Tensor:
        return values[None, :, None, None]

    def export(self) -> GradientStep:
        with torch.no_grad():
            steps = self.step_sizes()
            second = adjoint_kernel(self.weight) * self._per_channel(steps)
            return GradientStep(
                plain_conv2d(self.weight, self.bias, self.padding_mode),
                plain_conv2d(second, None, self.padding_mode),
            )

    def multiply_adds(self, input_shape, batch_size: int) -> int:
        """``2 C`` (A and A^T) plus the Gram matrix of the kernel taps, ``c^3 k^4`` (SLL's
        count in 1LLC Table 1: ``2C + c^3 k^4``)."""
        k1, k2 = self.kernel_size
        gram = self.in_channels**3 * (k1 * k2) ** 2
        return 2 * self.convolution_multiply_adds(input_shape, batch_size) + gram


class GradientStepLinear(_GradientStepLayer, LipschitzLinear):
    """``x - W^T diag(s) relu(W x + b)`` with ``weight`` ``W`` ``[n, n]``."""

    size_name = "features"

    def _sizes(self) -> tuple[int, int]:
        return self.in_features, self.out_features

    @staticmethod
    def _operator(x, weight, bias):
        return F.linear(x, weight, bias)

    @staticmethod
    def _adjoint(u, weight):
        return u @ weight

    @staticmethod
    def _per_channel(values: torch.Tensor) -> torch.Tensor:
        return values[None, :]

    def export(self) -> GradientStep:
        with torch.no_grad():
            second = self.weight.T * self._per_channel(self.step_sizes())
            return GradientStep(plain_linear(self.weight, self.bias), plain_linear(second, None))

    def multiply_adds(self, input_shape, batch_size: int) -> int:
        """``2 b n^2`` (W and W^T) plus the Gram ``W W^T``: ``n^3``."""
        return 2 * batch_size * self.in_features**2 + self.in_features**3
