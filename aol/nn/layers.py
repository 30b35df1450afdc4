"""AOL dense and convolutional layers (Prach & Lampert, ECCV 2022).

Both layers hold an unconstrained parameter ``weight`` (the paper's ``P``) and use
``P diag(d)`` in every forward pass, with ``d`` recomputed from ``P``
(``aol.nn.rescaling``), so gradients flow through the rescaling. ``export()`` folds the
rescaled weight into a plain ``torch.nn.Linear`` / ``torch.nn.Conv2d``. The bound is 1
for every weight (Theorem 1 for dense layers, Lemma 2 for convolutions).

In eval mode, when no gradient can reach the weight (``torch.no_grad()``, or a weight
that does not require grad), the forward reuses the rescaled weight of the previous
such forward while the weight is unchanged: same storage (``.to()`` to another device
or dtype, or assigning ``.data``, gives a new one) and same version counter (every
in-place change bumps it: optimiser steps, ``load_state_dict``, ``copy_``). Training
mode, and any forward that could backpropagate into the weight, always recompute.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from aol.nn.contract import (
    LipschitzConv2d,
    LipschitzLinear,
    plain_conv2d,
    plain_linear,
    same_conv2d,
    same_size_conv2d,  # noqa: F401  (re-exported: the stride-1 convolution of every family)
)
from aol.nn.init import check_init_scheme, initialise_kernel, initialise_matrix
from aol.nn.rescaling import conv_rescaling_factors, linear_rescaling_factors


class _AOLBase:
    """The ``init`` option (``aol.nn.init``: paper | identity | orthogonal | random)."""

    options = ("init",)

    def _set_options(self, *, init: str = "paper") -> None:
        self.init = check_init_scheme(init)

    def reset_parameters(self) -> None:
        initialise = initialise_kernel if self.weight.dim() == 4 else initialise_matrix
        initialise(self.weight, self.init)
        if self.bias is not None:
            torch.nn.init.zeros_(self.bias)

    def lipschitz_bound(self) -> float:
        return 1.0

    def rescaled_weight(self) -> torch.Tensor:
        """``weight_transform()``, reused in eval mode while the weight is unchanged
        (module docstring); never reused in training mode or where a gradient could flow."""
        weight = self.weight
        if self.training or (torch.is_grad_enabled() and weight.requires_grad):
            return self.weight_transform()
        cache = getattr(self, "_rescaled_cache", None)
        if cache is not None:
            source, version, rescaled = cache
            # ``source`` shares the weight's storage at caching time and keeps it alive,
            # so an equal address means the same storage, not a reused one
            if source.data_ptr() == weight.data_ptr() and version == weight._version:
                if source.shape == weight.shape and source.dtype == weight.dtype:
                    return rescaled
        with torch.no_grad():
            rescaled = self.weight_transform()
        self._rescaled_cache = (weight.detach(), weight._version, rescaled)
        return rescaled

    def train(self, mode: bool = True):
        self._rescaled_cache = None
        return super().train(mode)


class AOLLinear(_AOLBase, LipschitzLinear):
    """Dense layer ``y = P diag(d) x + b`` with ``||P diag(d)||_2 <= 1`` (Theorem 1).

    Keyword option ``init`` (default ``"paper"``).
    """

    def weight_transform(self) -> torch.Tensor:
        """``P diag(d)``, ``d_i = (sum_j |P^T P|_ij)^(-1/2)`` (Theorem 1)."""
        return self.weight * linear_rescaling_factors(self.weight)[None, :]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.rescaled_weight(), self.bias)

    def export(self) -> torch.nn.Linear:
        return plain_linear(self.weight_transform(), self.bias)

    def multiply_adds(self, input_shape, batch_size: int) -> int:
        """``b n_in n_out`` for the product plus ``n_out n_in^2`` for ``P^T P``."""
        return batch_size * self.in_features * self.out_features + (
            self.out_features * self.in_features**2
        )


class AOLConv2d(_AOLBase, LipschitzConv2d):
    """Convolution with per-input-channel AOL rescaling (Lemma 2); 'same' padding.

    The bound holds for zero padding (the paper's proof: a maximally padded
    convolution followed by a crop) and for circular padding (the entries of
    ``J^T J`` are sums of the same terms, so the row sums only shrink).

    ``dilation``: a dilated kernel is the kernel with zeros between its taps, whose
    self-correlation is ``V`` at the dilated offsets and zero elsewhere, so the same
    factors ``d`` hold (Lemma 2 with dilated offsets; the paper's AOL-DIL, Table 6).
    ``stride``: a strided convolution is the stride-1 one kept at every ``stride``-th
    pixel (a crop), so the stride-1 factors still bound it, loosely: the paper's 2x2
    stride-2 convolutions (Tables 7 and 9). Even kernels need ``stride > 1``.
    Keyword option ``init`` (default ``"paper"``).
    """

    supports_stride = True
    supports_dilation = True

    def weight_transform(self) -> torch.Tensor:
        """``P diag(d)`` with the per-input-channel factors of Lemma 2."""
        return self.weight * conv_rescaling_factors(self.weight)[None, :, None, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return same_conv2d(
            x, self.rescaled_weight(), self.bias, self.padding_mode, self.stride, self.dilation
        )

    def export(self) -> torch.nn.Module:
        return plain_conv2d(
            self.weight_transform(), self.bias, self.padding_mode, self.stride, self.dilation
        )

    def multiply_adds(self, input_shape, batch_size: int) -> int:
        """``C`` (at the output size) plus the Gram matrix of all kernel taps,
        ``c_out c_in^2 (k1 k2)^2`` (``aol.nn.rescaling``)."""
        k1, k2 = self.kernel_size
        gram = self.out_channels * self.in_channels**2 * (k1 * k2) ** 2
        height, width = input_shape[-2:]
        output_shape = (-(-height // self.stride[0]), -(-width // self.stride[1]))
        return self.convolution_multiply_adds(output_shape, batch_size) + gram
