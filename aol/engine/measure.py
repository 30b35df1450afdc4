"""Cost of one architecture x family: training step, exported inference, weight transform,
peak training memory (Prach et al., CVPR 2024, Sec. 4.1, done with warm-up, repeats, median/IQR and
CUDA-synchronised timing, which 1LLC lacked).

* training step: forward, offset cross-entropy, backward, SGD (Nesterov) step on a batch
  of random [0, 1] inputs of the dataset's shape;
* inference: ``aol.export(model)`` in eval mode under ``torch.no_grad``;
* weight transform: ``weight_transform()`` of every constrained layer (what a training
  step computes from the parameters; ``aol.engine.cost``), under ``torch.no_grad``;
* peak memory: ``aol.engine.memory.peak_training_memory`` over 3 steps of a fresh optimiser,
  so momentum buffers are counted.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

import aol
from aol import architectures, families
from aol.engine import data
from aol.engine.cost import weight_transform
from aol.engine.memory import peak_training_memory
from aol.engine.runtime import environment
from aol.engine.timing import interleaved_timings
from aol.loss import OffsetCrossEntropy

MEMORY_STEPS = 3


@dataclass(frozen=True)
class MeasureConfig:
    architecture: str
    family: str
    dataset: str
    batch_size: int
    device: torch.device
    repeats: int = 10
    warmup: int = 2
    seed: int = 0


def measure(config: MeasureConfig) -> dict:
    info = data.info(config.dataset)
    torch.manual_seed(config.seed)
    model = architectures.build(
        config.architecture,
        families.get(config.family),
        info.num_classes,
        info.channels,
        info.image_size,
    ).to(config.device)
    shape = (config.batch_size, info.channels, info.image_size, info.image_size)
    images = torch.rand(shape, device=config.device)
    labels = torch.randint(0, info.num_classes, (config.batch_size,), device=config.device)
    loss_fn = OffsetCrossEntropy()
    optimiser = torch.optim.SGD(model.parameters(), lr=1e-6, momentum=0.9, nesterov=True)

    def training_step() -> None:
        optimiser.zero_grad(set_to_none=True)
        loss_fn(model(images), labels).backward()
        optimiser.step()

    exported = aol.export(model)

    def inference() -> None:
        with torch.no_grad():
            exported(images)

    candidates = {"train": training_step, "inference": inference}
    transform = weight_transform(model)
    if transform is not None:
        candidates["transform"] = transform
    timings = interleaved_timings(
        candidates,
        config.device,
        repeats=config.repeats,
        warmup=config.warmup,
    )
    fresh_optimiser = torch.optim.SGD(model.parameters(), lr=1e-6, momentum=0.9, nesterov=True)
    memory = peak_training_memory(
        lambda: loss_fn(model(images), labels), fresh_optimiser, config.device, MEMORY_STEPS
    )

    def as_dict(timing) -> dict:
        return {
            "median": timing.median,
            "q1": timing.q1,
            "q3": timing.q3,
            "repeats": timing.repeats,
        }

    return {
        "architecture": config.architecture,
        "family": config.family,
        "dataset": config.dataset,
        "batch_size": config.batch_size,
        **environment(config.device),
        "train_step_seconds": as_dict(timings["train"]),
        "inference_seconds": as_dict(timings["inference"]),
        "weight_transform_seconds": (
            as_dict(timings["transform"]) if "transform" in timings else None
        ),
        "warmup": config.warmup,
        "peak_train_memory_bytes": memory.bytes,
        "memory_method": memory.method,
        "memory_steps": MEMORY_STEPS,
        "num_parameters": sum(p.numel() for p in model.parameters()),
    }
