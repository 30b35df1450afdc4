"""``lot``: Layer-wise Orthogonal Training (Xu, Li & Li, NeurIPS 2022; code
AI-secure/Layerwise-Orthogonal-Training@65f7ea4).

A circular convolution on an ``n1 x n2`` canvas is block-diagonalised by the 2-D DFT (Sedghi,
Gupta & Long, ICLR 2019): frequency ``f`` gets the matrix ``V^(f)`` (``c_out x c_in``) of the
kernel parameter ``V``. LOT replaces it by its orthogonal polar factor
``W^(f) = (V^ V^H)^(-1/2) V^`` (paper Sec. 3), computed with ``t`` coupled Newton-Schulz steps on
``S = (V^ V^H + eps I) / N``, ``N = max_i sum_j |(V^ V^H + eps I)_ij| + eps``, ``eps = 1e-4``:

    Y_0 = S, Z_0 = I, T = (3 I - Z Y) / 2, Y <- Y T, Z <- T Z;   W^ = Z_t V^ / sqrt(N)

(``Z_t -> S^(-1/2)``; for ``c_out > c_in`` the same on ``V^H V`` from the right, which gives the
same polar factor with smaller matrices). The result is orthogonal for ``c_in == c_out`` and
circular padding, at every canvas size; its spatial kernel is as large as the canvas.

Paddings: ``circular`` (the canvas is the input: orthogonal) and ``zeros``, LOT's own zero
padding: pad ``k // 2`` zeros on each side, convolve circularly on that canvas, crop (an
isometric embedding, an orthogonal map and a coordinate projection: 1-Lipschitz, not orthogonal).

Bound, for every input size. In exact arithmetic ``W^ W^H = Z (S - eps/N I) Z <= Z S Z``, whose
eigenvalues are ``h^t(lambda)`` with ``h(g) = g (3 - g)^2 / 4`` mapping ``[0, 1]`` into ``[0, 1]``:
every truncation is contractive, at every frequency of every canvas. In floating point the
matrices used in eval mode are computed in complex128 and rounded once to the weights' dtype,
which moves each entry by at most ``u |w|`` and the norm by at most ``u ||W^||_F <= u sqrt(r)``
(``r = min(c_in, c_out)``, ``u`` the unit roundoff). ``lipschitz_bound()`` is therefore
``(1 + NEWTON_SCHULZ_SLACK) (1 + u sqrt(r))``, the same for every input size, and the layer makes
it guaranteed: in eval mode, before matrices for a new canvas are used, their float64 SVD norm
(plus ``aol.nn.bounds.FLOAT64_SLACK``) is checked against it, and a ``RuntimeError`` is raised if
it were exceeded (zoo: that would need a float64 Newton-Schulz error above 1e-8).

Differences from the reference code, on purpose:

* ``rfft2`` (half the frequencies; ``W^(-f) = conj(W^(f))``) instead of ``fft2``.
* ``N`` is the Schur bound (largest absolute row sum) instead of the Frobenius norm: both are
  ``>= ||S||``, so the spectrum of ``S`` stays in ``(0, 1]``, but for an orthogonal ``V^`` the
  Schur bound is exact and the iteration starts converged (the Frobenius norm puts it at
  ``1 / sqrt(c)``, which costs about ``log2(c) / 2`` extra steps).
* Eval-mode matrices in complex128, cached per input size (the reference's ``frozen_w_ortho``
  does the same but its training script never calls it); training steps use the weights' dtype.
* ``circular`` padding is offered (and the default); the reference has only its zero padding.
* The dense layer (the reference has none; its networks end in a 1x1 LOT convolution) applies the
  same Newton-Schulz map to one real matrix (3 steps, option ``iterations``), with the bound of
  the actual matrix (float64 SVD).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from aol.families import LayerFamily
from aol.nn.bounds import FLOAT64_SLACK
from aol.nn.cache import EvalModeCache
from aol.nn.contract import (
    IterationsOption,
    LipschitzConv2d,
    LipschitzLinear,
    check_image_input,
    plain_conv2d,
    plain_linear,
)
from baselines.cayley import apply_frequency_weights, wrapped_kernel

#: Newton-Schulz steps (LOT paper Sec. 4 and 1LLC: 10 in training and evaluation).
ITERATIONS = 10
#: Newton-Schulz steps of the dense layer (its own choice; the reference has no dense layer).
DENSE_ITERATIONS = 3
#: Added to the Gram matrix and its norm (the reference code's 1e-4).
EPSILON = 1e-4
#: Allowance for the float64 Newton-Schulz rounding in the stated bound (module docstring).
NEWTON_SCHULZ_SLACK = 1e-8


def newton_schulz_polar(matrices: torch.Tensor, iterations: int) -> torch.Tensor:
    """``(A A^H)^(-1/2) A`` of a batch ``[..., rows, columns]`` by coupled Newton-Schulz steps on
    the smaller Gram matrix (module docstring)."""
    rows, columns = matrices.shape[-2:]
    if rows > columns:
        return newton_schulz_polar(matrices.mH, iterations).mH
    identity = torch.eye(rows, dtype=matrices.dtype, device=matrices.device)
    gram = matrices @ matrices.mH + EPSILON * identity
    norm = gram.abs().sum(dim=-1).amax(dim=-1)[..., None, None] + EPSILON  # >= ||gram||
    y, z = gram / norm, identity.expand_as(gram)
    for _ in range(iterations):
        step = 0.5 * (3.0 * identity - z @ y)
        y, z = y @ step, step @ z
    return z @ matrices / norm.sqrt()


def kernel_spectrum(weight: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``V^(f)`` for the ``rfft2`` frequencies of a ``height x width`` canvas, ``[F, out, in]``
    (the conjugate turns ``conv2d``'s cross-correlation into a product)."""
    c_out, c_in = weight.shape[:2]
    spectrum = torch.fft.rfft2(wrapped_kernel(weight, height, width)).conj()
    return spectrum.permute(2, 3, 0, 1).reshape(-1, c_out, c_in)


