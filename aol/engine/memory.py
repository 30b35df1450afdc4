"""Peak memory of a training step, on CUDA and on CPU.

CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``,
over several steps so that optimiser state exists, minus what was allocated
before (the method of Prach et al., CVPR 2024, Sec. 4.1, which we keep).

CPU: PyTorch has no allocator statistics for CPU tensors, so we count the
memory a training step must hold at its peak (the start of the backward pass):
parameters + gradients + optimiser state + every tensor autograd saves for the
backward pass (unique storages, seen through ``saved_tensors_hooks``). This is
the quantity of the "training memory" columns of 1LLC's Table 1 (M per input
transform, 5P for AOL's weight transform). It leaves out short-lived temporaries
of single operations, so it is a lower bound on the process's true peak, but it
is deterministic and counts the same things for every family.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch

CUDA_METHOD = "cuda max_memory_allocated over the steps, minus memory allocated before"
CPU_METHOD = (
    "parameters + gradients + optimiser state + unique tensors saved for backward, "
    "counted as held at once"
)


@dataclass(frozen=True)
class PeakMemory:
    bytes: int
    method: str


def _storage_bytes(tensors: Iterable[torch.Tensor]) -> int:
    seen: dict[int, int] = {}
    for tensor in tensors:
        if tensor is None or not isinstance(tensor, torch.Tensor) or tensor.device.type == "meta":
            continue
        storage = tensor.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
    return sum(seen.values())


def _optimiser_state_tensors(optimiser: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [
        value
        for state in optimiser.state.values()
        for value in state.values()
        if isinstance(value, torch.Tensor)
    ]


def peak_training_memory(
    forward_loss: Callable[[], torch.Tensor],
    optimiser: torch.optim.Optimizer,
    device: torch.device,
    steps: int = 3,
) -> PeakMemory:
    """Peak memory of ``steps`` training steps (``forward_loss()``, backward, optimiser step)."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    parameters = [p for group in optimiser.param_groups for p in group["params"]]

    def one_step() -> None:
        optimiser.zero_grad(set_to_none=True)
        forward_loss().backward()
        optimiser.step()

    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        for _ in range(steps):
            one_step()
        torch.cuda.synchronize(device)
        return PeakMemory(torch.cuda.max_memory_allocated(device) - before, CUDA_METHOD)

    saved: list[torch.Tensor] = []

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        saved.append(tensor)
        return tensor

    peak = 0
    for _ in range(steps):
        optimiser.zero_grad(set_to_none=True)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            loss = forward_loss()
        held = _storage_bytes([*parameters, *saved, loss, *_optimiser_state_tensors(optimiser)])
        saved.clear()
        loss.backward()
        optimiser.step()
        gradients = _storage_bytes(p.grad for p in parameters)
        peak = max(peak, held + gradients)
    return PeakMemory(peak, CPU_METHOD)
