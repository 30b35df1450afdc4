"""Independent checks of Lipschitz bounds: exact Jacobians and power iteration.

These never look at a layer's own ``lipschitz_bound()``; they measure the map.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import jacrev, jvp, vjp


def _as_float64(module):
    """A float64 copy of a module; any other callable is used as it is."""
    if isinstance(module, nn.Module):
        return copy.deepcopy(module).to(torch.float64)
    return module


def _quiet_jvp(module, point: torch.Tensor, direction: torch.Tensor):
    """``torch.func.jvp`` without the FutureWarning torch prints when forward-mode AD first
    loads its decompositions (they are scripted with the deprecated ``torch.jit.script``
    inside torch; nothing a user of this project can act on)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.script", category=FutureWarning)
        return jvp(module, (point,), (direction,))


def exact_jacobian(module, x: torch.Tensor) -> torch.Tensor:
    """The full Jacobian of ``module`` at the single input ``x`` (shape ``[1, ...]``), in float64.

    ``module`` is an ``nn.Module`` (copied to float64) or any function of one tensor.
    Returns a ``[output_size, input_size]`` matrix. Memory grows with the product
    of the two sizes, so keep the input small (a few thousand entries).
    """
    if x.shape[0] != 1:
        raise ValueError(f"exact_jacobian takes one input with batch size 1, got {tuple(x.shape)}")
    model = _as_float64(module)
    point = x.detach().to(torch.float64)

    def flat_map(flat_input: torch.Tensor) -> torch.Tensor:
        return model(flat_input.reshape(point.shape)).reshape(-1)

    return jacrev(flat_map)(point.reshape(-1))


def jacobian_singular_values(
    module: nn.Module,
    input_shape: Sequence[int] | None = None,
    x: torch.Tensor | None = None,
    seed: int = 0,
) -> torch.Tensor:
    """Singular values (descending, float64) of the exact Jacobian of ``module``.

    Give either ``input_shape`` (one sample, without the batch dimension; the
    point is drawn from a seeded normal distribution) or the point ``x``. For a
    linear layer the Jacobian is the layer's operator, so ``[0]`` is its exact norm.
    """
    if x is None:
        if input_shape is None:
            raise ValueError("give input_shape or x")
        generator = torch.Generator().manual_seed(seed)
        x = torch.randn(1, *input_shape, generator=generator, dtype=torch.float64)
    return torch.linalg.svdvals(exact_jacobian(module, x))


@dataclass(frozen=True)
class PowerIterationResult:
    """``estimate`` is ``||J v||`` for a unit vector ``v``: never above the true norm."""

    estimate: float
    iterations: int
    converged: bool


def power_iteration(
    module: nn.Module,
    x: torch.Tensor,
    max_iterations: int = 1000,
    tolerance: float = 1e-6,
    seed: int = 0,
) -> PowerIterationResult:
    """Estimate the spectral norm of the Jacobian of ``module`` at ``x`` by power iteration on
    ``J^T J``, using ``torch.func.jvp`` for ``J v`` and ``torch.func.vjp`` for ``J^T u``.

    Works at any input size (no Jacobian is formed) and in the module's own dtype.
    Converged means the relative change of the estimate fell below ``tolerance``.
    For a batch of inputs the Jacobian is block diagonal, so the estimate is the
    largest norm over the batch.
    """
    point = x.detach()
    generator = torch.Generator(device="cpu").manual_seed(seed)
    direction = torch.randn(point.shape, generator=generator, dtype=point.dtype).to(point.device)
    direction = direction / direction.norm()
    _, pullback = vjp(module, point)
    estimate = 0.0
    for iteration in range(1, max_iterations + 1):
        _, image = _quiet_jvp(module, point, direction)
        new_estimate = image.norm().item()
        (back,) = pullback(image)
        back_norm = back.norm()
        if back_norm == 0:
            return PowerIterationResult(new_estimate, iteration, True)
        direction = back / back_norm
        change = abs(new_estimate - estimate)
        estimate = new_estimate
        if change <= tolerance * max(estimate, 1e-30):
            return PowerIterationResult(estimate, iteration, True)
    return PowerIterationResult(estimate, max_iterations, False)