def frequency_weights(weight: torch.Tensor, height: int, width: int, iterations: int):
    """The orthogonalised ``W^(f)``, ``[F, out, in]``, in the weights' complex dtype."""
    return newton_schulz_polar(kernel_spectrum(weight, height, width), iterations)


def verified_frequency_weights(weight, height: int, width: int, iterations: int, bound: float):
    """``W^(f)`` computed in complex128, rounded to the weights' complex dtype, and checked:
    float64 SVD norm times ``1 + FLOAT64_SLACK`` at most ``bound`` (else ``RuntimeError``)."""
    exact = frequency_weights(weight.to(torch.float64), height, width, iterations)
    complex_dtype = torch.complex128 if weight.dtype == torch.float64 else torch.complex64
    weights = exact.to(complex_dtype)
    norm = torch.linalg.matrix_norm(weights.to(torch.complex128), ord=2).max().item()
    if norm * (1.0 + FLOAT64_SLACK) > bound:
        raise RuntimeError(
            f"LOT matrices for a {height}x{width} canvas have norm {norm}, above the stated "
            f"bound {bound}; use float64 weights or report this as a bug"
        )
    return weights


def conv_lipschitz_bound(weight: torch.Tensor) -> float:
    """``(1 + NEWTON_SCHULZ_SLACK) (1 + u sqrt(min(c_in, c_out)))`` (module docstring)."""
    unit_roundoff = torch.finfo(weight.dtype).eps / 2
    rank = min(weight.shape[0], weight.shape[1])
    return (1.0 + NEWTON_SCHULZ_SLACK) * (1.0 + unit_roundoff * math.sqrt(rank))


class _LOTBase(IterationsOption, EvalModeCache):
    """Option ``iterations``, eval-mode cache and initialisation shared by the LOT conv and
    dense layers."""

    default_iterations = ITERATIONS

    def reset_parameters(self) -> None:
        # the reference: Dirac (identity) kernel for square layers, torch's default otherwise
        if self.weight.shape[0] == self.weight.shape[1]:
            nn.init.dirac_(self.weight) if self.weight.dim() == 4 else nn.init.eye_(self.weight)
        else:
            nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            nn.init.zeros_(self.bias)
        self._cache.clear()


