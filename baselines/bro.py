"""``bro``: Block Reflector Orthogonal layers (Lai, Huang, Kung, Chen, ICML 2025,
arXiv 2505.15174; code ntuaislab/BRONet@9d59c9b).

Dense: ``W = I - 2 V (V^T V)^-1 V^T`` with ``V`` of shape ``c x r`` (``r <= c``): a block
reflector, symmetric and orthogonal. Convolution: ``V`` is a ``k x k`` kernel with ``c``
output and ``r`` input channels; at each frequency ``f`` of the 2-D DFT of the canvas,
``W(f) = I - 2 V(f) (V(f)^H V(f) + eps I)^-1 V(f)^H``. A layer from ``c_in`` to ``c_out``
channels uses ``c = max(c_in, c_out)`` and the block ``W[:c_out, :c_in]`` (as the
reference's slice). The regulariser ``eps`` keeps the Gram matrix invertible; it makes
``W`` slightly contractive in the directions where ``V(f)`` is small (eigenvalues
``(eps - s^2) / (s^2 + eps)`` instead of -1) and never expansive.

Computed as a factor. With the Cholesky factor ``L L^H = V^H V + eps I`` and
``Y = V L^-H`` (a triangular solve), ``W = I - 2 Y Y^H``; the layer applies
``x - 2 Y (Y^H x)`` at each frequency and never forms ``W``. For *any* computed ``Y``
the applied operator is symmetric with spectrum in ``[1 - 2 ||Y||^2, 1]``, so its norm is
at most ``max(1, 2 ||Y||^2 - 1)``: the bound needs only ``||Y(f)|| <= 1 + small`` at every
frequency of every canvas size.

Bound (valid for every input size and both paddings; standard rounding model of Higham,
"Accuracy and Stability of Numerical Algorithms", 2nd ed., 2002). The transform runs in
float64 whatever the layer's dtype (``u`` = 2^-53). With ``B >= sup_f ||V(f)||`` (the
sum of the taps' Frobenius norms, for every size), ``gamma_m = S m u / (1 - S m u)``
(``S = ROUNDING_SAFETY`` covers complex arithmetic and blocked LAPACK kernels):

* ``B`` also bounds ``||V(f)||_F`` (triangle inequality over the taps). The computed Gram
  is ``V^H V + eps I + E1``, ``||E1|| <= gamma_(c+1) ||V||_F^2 <= gamma_(c+1) (B^2 + eps)``
  (§3.1), and the Cholesky factor satisfies ``L L^H = Gram + E2``,
  ``||E2|| <= gamma_(r+1) ||L||_F^2 <= gamma_(r+1) (B^2 + r eps)`` (Thm 10.3); with
  ``delta = (gamma_(c+1) + gamma_(r+1)) (B^2 + r eps) < eps``, ``Y' = V L^-H`` has
  ``||Y'||^2 <= s^2 / (s^2 + eps - delta) < 1`` (``s`` the singular values of ``V(f)``);
* each row of the triangular solve is exact for ``L + dL_i``, ``|dL_i| <= gamma_r |L|``
  (Thm 8.5), and ``||L^-1|| <= (eps - delta)^-1/2``, so ``||Y - Y'|| <= eta sqrt(r) ||Y||``
  with ``eta = gamma_r sqrt((B^2 + r eps) / (eps - delta))``;
* rounding ``Y`` to the layer's dtype (unit roundoff ``u_w``) adds at most
  ``u_w sqrt(r) ||Y||``.

Hence ``||Y|| <= (1 + u_w sqrt(r)) / (1 - eta sqrt(r)) =: s`` and
``lipschitz_bound() = max(1, 2 s^2 - 1)``. For a 3x3 layer of 64 channels at initialisation
it is 1 + 1.2e-8 in float64 and 1 + 1.4e-6 in float32 (512 channels: 7e-7 and 4.5e-6).
The FFT of the kernel needs no term: whatever ``V(f)`` it returns, ``Y`` is built from
that same ``V(f)`` (its size enters only through ``B``, enlarged by 1%).

Padding. ``"circular"`` (the default) applies the layer on the input's own torus: square
layers are then orthogonal (up to ``eps``). ``"zeros"`` pads the input by ``k // 2`` on
each side, applies the layer on that canvas (circularly) and crops, as the reference does:
an isometric embedding, the operator, a coordinate projection, so its norm is at most the
canvas operator's (the default differs from the reference: see docs/families.md).

Differences from the reference code, on purpose:

* The reference fixes the input size at construction and raises for others; here the
  per-frequency factors are computed for each input size (cached per size in eval mode),
  which the size-independent bound above allows.
* ``eps = EPSILON_RATIO * ||V||_F^2 / r`` with ``EPSILON_RATIO = 1e-6``: ``||V||_F^2 / r``
  is the mean diagonal of ``V(f)^H V(f)`` over all frequencies (Parseval), the same for
  every size. The reference takes 1e-5 times the mean diagonal per frequency
  (``lipconvnet/models/layers/bro.py``); 1e-6 keeps square circular layers orthogonal to
  1e-4 at random weights (1.6e-4 with 1e-5), and ``delta / eps`` stays below 2e-3 up to
  512 channels.
* The transform runs in float64 (the reference: the layer's dtype), so that ``eps``
  dominates its rounding and the bound above is small also for float32 layers.
* The rank is ``max(1, int(rank_ratio * c))`` for every shape, default 0.5
  (BRONet ``configs/benchmark_reproduce/cifar10.yaml``, ``backbone_weight_rank_ratio``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from aol.families import LayerFamily
from aol.nn.bounds import FLOAT64_SLACK
from aol.nn.cache import EvalModeCache, VersionedCache
from aol.nn.contract import (
    LipschitzConv2d,
    LipschitzLinear,
    check_image_input,
    frozen_parameter,
    plain_linear,
)
from baselines.cayley import wrapped_kernel

#: ``eps`` relative to the mean diagonal of the Gram matrices (a tenth of the reference's
#: 1e-5, ntuaislab/BRONet@9d59c9b ``lipconvnet/models/layers/bro.py``; module docstring).
EPSILON_RATIO = 1e-6
#: Columns of ``V`` per channel (BRONet ``configs/benchmark_reproduce/cifar10.yaml``).
RANK_RATIO = 0.5
#: Safety factor on Higham's ``gamma_m`` (complex arithmetic, blocked LAPACK kernels).
ROUNDING_SAFETY = 8.0
#: Enlargement of the kernel's norm bound covering the FFT's relative rounding.
FFT_MARGIN = 1.01


def rank_for(channels: int, rank_ratio: float) -> int:
    return max(1, int(rank_ratio * channels))


def regulariser(weight: torch.Tensor) -> torch.Tensor:
    """``eps = EPSILON_RATIO ||V||_F^2 / r`` of a (float64) ``V`` (``[c, r, ...]``)."""
    rank = weight.shape[1]
    tiny = torch.finfo(weight.dtype).tiny
    return (EPSILON_RATIO * weight.square().sum() / rank).clamp_min(tiny)


def reflector_factor(matrices: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """``Y = V L^-H`` with ``L L^H = V^H V + eps I`` for a batch ``[..., c, r]``:
    ``I - 2 Y Y^H`` is the (regularised) block reflector of ``V``."""
    rank = matrices.shape[-1]
    identity = torch.eye(rank, dtype=matrices.dtype, device=matrices.device)
    gram = matrices.mH @ matrices + eps * identity
    factor = torch.linalg.cholesky(gram)
    return torch.linalg.solve_triangular(factor, matrices.mH, upper=False).mH


def frequency_factors(weight: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``Y(f)`` for the ``rfft2`` frequencies of a ``height x width`` canvas: ``[F, c, r]``,
    computed in complex128 and returned in the complex dtype of ``weight``."""
    kernel = weight.to(torch.float64)
    channels, rank = kernel.shape[:2]
    spectrum = torch.fft.rfft2(wrapped_kernel(kernel, height, width)).conj()
    matrices = spectrum.permute(2, 3, 0, 1).reshape(-1, channels, rank)
    factors = reflector_factor(matrices, regulariser(kernel))
    return factors.to(torch.complex64 if weight.dtype != torch.float64 else torch.complex128)


