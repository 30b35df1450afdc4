"""``spectral``: spectral normalisation of the convolution *operator*.

Miyato et al.'s spectral normalisation of the reshaped kernel does not bound a
convolution (its norm can be ~2x the reshaped norm). Here the power
iteration runs on the convolution itself, with the layer's padding, as in
Gouk et al. (arXiv 1804.04368) and Farnia et al. (ICLR 2019): a persistent unit
vector ``v`` of one input's shape is updated by ``v <- A^T A v / ||A^T A v||``
(``conv2d`` then ``conv_transpose2d``) in every training forward, and the layer
computes ``conv(x, W / sigma) + b`` with ``sigma = ||A v||``, differentiable in
``W`` (its gradient is ``u v^T``, ``u = A v / ||A v||``, Miyato's gradient).

* ``v`` is a buffer (saved in the ``state_dict``); its spatial size follows the
  training input: a new size draws a new ``v`` and runs up to
  ``warmup_iterations`` iterations (stopping when ``sigma`` settles).
* In eval mode ``v`` is frozen and ``sigma`` is computed from it, so the layer
  is the same linear map for every input size and ``export()`` bakes
  ``W / sigma`` into a plain ``nn.Conv2d``.
* ``sigma`` approaches the norm from below, so ``W / sigma`` may have norm
  slightly above 1. ``lipschitz_bound()`` is therefore not 1 but
  ``B(W) / sigma`` with ``B`` the guaranteed bound
  ``aol.nn.bounds.frequency_norm_bound`` (exact per-frequency norms on a
  fine grid, Sedghi et al. ICLR 2019, plus a Bernstein-inequality margin for
  the frequencies between grid points). It holds for zero and circular
  padding at every input size.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from aol.families import LayerFamily
from aol.nn.bounds import frequency_norm_bound
from aol.nn.contract import (
    LipschitzConv2d,
    LipschitzLinear,
    check_image_input,
    plain_conv2d,
    plain_linear,
    same_size_conv2d,
)
from aol.nn.init import initialise_kernel, initialise_matrix

#: Iterations after a new vector is drawn (SOC's code, singlasahil14/SOC@561c7ac, uses 50
#: at initialisation).
WARMUP_ITERATIONS = 100

#: Size of the vector drawn at construction, before any training input is seen.
INITIAL_VECTOR_SIZE = 8


def _normalised(tensor: torch.Tensor) -> torch.Tensor:
    return tensor / tensor.norm().clamp_min(torch.finfo(tensor.dtype).tiny)


class _PowerIterationNormalised:
    """Persistent power iteration on ``A^T A``; subclasses define ``A`` and ``A^T``."""

    options = ("power_iterations",)

    def _set_options(
        self, *, power_iterations: int = 1, warmup_iterations: int = WARMUP_ITERATIONS
    ) -> None:
        if power_iterations < 1 or warmup_iterations < 1:
            raise ValueError("power_iterations and warmup_iterations must be >= 1")
        self.power_iterations = power_iterations
        self.warmup_iterations = warmup_iterations

    def _apply_operator(self, v: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _apply_adjoint(self, u: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _iterate(self, iterations: int, tolerance: float = 0.0) -> None:
        if self.weight.device.type == "meta":  # shapes only (e.g. counting parameters)
            return
        with torch.no_grad():
            v = self.right_vector
            weight = self.weight.detach()
            previous = 0.0
            for _ in range(iterations):
                image = self._apply_operator(v, weight)
                v = _normalised(self._apply_adjoint(image, weight))
                estimate = image.norm().item() if tolerance > 0 else 0.0
                if tolerance > 0 and abs(estimate - previous) <= tolerance * estimate:
                    break
                previous = estimate
            self.right_vector.copy_(v)

    def _redraw_vector(self, shape: tuple[int, ...]) -> None:
        with torch.no_grad():
            fresh = torch.randn(shape, dtype=self.weight.dtype, device=self.weight.device)
            self.right_vector = _normalised(fresh)
        tolerance = 100 * torch.finfo(self.weight.dtype).eps
        self._iterate(self.warmup_iterations, tolerance=max(tolerance, 1e-13))

    def sigma(self) -> torch.Tensor:
        """``||A v||`` for the stored unit ``v``: at most the norm, differentiable in ``W``."""
        # a copy: the graph must not see later in-place updates of the buffer
        image = self._apply_operator(self.right_vector.clone(), self.weight)
        return image.norm().clamp_min(torch.finfo(self.weight.dtype).tiny)

    def _update(self, vector_shape: tuple[int, ...]) -> None:
        if tuple(self.right_vector.shape) != vector_shape:
            self._redraw_vector(vector_shape)
        else:
            self._iterate(self.power_iterations)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        stored = state_dict.get(prefix + "right_vector")
        if stored is not None and stored.shape != self.right_vector.shape:
            self.right_vector = torch.empty_like(stored, device=self.right_vector.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def normalised_weight(self) -> torch.Tensor:
        return self.weight / self.sigma()

    def weight_transform(self) -> torch.Tensor:
        """The training-time transform: power iteration step(s), then ``W / sigma``."""
        self._iterate(self.power_iterations)
        return self.normalised_weight()

    def multiply_adds(self, input_shape, batch_size: int) -> int:
        """The layer (``C``) plus, per power-iteration step, ``A v``, ``A^T u`` and ``sigma``
        on one input (1LLC Table 1 counts CPL's power method as ``s^2 c^2 k^2``)."""
        per_sample = self._apply_operator_multiply_adds(input_shape)
        return per_sample * (batch_size + 2 * self.power_iterations + 1)

    def lipschitz_bound(self) -> float:
        """``B(W) / sigma`` in float64, ``B`` guaranteed (``frequency_norm_bound``)."""
        with torch.no_grad():
            weight = self.weight.detach().to(torch.float64)
            vector = self.right_vector.to(torch.float64)
            sigma = self._apply_operator(vector, weight).norm().item()
            if sigma <= 0:
                return math.inf
            # the forward divides by sigma computed in the layer's dtype: allow for its rounding
            rounding = 1.0 + 8 * torch.finfo(self.weight.dtype).eps
            return frequency_norm_bound(weight) / sigma * rounding


class SpectralConv2d(_PowerIterationNormalised, LipschitzConv2d):
    """``conv(x, W / sigma) + b``, ``sigma`` by power iteration on the padded convolution."""

    def _add_state(self, device, dtype) -> None:
        size = max(INITIAL_VECTOR_SIZE, *self.kernel_size)
        vector = torch.empty(1, self.in_channels, size, size, device=device, dtype=dtype)
        self.register_buffer("right_vector", vector)

    def reset_parameters(self) -> None:
        # AOL's paper initialisation (Dirac / orthogonal centre tap): a normalised *random*
        # kernel shrinks typical inputs ~2x per layer, so a deep stack starts with vanishing
        # signal and gradients (aol-digits stayed at chance accuracy with torch's init)
        initialise_kernel(self.weight, "paper")
        with torch.no_grad():
            if self.bias is not None:
                self.bias.zero_()
        self._redraw_vector(tuple(self.right_vector.shape))

    def _apply_operator(self, v, weight):
        return same_size_conv2d(v, weight, None, self.padding_mode)

    def _apply_operator_multiply_adds(self, input_shape) -> int:
        return self.convolution_multiply_adds(input_shape, 1)

    def _apply_adjoint(self, u, weight):
        """``A^T u``: the vector-Jacobian product of the (linear) padded convolution."""
        with torch.enable_grad():
            probe = u.new_zeros(1, self.in_channels, *u.shape[2:]).requires_grad_()
            image = same_size_conv2d(probe, weight, None, self.padding_mode)
            (adjoint,) = torch.autograd.grad(image, probe, u)
        return adjoint

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_image_input(x, self.in_channels)
        if self.training:
            self._update((1, self.in_channels, x.shape[2], x.shape[3]))
        return same_size_conv2d(x, self.normalised_weight(), self.bias, self.padding_mode)

    def export(self) -> nn.Conv2d:
        return plain_conv2d(self.normalised_weight(), self.bias, self.padding_mode)


class SpectralLinear(_PowerIterationNormalised, LipschitzLinear):
    """``y = W x / sigma + b`` with ``sigma`` by persistent power iteration (Miyato et al. 2018)."""

    def _add_state(self, device, dtype) -> None:
        vector = torch.empty(self.in_features, device=device, dtype=dtype)
        self.register_buffer("right_vector", vector)

    def reset_parameters(self) -> None:
        initialise_matrix(self.weight, "paper")  # identity / orthogonal, as for AOL
        with torch.no_grad():
            if self.bias is not None:
                self.bias.zero_()
        self._redraw_vector((self.in_features,))

    def _apply_operator(self, v, weight):
        return weight @ v

    def _apply_operator_multiply_adds(self, input_shape) -> int:
        return self.in_features * self.out_features

    def _apply_adjoint(self, u, weight):
        return weight.T @ u

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self._update((self.in_features,))
        return F.linear(x, self.normalised_weight(), self.bias)

    def export(self) -> nn.Linear:
        return plain_linear(self.normalised_weight(), self.bias)


SPECTRAL = LayerFamily(
    name="spectral",
    conv_factory=SpectralConv2d,
    linear_factory=SpectralLinear,
    description=(
        "spectral normalisation of the convolution operator by persistent power iteration "
        "(Gouk et al. 2021, Miyato et al. 2018); guaranteed bound B(W)/sigma"
    ),
)
