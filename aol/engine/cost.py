"""What a layer costs by the layer contract: multiply-adds and the training-time weight transform.

``python -m aol bench layers`` and ``python -m aol measure`` both use these, so "weight
transform" means the same thing in both: every constrained layer's ``weight_transform()``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from aol.nn.contract import LipschitzLayer


def module_multiply_adds(module: nn.Module, input_shape, batch_size: int) -> int | None:
    """Forward multiply-adds of one training step of ``module`` (1LLC Table 1 terms).

    A constrained layer states its own count (``multiply_adds``); plain ``nn.Conv2d`` and
    ``nn.Linear`` are counted here (``C = b s^2 c_in c_out k^2``). ``None``: a module with
    parameters and no known count; parameter-free modules count 0.
    """
    if isinstance(module, LipschitzLayer):
        return int(module.multiply_adds(input_shape, batch_size))
    if isinstance(module, nn.Conv2d):
        c_out, c_in, k1, k2 = module.weight.shape
        return batch_size * input_shape[-2] * input_shape[-1] * c_out * c_in * k1 * k2
    if isinstance(module, nn.Linear):
        n_out, n_in = module.weight.shape
        return batch_size * n_in * n_out
    if next(module.parameters(recurse=False), None) is None:
        return 0
    return None


def model_multiply_adds(model: nn.Module, x: torch.Tensor) -> int | None:
    """Sum of ``module_multiply_adds`` over the leaves, with input shapes seen in one forward."""
    shapes: dict[nn.Module, tuple[int, ...]] = {}

    def record(module: nn.Module, inputs: tuple) -> None:
        shapes.setdefault(module, tuple(inputs[0].shape[1:]))

    hooks = [
        module.register_forward_pre_hook(record)
        for module in model.modules()
        if module is not model
    ]
    try:
        with torch.no_grad():
            model(x[:1])
    finally:
        for hook in hooks:
            hook.remove()
    total = 0
    for module, shape in shapes.items():
        if next(module.children(), None) is not None and not isinstance(module, LipschitzLayer):
            continue  # a container: its leaves are counted
        count = module_multiply_adds(module, shape, x.shape[0])
        if count is None:
            return None
        total += count
    return total


def weight_transform(model: nn.Module) -> Callable[[], None] | None:
    """Run every constrained layer's ``weight_transform()`` (no input); None if there is none."""
    transforms = [
        module.weight_transform for module in model.modules() if isinstance(module, LipschitzLayer)
    ]
    if not transforms:
        return None

    def run_all() -> None:
        with torch.no_grad():
            for transform in transforms:
                transform()

    return run_all