def apply_reflector(x: torch.Tensor, factors: torch.Tensor, out_channels: int) -> torch.Tensor:
    """``(I - 2 Y Y^H)[:out, :in]`` applied at every frequency of ``x`` (``[F, in, b]``)."""
    in_channels = x.shape[1]
    projected = factors[:, :in_channels].mH @ x  # [F, r, b]
    reflected = factors[:, :out_channels] @ projected
    if out_channels <= in_channels:
        kept = x[:, :out_channels]
    else:
        kept = F.pad(x, (0, 0, 0, out_channels - in_channels))
    return kept - 2.0 * reflected


def bro_conv_forward(x, factors, out_channels: int, pad: int, bias) -> torch.Tensor:
    """Zero-pad by ``pad``, apply the per-frequency reflector on that canvas, crop."""
    batch, in_channels = x.shape[:2]
    if pad:
        x = F.pad(x, (pad, pad, pad, pad))
    height, width = x.shape[2:]
    spectrum = torch.fft.rfft2(x).permute(2, 3, 1, 0).reshape(-1, in_channels, batch)
    product = apply_reflector(spectrum.to(factors.dtype), factors, out_channels)
    product = product.reshape(height, width // 2 + 1, out_channels, batch).permute(3, 2, 0, 1)
    y = torch.fft.irfft2(product, s=(height, width))
    if pad:
        y = y[:, :, pad : height - pad, pad : width - pad]
    return y if bias is None else y + bias[None, :, None, None]


def gamma(terms: int) -> float:
    """Higham's ``gamma_m = m u / (1 - m u)`` for float64, times ``ROUNDING_SAFETY``."""
    scaled = ROUNDING_SAFETY * terms * torch.finfo(torch.float64).eps / 2
    return scaled / (1.0 - scaled)


def factor_norm_bound(weight: torch.Tensor, dtype: torch.dtype) -> float:
    """``s >= sup_f ||Y(f)||`` over every canvas size (module docstring), or ``inf``."""
    with torch.no_grad():
        kernel = weight.detach().to(torch.float64)
        channels, rank = kernel.shape[:2]
        eps = regulariser(kernel).item()
        taps = kernel.reshape(channels, rank, -1)
        norm_bound = FFT_MARGIN * taps.norm(dim=(0, 1)).sum().item()
    gram_bound = norm_bound**2 + rank * eps
    delta = (gamma(channels + 1) + gamma(rank + 1)) * gram_bound
    if delta >= eps:
        return math.inf
    solve_error = gamma(rank) * math.sqrt(gram_bound / (eps - delta)) * math.sqrt(rank)
    if solve_error >= 1.0:
        return math.inf
    cast_error = torch.finfo(dtype).eps / 2 * math.sqrt(rank) if dtype != torch.float64 else 0
    return (1.0 + cast_error) / (1.0 - solve_error)


def reflector_bound(factor_bound: float) -> float:
    """``max(1, 2 s^2 - 1)``: the norm of ``I - 2 Y Y^H`` when ``||Y|| <= s``."""
    return max(1.0, 2.0 * factor_bound**2 - 1.0) * (1.0 + FLOAT64_SLACK)


class _BROBase(EvalModeCache):
    """Options, initialisation and eval-mode cache shared by the conv and dense BRO layers."""

    options = ("rank_ratio",)

    def _set_options(self, *, rank_ratio: float = RANK_RATIO) -> None:
        if not 0 < rank_ratio <= 1:
            raise ValueError(f"rank_ratio must be in (0, 1], got {rank_ratio}")
        self.rank_ratio = rank_ratio

    def reset_parameters(self) -> None:
        # torch's default for convolutions and dense layers
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1.0 / math.sqrt(self.weight[0].numel())
            nn.init.uniform_(self.bias, -bound, bound)
        self._cache.clear()


class BROConv2d(_BROBase, LipschitzConv2d):
    """Block reflector convolution (stride 1, 'same' size), in the Fourier domain."""

    padding_modes = ("circular", "zeros")

    def _weight_shape(self) -> tuple[int, ...]:
        channels = max(self.in_channels, self.out_channels)
        return (channels, rank_for(channels, self.rank_ratio), *self.kernel_size)

    def _add_state(self, device, dtype) -> None:
        super()._add_state(device, dtype)
        self.last_canvas_size: tuple[int, int] | None = None

    @property
    def pad(self) -> int:
        return self.kernel_size[0] // 2 if self.padding_mode == "zeros" else 0

    def frequency_factors(self, height: int, width: int) -> torch.Tensor:
        """``Y(f)`` of a canvas size; cached (no gradient) in eval mode."""
        return self.cached(
            (height, width), (self.weight,), lambda: frequency_factors(self.weight, height, width)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_image_input(x, self.in_channels)
        canvas = (x.shape[2] + 2 * self.pad, x.shape[3] + 2 * self.pad)
        self.last_canvas_size = canvas
        factors = self.frequency_factors(*canvas)
        return bro_conv_forward(x, factors, self.out_channels, self.pad, self.bias)

    def weight_transform(self) -> torch.Tensor:
        """The factors ``Y(f)`` for the last canvas size (timed by ``aol.engine.bench``)."""
        if self.last_canvas_size is None:
            raise RuntimeError("the BRO transform depends on the input size: call forward first")
        return frequency_factors(self.weight, *self.last_canvas_size)

    def lipschitz_bound(self) -> float:
        return reflector_bound(factor_norm_bound(self.weight, self.weight.dtype))

    def multiply_adds(self, input_shape, batch_size: int) -> int:
        """Own count (BRO is not in 1LLC Table 1), per pixel of the canvas: ``b r (c_in +
        c_out)`` for ``Y (Y^H x)``, ``2 c r^2 + r^3 / 3`` for the Gram, Cholesky and
        triangular solve; FFTs not counted (as in Table 1)."""
        height, width = (size + 2 * self.pad for size in input_shape[-2:])
        channels, rank = self.weight.shape[:2]
        per_pixel = batch_size * rank * (self.in_channels + self.out_channels)
        per_pixel += 2 * channels * rank**2 + rank**3 // 3
        return height * width * per_pixel

    def export(self) -> BROConv2dInference:
        return BROConv2dInference(self)


class BROConv2dInference(nn.Module):
    """Frozen copy of a ``BROConv2d``: the factors computed once per input size."""

    def __init__(self, layer: BROConv2d) -> None:
        super().__init__()
        self.in_channels = layer.in_channels
        self.out_channels = layer.out_channels
        self.pad = layer.pad
        self.weight = frozen_parameter(layer.weight)
        self.bias = frozen_parameter(layer.bias)
        self._cache = VersionedCache()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_image_input(x, self.in_channels)
        canvas = (x.shape[2] + 2 * self.pad, x.shape[3] + 2 * self.pad)
        factors = self._cache.get(
            canvas, (self.weight,), lambda: frequency_factors(self.weight, *canvas)
        )
        return bro_conv_forward(x, factors, self.out_channels, self.pad, self.bias)

    def lipschitz_bound(self) -> float:
        return reflector_bound(factor_norm_bound(self.weight, self.weight.dtype))


def dense_reflector(weight: torch.Tensor, out_features: int, in_features: int) -> torch.Tensor:
    """``(I - 2 V (V^T V + eps I)^-1 V^T)[:out, :in]``, computed in float64 (``Y Y^T``)."""
    matrix = weight.to(torch.float64)
    factor = reflector_factor(matrix, regulariser(matrix))
    identity = torch.eye(matrix.shape[0], dtype=torch.float64, device=matrix.device)
    reflector = identity - 2.0 * factor @ factor.mT
    return reflector[:out_features, :in_features].to(weight.dtype)


class BROLinear(_BROBase, LipschitzLinear):
    """Dense block reflector ``y = (I - 2 V (V^T V + eps I)^-1 V^T)[:out, :in] x + b``."""

    def _weight_shape(self) -> tuple[int, ...]:
        features = max(self.in_features, self.out_features)
        return (features, rank_for(features, self.rank_ratio))

    def reflector(self) -> torch.Tensor:
        return self.cached(None, (self.weight,), self.weight_transform)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.reflector(), self.bias)

    def weight_transform(self) -> torch.Tensor:
        return dense_reflector(self.weight, self.out_features, self.in_features)

    def lipschitz_bound(self) -> float:
        """Largest singular value of the matrix actually used (float64 SVD), plus a margin
        for the SVD's rounding."""
        with torch.no_grad():
            matrix = self.weight_transform().detach().to(torch.float64)
            return torch.linalg.matrix_norm(matrix, ord=2).item() * (1.0 + FLOAT64_SLACK)

    def multiply_adds(self, input_shape, batch_size: int) -> int:
        """``b c_in c_out`` for the product, ``2 c r^2 + r^3 / 3 + c^2 r`` for the transform."""
        features, rank = self.weight.shape
        transform = 2 * features * rank**2 + rank**3 // 3 + features**2 * rank
        return batch_size * self.in_features * self.out_features + transform

    def export(self) -> nn.Linear:
        with torch.no_grad():
            return plain_linear(self.weight_transform(), self.bias)


BRO = LayerFamily(
    name="bro",
    conv_factory=BROConv2d,
    linear_factory=BROLinear,
    description=(
        "Block reflector orthogonal layers in the Fourier domain (Lai et al., ICML 2025); "
        "bound 1 + float64 rounding allowance"
    ),
)