class LOTConv2d(_LOTBase, LipschitzConv2d):
    """LOT convolution: per-frequency polar factor of the kernel's spectrum (module docstring)."""

    padding_modes = ("circular", "zeros")

    def _add_state(self, device, dtype) -> None:
        super()._add_state(device, dtype)
        self.last_canvas_size: tuple[int, int] | None = None

    @property
    def pointwise(self) -> bool:
        """A 1x1 kernel has the same matrix at every frequency: one polar factor, applied as a
        plain 1x1 convolution, bounded by the float64 SVD norm of that matrix (every size)."""
        return self.kernel_size == (1, 1)

    def pointwise_matrix(self) -> torch.Tensor:
        """The polar factor of a 1x1 kernel: recomputed while training, else cached."""
        return self.cached(
            None,
            (self.weight,),
            lambda: newton_schulz_polar(self.weight[:, :, 0, 0], self.iterations),
        )

    def canvas_padding(self) -> tuple[int, int]:
        """Zeros added on each side before the circular convolution (``zeros`` mode)."""
        if self.padding_mode == "circular":
            return 0, 0
        return self.kernel_size[0] // 2, self.kernel_size[1] // 2

    def frequency_weights(self, height: int, width: int) -> torch.Tensor:
        """``W^(f)`` for a canvas size; in eval mode cached and checked against the bound."""
        if self.training:
            return frequency_weights(self.weight, height, width, self.iterations)
        return self._cache.get(
            (height, width),
            (self.weight,),
            lambda: verified_frequency_weights(
                self.weight, height, width, self.iterations, self.lipschitz_bound()
            ),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_image_input(x, self.in_channels)
        if self.pointwise:
            return F.conv2d(x, self.pointwise_matrix()[:, :, None, None], self.bias)
        pad_rows, pad_columns = self.canvas_padding()
        if pad_rows or pad_columns:
            x = F.pad(x, (pad_columns, pad_columns, pad_rows, pad_rows))
        self.last_canvas_size = (x.shape[2], x.shape[3])
        y = apply_frequency_weights(x, self.frequency_weights(*self.last_canvas_size), None)
        y = y[:, :, pad_rows : y.shape[2] - pad_rows, pad_columns : y.shape[3] - pad_columns]
        return y if self.bias is None else y + self.bias[None, :, None, None]

    def lipschitz_bound(self) -> float:
        if self.pointwise:
            with torch.no_grad():
                matrix = self.pointwise_matrix().to(torch.float64)
                return torch.linalg.matrix_norm(matrix, ord=2).item() * (1.0 + FLOAT64_SLACK)
        return conv_lipschitz_bound(self.weight)

    def weight_transform(self) -> torch.Tensor:
        """The training-time transform for the last canvas size (timed by ``aol.engine.bench``)."""
        if self.pointwise:
            return newton_schulz_polar(self.weight[:, :, 0, 0], self.iterations)
        if self.last_canvas_size is None:
            raise RuntimeError("the LOT transform depends on the input size: call forward first")
        return frequency_weights(self.weight, *self.last_canvas_size, self.iterations)

    def multiply_adds(self, input_shape, batch_size: int) -> int:
        """Complex multiply-adds per ``rfft2`` frequency ``F`` of the canvas: ``b c_in c_out``
        (products) + ``c_in c_out r`` (Gram) + ``3 t r^3`` (Newton-Schulz) + ``c_in c_out r``
        (``Z V^``), ``r = min(c_in, c_out)``; FFTs not counted (1LLC Table 1 counts the full
        spectrum and ``4 t c^3``). A 1x1 kernel: ``C`` plus one matrix's transform."""
        c_in, c_out = self.in_channels, self.out_channels
        rank = min(c_in, c_out)
        transform = 2 * c_in * c_out * rank + 3 * self.iterations * rank**3
        if self.pointwise:
            return self.convolution_multiply_adds(input_shape, batch_size) + transform
        pad_rows, pad_columns = self.canvas_padding()
        height, width = input_shape[-2] + 2 * pad_rows, input_shape[-1] + 2 * pad_columns
        frequencies = height * (width // 2 + 1)
        return frequencies * (batch_size * c_in * c_out + transform)

    def export(self) -> nn.Module:
        if self.pointwise:
            matrix = self.pointwise_matrix()[:, :, None, None]
            return plain_conv2d(matrix, self.bias, self.padding_mode)
        return LOTConv2dInference(self)


class LOTConv2dInference(nn.Module):
    """Frozen copy of a ``LOTConv2d``: checked matrices computed once per canvas size."""

    def __init__(self, layer: LOTConv2d) -> None:
        super().__init__()
        self.source = LOTConv2d(
            layer.in_channels, layer.out_channels, layer.kernel_size,
            bias=layer.bias is not None, padding_mode=layer.padding_mode,
            iterations=layer.iterations, device=layer.weight.device, dtype=layer.weight.dtype,
        )  # fmt: skip
        self.source.load_state_dict(layer.state_dict())
        self.source.requires_grad_(False)
        self.source.train(False)

    def train(self, mode: bool = True) -> LOTConv2dInference:
        """An exported layer has one path: the wrapped layer stays in eval mode (its cached,
        checked matrices) even when a parent module is put in training mode."""
        super().train(mode)
        self.source.train(False)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.source(x)

    def lipschitz_bound(self) -> float:
        return self.source.lipschitz_bound()


class LOTLinear(_LOTBase, LipschitzLinear):
    """Dense layer ``y = (V V^T)^(-1/2) V x + b`` by the same Newton-Schulz steps (orthonormal
    rows or columns); bound: the float64 SVD norm of the matrix actually used."""

    default_iterations = DENSE_ITERATIONS

    def weight_transform(self) -> torch.Tensor:
        return newton_schulz_polar(self.weight, self.iterations)

    def _frozen_transform(self) -> torch.Tensor:
        return self._cache.get(None, (self.weight,), self.weight_transform)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight_transform() if self.training else self._frozen_transform()
        return F.linear(x, weight, self.bias)

    def lipschitz_bound(self) -> float:
        matrix = self._frozen_transform().to(torch.float64)
        return torch.linalg.matrix_norm(matrix, ord=2).item() * (1.0 + FLOAT64_SLACK)

    def multiply_adds(self, input_shape, batch_size: int) -> int:
        """``b n m`` + ``2 n m^2`` (Gram, product) + ``3 t m^3`` (Newton-Schulz), ``m <= n``."""
        small, large = sorted((self.in_features, self.out_features))
        return batch_size * small * large + 2 * large * small**2 + 3 * self.iterations * small**3

    def export(self) -> nn.Linear:
        return plain_linear(self._frozen_transform(), self.bias)


LOT = LayerFamily(
    name="lot",
    conv_factory=LOTConv2d,
    linear_factory=LOTLinear,
    description=(
        "Layer-wise Orthogonal Training (Xu et al., NeurIPS 2022): Newton-Schulz polar factor "
        "per frequency; bound 1 + rounding, checked on every canvas"
    ),
)
