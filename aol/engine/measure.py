"""Cost of several families in one architecture, side by side: training step, exported
inference, weight transform, peak training memory (Prach et al., CVPR 2024, Sec. 4.1, done with
warm-up, repeats, median/IQR and CUDA-synchronised timing, which 1LLC lacked).

Every family named, and ``standard`` as the reference, is built in one process and timed
interleaved, round by round (``aol.engine.timing.interleaved_timings``): each round runs every
family's training step, inference of its exported model and its weight transform. Machine load
then falls on all families alike, so the ratios to ``standard`` compare like with like.

* training step: forward, offset cross-entropy, backward, SGD (Nesterov) step on a batch
  of random [0, 1] inputs of the dataset's shape (the same batch for every family);
* inference: ``aol.export(model)`` in eval mode under ``torch.no_grad``;
* weight transform: ``weight_transform()`` of every constrained layer (``aol.engine.cost``),
  under ``torch.no_grad``; none for a family without constrained layers;
* peak memory: ``aol.engine.cost.training_memory`` over 3 steps of a fresh optimiser, so
  momentum buffers are counted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

import aol
from aol import architectures, families
from aol.engine import data
from aol.engine.cost import (
    REFERENCE_FAMILY,
    inference,
    training_memory,
    training_step,
    weight_transform,
)
from aol.engine.memory import PeakMemory
from aol.engine.runtime import environment
from aol.engine.timing import Timing, interleaved_timings
from aol.loss import OffsetCrossEntropy

MEMORY_STEPS = 3


@dataclass(frozen=True)
class MeasureConfig:
    architecture: str
    families: tuple[str, ...]
    dataset: str
    batch_size: int
    device: torch.device
    repeats: int = 10
    warmup: int = 2
    seed: int = 0


def measured_families(requested) -> list[str]:
    """The reference family first, then the requested ones in their order, each once."""
    return list(dict.fromkeys([REFERENCE_FAMILY, *requested]))


def measure(config: MeasureConfig) -> dict:
    """The shared facts of the run, and one record per family (``families``)."""
    info = data.info(config.dataset)
    images, labels = random_batch(info, config)
    models = {name: build_model(config, info, name) for name in measured_families(config.families)}
    timings = time_interleaved(models, images, labels, config)
    records = {}
    for name, model in models.items():
        loss = classification_loss(model, images, labels)
        memory = training_memory(model, loss, config.device, MEMORY_STEPS, nesterov=True)
        records[name] = family_record(model, timings[name], memory)
    add_ratios_to_reference(records)
    return {
        "architecture": config.architecture,
        "dataset": config.dataset,
        "batch_size": config.batch_size,
        **environment(config.device),
        "repeats": config.repeats,
        "warmup": config.warmup,
        "reference_family": REFERENCE_FAMILY,
        "families": records,
    }


def random_batch(
    info: data.DatasetInfo, config: MeasureConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random [0, 1] images of the dataset's shape and random labels; one batch for all."""
    generator = torch.Generator().manual_seed(config.seed)
    shape = (config.batch_size, info.channels, info.image_size, info.image_size)
    images = torch.rand(shape, generator=generator)
    labels = torch.randint(0, info.num_classes, (config.batch_size,), generator=generator)
    return images.to(config.device), labels.to(config.device)


def build_model(config: MeasureConfig, info: data.DatasetInfo, family: str) -> nn.Module:
    torch.manual_seed(config.seed)
    model = architectures.build(
        config.architecture, families.get(family), info.num_classes, info.channels, info.image_size
    )
    return model.to(config.device)


def classification_loss(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor
) -> Callable[[], torch.Tensor]:
    loss_fn = OffsetCrossEntropy()
    return lambda: loss_fn(model(images), labels)


def time_interleaved(
    models: dict[str, nn.Module], images: torch.Tensor, labels: torch.Tensor, config: MeasureConfig
) -> dict[str, dict[str, Timing]]:
    """{family: {"train" | "inference" | "transform": Timing}}, all timed round by round."""
    candidates: dict[str, Callable[[], None]] = {}
    for name, model in models.items():
        loss = classification_loss(model, images, labels)
        candidates[f"{name}/train"] = training_step(model, loss, nesterov=True)
        candidates[f"{name}/inference"] = inference(aol.export(model), images)
        transform = weight_transform(model)
        if transform is not None:  # after the training step: Cayley's needs an input size
            candidates[f"{name}/transform"] = transform
    timings = interleaved_timings(
        candidates, config.device, repeats=config.repeats, warmup=config.warmup
    )
    by_family: dict[str, dict[str, Timing]] = {name: {} for name in models}
    for key, timing in timings.items():
        name, kind = key.rsplit("/", 1)
        by_family[name][kind] = timing
    return by_family


def timing_record(timing: Timing | None) -> dict | None:
    if timing is None:
        return None
    return {"median": timing.median, "q1": timing.q1, "q3": timing.q3, "repeats": timing.repeats}


def family_record(model: nn.Module, timings: dict[str, Timing], memory: PeakMemory) -> dict:
    """One family's times (seconds), peak training memory and parameter count."""
    return {
        "train_step_seconds": timing_record(timings["train"]),
        "inference_seconds": timing_record(timings["inference"]),
        "weight_transform_seconds": timing_record(timings.get("transform")),
        "peak_train_memory_bytes": memory.bytes,
        "memory_method": memory.method,
        "memory_steps": MEMORY_STEPS,
        "num_parameters": sum(p.numel() for p in model.parameters()),
    }


def add_ratios_to_reference(records: dict[str, dict]) -> None:
    """Medians divided by the reference family's medians of the same run; the weight
    transform as a share of the reference's training step (None without a transform)."""
    reference = records[REFERENCE_FAMILY]
    reference_step = reference["train_step_seconds"]["median"]
    for record in records.values():
        record["train_step_vs_standard"] = record["train_step_seconds"]["median"] / reference_step
        record["inference_vs_standard"] = (
            record["inference_seconds"]["median"] / reference["inference_seconds"]["median"]
        )
        transform = record["weight_transform_seconds"]
        record["weight_transform_share_of_standard_step"] = (
            None if transform is None else transform["median"] / reference_step
        )
