"""``soc``: Skew Orthogonal Convolutions (Singla & Feizi, ICML 2021), with a sound scaling.

A skew-symmetric filter ``L = M - M^T`` (``M^T`` swaps the channel axes and flips
the kernel, so ``conv(., M^T)`` is the adjoint of ``conv(., M)`` with 'same' zero
padding) gives a skew-symmetric Jacobian ``J``, and
``exp(J)`` is orthogonal. The layer outputs the truncated series

    z = sum_{i <= K} L~^i x / i!,     L~ = L / rho(L),

with ``K = train_terms`` (5) in training and ``eval_terms`` (12) in evaluation,
the counts of the reference code (singlasahil14/SOC@561c7ac) and of 1LLC.

Soundness. The reference scales ``L`` by 0.7 / (a power-iteration estimate of a
reshaped norm), which omits the Fantastic-Four factor ``sqrt(hw)`` and does not
guarantee ``||L~|| <= 1``. Here ``rho`` is a
guaranteed bound, ``aol.nn.bounds.gram_row_sum_bound`` (AOL Lemma 2 /
one Gram-iteration step, Delattre et al. 2024), so ``||L~||_2 <= 1`` at every
input size. ``J`` is normal with eigenvalues ``i theta``, ``|theta| <= r`` for
any bound ``r >= ||L~||``, so the truncated series has norm

    max_theta |S_K(i theta)| <= |exp(i theta)| + sum_{i > K} r^i / i! = 1 + tail(r, K).

``lipschitz_bound()`` returns that value for the term count of the mode the
layer is in (``train_terms`` in training: 1 + 1.6e-3 at r = 1; ``eval_terms``
in evaluation: 1 + 1.6e-10), with ``r`` recomputed in float64 from the filter
actually used (the tighter of the two bounds of ``aol.nn.bounds``).

Channel changes as in SOC: inputs are zero-padded to ``max(c_in, c_out)``
channels (an isometric embedding) and the first ``c_out`` outputs are kept (a
projection). Dense layers use the same construction on matrices.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from aol.families import LayerFamily
from aol.nn.bounds import exponential_tail, frequency_norm_bound, gram_row_sum_bound
from aol.nn.contract import (
    LipschitzConv2d,
    LipschitzLinear,
    check_image_input,
    frozen_parameter,
    plain_linear,
)

#: Series degrees of the reference code (SOC HEAD; 1LLC: "5 terms in training, 12 at inference").
TRAIN_TERMS = 5
EVAL_TERMS = 12


def skew_filter(weight: torch.Tensor) -> torch.Tensor:
    """``M - M^T`` for a square kernel ``[c, c, k1, k2]`` (or a matrix ``[c, c]``)."""
    if weight.dim() == 2:
        return weight - weight.T
    return weight - weight.transpose(0, 1).flip(2, 3)


def scaled_skew_filter(weight: torch.Tensor, gram_iterations: int = 1) -> torch.Tensor:
    """``L / rho(L)`` with ``rho`` a guaranteed bound on ``||conv(L)||``, so ``||L~|| <= 1``.

    ``gram_iterations`` squarings tighten ``rho`` (1: 1.5-2.8x the norm of random 3x3
    kernels, 2: 1.2-1.7x; docs/families.md) at a cost that grows fast with the kernel
    (``aol.nn.bounds``).
    """
    skew = skew_filter(weight)
    rho = gram_row_sum_bound(skew, gram_iterations).clamp_min(torch.finfo(skew.dtype).tiny)
    return skew / rho


def series_bound(filter_: torch.Tensor, terms: int) -> float:
    """``1 + tail(r, terms)`` with ``r`` a guaranteed float64 bound on ``||conv(filter_)||``."""
    with torch.no_grad():
        as_float64 = filter_.detach().to(torch.float64)
        r = min(gram_row_sum_bound(as_float64).item(), frequency_norm_bound(as_float64))
    return 1.0 + exponential_tail(r, terms)


def _pad_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    missing = channels - x.shape[1]
    if missing == 0:
        return x
    padding = [0, 0] * (x.dim() - 2) + [0, missing]
    return F.pad(x, padding)


def _series(x: torch.Tensor, apply, terms: int) -> torch.Tensor:
    """``sum_{i <= terms} A^i x / i!`` with ``apply(v) = A v``."""
    result = x
    current = x
    for index in range(1, terms + 1):
        current = apply(current) / index
        result = result + current
    return result


class _SOCBase:
    """Term counts, mode-dependent bound, initialisation and transform of conv and dense."""

    options = ("train_terms", "eval_terms", "gram_iterations")

    def _set_options(
        self, *, train_terms: int = TRAIN_TERMS, eval_terms: int = EVAL_TERMS, gram_iterations=1
    ) -> None:
        if train_terms < 1 or eval_terms < 1:
            raise ValueError(
                f"term counts must be >= 1, got train={train_terms}, eval={eval_terms}"
            )
        if gram_iterations < 1:
            raise ValueError(f"gram_iterations must be >= 1, got {gram_iterations}")
        self.train_terms = train_terms
        self.eval_terms = eval_terms
        self.gram_iterations = gram_iterations

    def _terms(self) -> int:
        return self.train_terms if self.training else self.eval_terms

    def lipschitz_bound(self) -> float:
        """Guaranteed bound for the term count of the current mode (see module docstring)."""
        return series_bound(self.scaled_filter(), self._terms())

    def reset_parameters(self) -> None:
        # SOC's reference code (singlasahil14/SOC@561c7ac, skew_ortho_conv.py):
        # M ~ N(0, 1/max_c), bias ~ U(+-1/sqrt(c_out)); the weight is square, max(in, out) wide
        nn.init.normal_(self.weight, std=1.0 / math.sqrt(self.weight.shape[0]))
        if self.bias is not None:
            bound = 1.0 / math.sqrt(self.bias.shape[0])
            nn.init.uniform_(self.bias, -bound, bound)

    def scaled_filter(self) -> torch.Tensor:
        return scaled_skew_filter(self.weight, self.gram_iterations)

    def weight_transform(self) -> torch.Tensor:
        """The training-time weight transform: the scaled skew filter."""
        return self.scaled_filter()

    def _gram_multiply_adds(self, kernel: tuple[int, int]) -> int:
        """Each squaring of the Gram bound is a full self-correlation, ``c^3 k^2 (2k-1)^2``."""
        k1, k2 = kernel
        channels = self.weight.shape[0]
        count = 0
        for _ in range(self.gram_iterations):
            count += channels**3 * k1 * k2 * (2 * k1 - 1) * (2 * k2 - 1)
            k1, k2 = 2 * k1 - 1, 2 * k2 - 1
        return count


class SOCConv2d(_SOCBase, LipschitzConv2d):
    """Skew orthogonal convolution, stride 1, 'same' zero padding, odd kernel.

    Keyword options ``train_terms`` (5), ``eval_terms`` (12), ``gram_iterations`` (1).
    """

    # the transposed filter is the adjoint of the 'same' zero-padded convolution only
    padding_modes = ("zeros",)

    @property
    def width(self) -> int:
        """``max(c_in, c_out)``: the channels of the square skew filter."""
        return max(self.in_channels, self.out_channels)

    def _weight_shape(self) -> tuple[int, ...]:
        return (self.width, self.width, *self.kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return soc_conv_forward(
            x, self.scaled_filter(), self.bias, self._terms(), self.in_channels, self.out_channels
        )

    def multiply_adds(self, input_shape, batch_size: int) -> int:
        """Table 1 of 1LLC: ``C t1`` for the series; our scaling is the Gram-kernel bound,
        ``c^3 k^2 (2k-1)^2`` per squaring (Table 1 counts SOC's Fantastic-Four power
        iteration, ``c^2 k^2 t2``, instead)."""
        conv = self.convolution_multiply_adds(input_shape, batch_size, channels=self.width)
        return conv * self.train_terms + self._gram_multiply_adds(self.kernel_size)

    def export(self) -> SOCConv2dInference:
        return SOCConv2dInference(
            self.scaled_filter(), self.bias, self.eval_terms, self.in_channels, self.out_channels
        )


def soc_conv_forward(x, filter_, bias, terms, in_channels, out_channels):
    check_image_input(x, in_channels)
    k1, k2 = filter_.shape[2:]
    padded = _pad_channels(x, filter_.shape[0])
    z = _series(padded, lambda v: F.conv2d(v, filter_, padding=(k1 // 2, k2 // 2)), terms)
    z = z[:, :out_channels]
    return z if bias is None else z + bias[None, :, None, None]


class SOCConv2dInference(nn.Module):
    """Inference SOC: the scaled skew filter stored (no weight transform), ``eval_terms`` terms."""

    def __init__(self, filter_, bias, terms: int, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.filter = frozen_parameter(filter_)
        self.bias = frozen_parameter(bias)
        self.terms = terms
        self.in_channels = in_channels
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return soc_conv_forward(
            x, self.filter, self.bias, self.terms, self.in_channels, self.out_channels
        )

    def lipschitz_bound(self) -> float:
        return series_bound(self.filter, self.terms)


class SOCLinear(_SOCBase, LipschitzLinear):
    """Dense SOC: ``sum_{i <= K} L~^i x / i!`` with ``L~`` a scaled skew-symmetric matrix."""

    @property
    def width(self) -> int:
        """``max(n_in, n_out)``: the size of the square skew matrix."""
        return max(self.in_features, self.out_features)

    def _weight_shape(self) -> tuple[int, int]:
        return (self.width, self.width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_features:
            raise ValueError(f"expected {self.in_features} input features, got {x.shape[-1]}")
        matrix = self.scaled_filter()
        z = _series(_pad_channels(x, self.width), lambda v: F.linear(v, matrix), self._terms())
        z = z[..., : self.out_features]
        return z if self.bias is None else z + self.bias

    def multiply_adds(self, input_shape, batch_size: int) -> int:
        """``b n^2 t1`` for the series plus ``n^3`` per Gram squaring (1LLC Table 1 style)."""
        gram = self.gram_iterations * self.width**3
        return batch_size * self.width**2 * self.train_terms + gram

    def export(self) -> nn.Linear:
        """The whole truncated series as one matrix (eval term count): a plain ``nn.Linear``."""
        with torch.no_grad():
            matrix = self.scaled_filter()
            identity = torch.eye(self.width, dtype=matrix.dtype, device=matrix.device)
            series = _series(identity, lambda v: v @ matrix.T, self.eval_terms)  # rows: S e_j
            weight = series.T[: self.out_features, : self.in_features]
        return plain_linear(weight, self.bias)


SOC = LayerFamily(
    name="soc",
    conv_factory=SOCConv2d,
    linear_factory=SOCLinear,
    description=(
        "Skew Orthogonal Convolution (Singla & Feizi, ICML 2021), skew filter scaled by a "
        "guaranteed norm bound; bound 1 + truncation tail"
    ),
)
