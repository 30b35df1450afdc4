"""Cost of one architecture x family: training step, exported inference, weight transform,
peak training memory (lipschitz_compared.md §3, done with warm-up, repeats, median/IQR and
CUDA-synchronised timing, which 1LLC lacked).

* training step: forward, offset cross-entropy, backward, SGD (Nesterov) step on a batch
  of random [0, 1] inputs of the dataset's shape;
* inference: ``aol.export(model)`` in eval mode under ``torch.no_grad``;
* weight transform: ``export()`` of every constrained layer (computing the weights the
  inference model uses), under ``torch.no_grad``;
* peak memory: ``aol.memory.peak_training_memory`` over 3 steps of a fresh optimiser,
  so momentum buffers are counted.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

import aol
from aol import architectures, data, families
from aol.audit import constrained_layers
from aol.loss import OffsetCrossEntropy
from aol.memory import peak_training_memory
from aol.runtime import environment
from aol.timing import interleaved_timings

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

    layers = [layer for _, layer in constrained_layers(model)]

    def weight_transform() -> None:
        with torch.no_grad():
            for layer in layers:
                if hasattr(layer, "export"):
                    layer.export()

    timings = interleaved_timings(
        {"train": training_step, "inference": inference, "transform": weight_transform},
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
        "weight_transform_seconds": as_dict(timings["transform"]),
        "warmup": config.warmup,
        "peak_train_memory_bytes": memory.bytes,
        "memory_method": memory.method,
        "memory_steps": MEMORY_STEPS,
        "num_parameters": sum(p.numel() for p in model.parameters()),
    }
