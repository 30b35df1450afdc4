"""What a layer costs by the layer contract: multiply-adds, and the things that are timed.

``python -m aol bench layers`` and ``python -m aol measure`` both build their candidates from
these, so a "training step", "inference" and "weight transform" mean the same thing in both:

* training step: ``forward_loss()``, backward, one SGD step (lr 1e-6, momentum 0.9) of an
  optimiser made once for the step;
* inference: a forward of the model in eval mode under ``torch.no_grad``;
* weight transform: every constrained layer's ``weight_transform()``, under ``torch.no_grad``;
* peak training memory: ``aol.engine.memory.peak_training_memory`` over a few steps of a
  fresh optimiser, so that momentum buffers are counted.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from aol.engine.memory import PeakMemory, peak_training_memory
from aol.nn.contract import LipschitzLayer

# the family every cost is divided by: plain convolutions and dense layers
REFERENCE_FAMILY = "standard"


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


def _optimiser(model: nn.Module, nesterov: bool) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=1e-6, momentum=0.9, nesterov=nesterov)


def training_step(
    model: nn.Module, forward_loss: Callable[[], torch.Tensor], nesterov: bool = False
) -> Callable[[], None]:
    """One training step of ``model`` on the loss ``forward_loss()`` computes, as a closure."""
    optimiser = _optimiser(model, nesterov)
    model.train()

    def step() -> None:
        if not model.training:
            raise RuntimeError("the timed training step found its model in eval mode")
        optimiser.zero_grad(set_to_none=True)
        forward_loss().backward()
        optimiser.step()

    return step


def inference(model: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    """A forward of ``model`` in eval mode on ``x``, without autograd, as a closure."""
    model.eval()

    def forward() -> None:
        with torch.no_grad():
            model(x)

    return forward


def training_memory(
    model: nn.Module,
    forward_loss: Callable[[], torch.Tensor],
    device: torch.device,
    steps: int = 3,
    nesterov: bool = False,
) -> PeakMemory:
    """Peak memory of ``steps`` training steps of a fresh optimiser (momentum counted)."""
    model.train()
    return peak_training_memory(forward_loss, _optimiser(model, nesterov), device, steps)
