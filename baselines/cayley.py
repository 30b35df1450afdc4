"""``cayley``: orthogonal convolutions by the Cayley transform in the Fourier domain
(Trockman & Kolter, ICLR 2021; code locuslab/orthogonal-convolutions@543b0aa).

A circular convolution on an ``H x W`` input is block-diagonalised by the 2-D DFT:
each frequency ``f`` gets a complex matrix ``W^(f)`` (``c_out x c_in``). The layer
replaces it by the Cayley transform of ``S(f) = alpha W^(f) / ||W||_F``:

* ``c_out >= c_in``: ``S = [U; V]`` (``U`` square), ``A = U - U^H + V^H V``,
  ``Q = [(I + A)^-1 (I - A); -2 V (I + A)^-1]``, and ``Q^H Q = I`` (Trockman & Kolter, Sec. 3);
* ``c_out < c_in``: ``Q = cayley(S^H)^H`` (orthonormal rows).

``A + A^H = 2 V^H V`` is positive semidefinite, so ``||(I + A)^-1|| <= 1``: the
inverse always exists. Only the ``H (W // 2 + 1)`` frequencies of ``rfft2`` are
transformed; the others are their complex conjugates and the Cayley transform
commutes with conjugation, so the layer is a real orthogonal (``c_out >= c_in``)
or row-orthogonal map. Any ``H, W >= k`` is accepted (odd sizes included).

Differences from the reference code, on purpose:

* ``alpha`` is a parameter from construction, so an optimiser built before the
  first forward trains it (the reference creates it lazily and never trains it,
  ``layers.py``). Its normaliser is the kernel's spatial Frobenius norm, the same for
  every input size (the reference uses the frequency-domain norm, which grows
  with the size); ``alpha`` starts at ``||W||_F`` so that at initialisation the
  transform sees the raw weights, as in the reference.
* In eval mode the transformed weights of each input size are computed once and
  reused until a parameter changes (version counters) or ``train()`` is called.

Bound. In exact arithmetic the layer is orthogonal: norm 1. The computed
``Q`` is orthogonal only up to rounding, amplified by ``cond(I + A) <= 1 + ||A||``.
``lipschitz_bound()`` returns ``1 + rounding_allowance``: a first-order
backward-error allowance ``ROUNDING_CONSTANT * c * u * (1 + a)^2`` with ``u`` the
unit roundoff of the weights' dtype, ``c = max(c_in, c_out)`` and ``a`` a
guaranteed bound on ``max_f ||A(f)||`` (``||A|| <= 2 s + s^2`` with
``s = |alpha| B(W) / ||W||_F >= max_f ||S(f)||``, ``B`` the guaranteed
convolution-norm bound ``aol.nn.bounds.frequency_norm_bound``).
This is an allowance from the standard rounding model (Higham, "Accuracy and
Stability of Numerical Algorithms", 2002, §9 for the inverse), not a proof;
``tests/test_cayley.py`` measures the actual defect against it at many sizes.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from aol.families import LayerFamily
from aol.nn.bounds import frequency_norm_bound
from aol.nn.cache import EvalModeCache, VersionedCache
from aol.nn.contract import (
    LipschitzConv2d,
    LipschitzLinear,
    check_image_input,
    frozen_parameter,
    plain_linear,
)

#: Safety constant of the rounding allowance (see the module docstring).
ROUNDING_CONSTANT = 64.0


def cayley(matrices: torch.Tensor) -> torch.Tensor:
    """Cayley transform of a batch ``[..., out, in]`` into (semi-)unitary matrices."""
    rows, columns = matrices.shape[-2:]
    if rows < columns:
        return cayley(matrices.mH).mH
    square, rest = matrices[..., :columns, :], matrices[..., columns:, :]
    skew = square - square.mH + rest.mH @ rest
    identity = torch.eye(columns, dtype=matrices.dtype, device=matrices.device)
    inverse = torch.linalg.inv(identity + skew)
    top = inverse @ (identity - skew)
    return torch.cat([top, -2.0 * rest @ inverse], dim=-2)


def rounding_allowance(dtype: torch.dtype, channels: int, scale_bound: float) -> float:
    """``ROUNDING_CONSTANT * channels * u * (1 + a)^2`` ``a = 2 s + s^2`` bounding ``||A||``."""
    unit_roundoff = torch.finfo(dtype).eps / 2
    skew_bound = 2.0 * scale_bound + scale_bound**2
    return ROUNDING_CONSTANT * channels * unit_roundoff * (1.0 + skew_bound) ** 2


def scale_bound(weight: torch.Tensor, alpha: torch.Tensor) -> float:
    """``s >= max_f ||alpha W^(f) / ||W||_F||`` for every input size (and for a matrix)."""
    with torch.no_grad():
        norm = weight.detach().to(torch.float64).norm().item()
        if norm == 0:
            return 0.0
        return abs(alpha.item()) * frequency_norm_bound(weight) / norm


def frequency_weights(weight: torch.Tensor, alpha: torch.Tensor, height: int, width: int):
    """``Q(f)`` for the ``rfft2`` frequencies of an ``height x width`` input: ``[F, out, in]``.

    ``W^(f) = conj(rfft2(C))`` where ``C`` is the kernel laid on the input's torus
    with its centre tap at the origin (``wrapped_kernel``); the conjugate turns the
    cross-correlation of ``conv2d`` into the product ``W^(f) x^(f)``.
    """
    c_out, c_in, k1, k2 = weight.shape
    centred = wrapped_kernel(weight, height, width)
    spectrum = torch.fft.rfft2(centred).conj()  # [out, in, H, W//2+1]
    scaled = spectrum * (alpha / weight.norm().clamp_min(torch.finfo(weight.dtype).tiny))
    return cayley(scaled.permute(2, 3, 0, 1).reshape(-1, c_out, c_in))


def wrapped_kernel(weight: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The kernel as a ``height x width`` circular filter: tap ``(i, j)`` goes to
    ``((i - (k1 - 1) // 2) mod height, (j - (k2 - 1) // 2) mod width)``, taps landing on
    the same place add up. The centre ``(k - 1) // 2`` is torch's ``padding="same"``
    (for even kernels the extra padding goes after the input), so the layer computes
    ``nn.Conv2d(padding="same", padding_mode="circular")`` of its transformed kernel.
    For inputs at least as large as the kernel this is zero padding and a roll; for
    smaller inputs it is exactly what a circular convolution with the full kernel computes
    there (the wrapped taps read the same pixels).
    """
    c_out, c_in, k1, k2 = weight.shape
    rows = (torch.arange(k1, device=weight.device) - (k1 - 1) // 2) % height
    cols = (torch.arange(k2, device=weight.device) - (k2 - 1) // 2) % width
    places = (rows[:, None] * width + cols[None, :]).reshape(-1)
    flat = weight.new_zeros(c_out, c_in, height * width)
    flat = flat.index_add(2, places, weight.reshape(c_out, c_in, k1 * k2))
    return flat.reshape(c_out, c_in, height, width)


def apply_frequency_weights(x: torch.Tensor, weights: torch.Tensor, bias) -> torch.Tensor:
    batch, c_in, height, width = x.shape
    spectrum = torch.fft.rfft2(x).permute(2, 3, 1, 0).reshape(-1, c_in, batch)
    product = weights @ spectrum.to(weights.dtype)  # [F, out, batch]
    product = product.reshape(height, width // 2 + 1, -1, batch).permute(3, 2, 0, 1)
    y = torch.fft.irfft2(product, s=(height, width))
    return y if bias is None else y + bias[None, :, None, None]


def cayley_lipschitz_bound(weight: torch.Tensor, alpha: torch.Tensor) -> float:
    """1 + the rounding allowance for a Cayley layer of ``weight`` (``[out, in, ...]``)."""
    channels = max(weight.shape[0], weight.shape[1])
    return 1.0 + rounding_allowance(weight.dtype, channels, scale_bound(weight, alpha))


def cached_lipschitz_bound(cache: VersionedCache, weight, alpha, power: int = 1) -> float:
    """``cayley_lipschitz_bound(weight, alpha) ** power``, kept in ``cache`` until a parameter
    changes: its frequency-grid SVDs cost seconds per conv layer, and certification asks for
    every layer's bound twice (the network bound, then the Lipschitz audit)."""
    return cache.get(
        "lipschitz_bound", (weight, alpha), lambda: cayley_lipschitz_bound(weight, alpha) ** power
    )


class _ScaledCayley(EvalModeCache):
    """``alpha``, a parameter from construction, and the eval-mode cache of the transform of
    ``alpha W / ||W||_F``."""

    def _add_state(self, device, dtype) -> None:
        super()._add_state(device, dtype)
        self.alpha = nn.Parameter(torch.empty((), device=device, dtype=dtype))


class ScaledCayleyConv2d(_ScaledCayley, LipschitzConv2d):
    """Base of the Cayley and sandwich convolutions: per-frequency weights ``Q(f)`` of each
    input size (``frequency_weights``), applied to the input by the class's ``apply_weights(x,
    weights, bias)``; circular padding, stride 1, 'same' size."""

    # a circular convolution: the Fourier transform diagonalises it exactly
    padding_modes = ("circular",)

    @staticmethod
    def apply_weights(x: torch.Tensor, weights: torch.Tensor, bias) -> torch.Tensor:
        raise NotImplementedError

    def _add_state(self, device, dtype) -> None:
        super()._add_state(device, dtype)
        self.last_input_size: tuple[int, int] | None = None

    def frequency_weights(self, height: int, width: int) -> torch.Tensor:
        """The transformed weights for an input size; cached (no gradient) in eval mode."""
        return self.cached(
            (height, width),
            (self.weight, self.alpha),
            lambda: frequency_weights(self.weight, self.alpha, height, width),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_image_input(x, self.in_channels)
        self.last_input_size = (x.shape[2], x.shape[3])
        weights = self.frequency_weights(*self.last_input_size)
        return self.apply_weights(x, weights, self.bias)

    def weight_transform(self) -> torch.Tensor:
        """The training-time transform for the last input size (timed by ``aol.engine.bench``)."""
        if self.last_input_size is None:
            raise RuntimeError(
                f"{type(self).__name__}'s transform depends on the input size: call forward first"
            )
        return frequency_weights(self.weight, self.alpha, *self.last_input_size)


class ScaledCayleyConv2dInference(nn.Module):
    """Frozen copy of a ``ScaledCayleyConv2d``: its weights computed once per input size and
    applied by the class's ``apply_weights``."""

    def __init__(self, layer: ScaledCayleyConv2d) -> None:
        super().__init__()
        self.in_channels = layer.in_channels
        self.out_channels = layer.out_channels
        self.kernel_size = layer.kernel_size
        self.weight = frozen_parameter(layer.weight)
        self.alpha = frozen_parameter(layer.alpha)
        self.bias = frozen_parameter(layer.bias)
        self._cache = VersionedCache()

    @staticmethod
    def apply_weights(x: torch.Tensor, weights: torch.Tensor, bias) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_image_input(x, self.in_channels)
        height, width = x.shape[2:]
        weights = self._cache.get(
            (height, width),
            (self.weight, self.alpha),
            lambda: frequency_weights(self.weight, self.alpha, height, width),
        )
        return self.apply_weights(x, weights, self.bias)


class ScaledCayleyLinear(_ScaledCayley, LipschitzLinear):
    """Base of the Cayley and sandwich dense layers: the matrix ``cayley(alpha W / ||W||_F)``."""

    def cayley_matrix(self) -> torch.Tensor:
        """``weight_transform()``; cached (no gradient) in eval mode."""
        return self.cached(None, (self.weight, self.alpha), self.weight_transform)

    def weight_transform(self) -> torch.Tensor:
        """``cayley(alpha W / ||W||_F)``: orthonormal columns or rows."""
        norm = self.weight.norm().clamp_min(torch.finfo(self.weight.dtype).tiny)
        return cayley(self.weight * (self.alpha / norm))


class _CayleyBase:
    """Initialisation and bound shared by the conv and dense Cayley layers."""

    def reset_parameters(self) -> None:
        # reference (locuslab/orthogonal-convolutions@543b0aa, layers.py): U(+-1/sqrt(fan_in))
        # weights and bias, alpha = ||W||
        bound = 1.0 / math.sqrt(self.weight[0].numel())
        nn.init.uniform_(self.weight, -bound, bound)
        with torch.no_grad():
            self.alpha.copy_(self.weight.norm())
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)
        self._cache.clear()

    def lipschitz_bound(self) -> float:
        return cached_lipschitz_bound(self._cache, self.weight, self.alpha)


class CayleyConv2d(_CayleyBase, ScaledCayleyConv2d):
    """Orthogonal circular convolution (stride 1, 'same' size) by the per-frequency Cayley map."""

    odd_kernel = False
    apply_weights = staticmethod(apply_frequency_weights)

    def multiply_adds(self, input_shape, batch_size: int) -> int:
        """1LLC Table 1: ``b s^2 c^2`` (per-frequency products) + ``s^2 c^3`` (inverses);
        FFTs are not counted there."""
        height, width = input_shape[-2:]
        small, large = sorted((self.in_channels, self.out_channels))
        return height * width * (batch_size * small * large + large * small**2)

    def export(self) -> CayleyConv2dInference:
        return CayleyConv2dInference(self)


class CayleyConv2dInference(ScaledCayleyConv2dInference):
    """Frozen copy of a ``CayleyConv2d``: transformed weights computed once per input size."""

    apply_weights = staticmethod(apply_frequency_weights)

    def lipschitz_bound(self) -> float:
        return cayley_lipschitz_bound(self.weight, self.alpha)


class CayleyLinear(_CayleyBase, ScaledCayleyLinear):
    """Dense layer ``y = cayley(alpha W / ||W||_F) x + b`` (orthogonal columns or rows)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.cayley_matrix(), self.bias)

    def multiply_adds(self, input_shape, batch_size: int) -> int:
        small, large = sorted((self.in_features, self.out_features))
        return batch_size * small * large + large * small**2

    def export(self) -> nn.Linear:
        with torch.no_grad():
            return plain_linear(self.weight_transform(), self.bias)


CAYLEY = LayerFamily(
    name="cayley",
    conv_factory=CayleyConv2d,
    linear_factory=CayleyLinear,
    description=(
        "Cayley orthogonal convolutions in the Fourier domain (Trockman & Kolter, ICLR 2021); "
        "bound 1 + rounding allowance"
    ),
)
