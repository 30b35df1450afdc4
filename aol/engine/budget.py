"""Training budgets in seconds: calibrate the epoch time, derive the epoch count from it.

"1-Lipschitz Layers Compared" (Prach et al., CVPR 2024, Sec. 4 and Table 8) gives every
layer the same training time on one GPU and turns it into an epoch count per (layer, size)
from the measured throughput: epochs = floor(budget / seconds per epoch). This module does
the same on the device at hand:

* ``calibrate`` times real training steps of a run (the run's data order, batched
  augmentation, precision and memory layout, loss and SGD step, after warm-up and
  compilation, synchronised) and returns the seconds per step and per epoch of the whole
  training split, with the device's name (a calibration holds for one device). The timed
  steps are cut into chunks, each synchronised at both ends, and the median chunk gives the
  time per step: a chunk slowed down by something else on the machine (another process, the
  garbage collector) does not move it;
* ``plan`` turns a budget, a calibration and the run's steps per epoch into a
  ``BudgetPlan``: the epoch time is the calibrated seconds per step times the run's steps
  per epoch (``steps_per_epoch``: fewer for a run on a training subset, whose steps cost
  what the whole split's do), and the planned epochs (the nearest whole number, at least 1)
  become the recipe's epochs, so the learning-rate schedule follows them. The plan is part
  of the run's identity; a resumed run keeps the plan saved in its folder
  (``resumed_plan``) and never derives it again.

The budget counts the training steps' time, as 1LLC's Table 8 does; the evaluations
between epochs are recorded apart (result.json ``train_seconds`` is the wall time).
"""

from __future__ import annotations

import itertools
import json
import math
import time
from dataclasses import asdict, dataclass

import torch

from aol.engine import data, recipes
from aol.engine.augment import Augmentation
from aol.engine.run_folder import build_model, run_identity
from aol.engine.runtime import environment, synchronise
from aol.loss import OffsetCrossEntropy

#: the keys of a calibration that must equal the run's for the calibration to apply
CALIBRATION_MATCH_KEYS = (
    "dataset",
    "architecture",
    "family",
    "batch_size",
    "augment",
    "precision",
)

#: the timed steps are cut into at most this many chunks (``chunk_sizes``)
CALIBRATION_CHUNKS = 5


class CalibrationError(ValueError):
    """A calibration file that cannot be used for the run at hand."""


@dataclass(frozen=True)
class BudgetPlan:
    """A run's budget and the epochs derived from it (part of the run's identity)."""

    budget_seconds: float
    calibrated_epoch_seconds: float
    calibration_device_name: str
    planned_epochs: int

    def as_dict(self) -> dict:
        return asdict(self)


def planned_epochs(budget_seconds: float, epoch_seconds: float) -> int:
    """The whole number of epochs nearest to budget / epoch time, at least 1. 1LLC floors
    (Table 8: the epochs that fit 2 h); with its hundreds of epochs the two differ by at
    most one, while with a few epochs (a CPU budget of seconds) flooring would end a run
    up to a whole epoch early, and the nearest count ends within half an epoch of it."""
    if not (budget_seconds > 0 and epoch_seconds > 0):
        raise ValueError(f"budget and epoch time must be > 0: {budget_seconds}, {epoch_seconds}")
    return max(1, math.floor(budget_seconds / epoch_seconds + 0.5))


def steps_per_epoch(train_images: int, batch_size: int) -> int:
    """Training steps of one epoch over ``train_images`` (the last batch may be smaller)."""
    return math.ceil(train_images / batch_size)


def plan(budget_seconds: float, calibration: dict, run_steps_per_epoch: int) -> BudgetPlan:
    """The plan of a run with ``run_steps_per_epoch`` steps per epoch (``steps_per_epoch`` of
    its training split or subset): its epoch time is the calibrated seconds per step times
    that count, whatever split the calibration drew its batches from."""
    epoch_seconds = float(calibration["seconds_per_step"]) * run_steps_per_epoch
    return BudgetPlan(
        budget_seconds=float(budget_seconds),
        calibrated_epoch_seconds=epoch_seconds,
        calibration_device_name=str(calibration["device_name"]),
        planned_epochs=planned_epochs(budget_seconds, epoch_seconds),
    )


def resumed_plan(new_plan: BudgetPlan, saved_identity: dict | None) -> BudgetPlan:
    """The plan saved in the run folder's checkpoint when it has the same budget (a resumed
    run keeps its epochs even if the calibration changed since), else ``new_plan``."""
    saved = (saved_identity or {}).get("budget")
    if isinstance(saved, dict) and saved.get("budget_seconds") == new_plan.budget_seconds:
        return BudgetPlan(**saved)
    return new_plan


def read_calibration(path: str, expected: dict) -> dict:
    """The calibration file at ``path``; CalibrationError when it cannot be read or was
    made for another (dataset, architecture, family, batch size, augmentation, precision)."""
    try:
        with open(path) as stream:
            calibration = json.load(stream)
    except (OSError, ValueError) as error:
        raise CalibrationError(f"cannot read calibration {path}: {error}") from None
    if isinstance(calibration, dict) and calibration.get("status") == "failed":
        raise CalibrationError(f"the calibration job failed ({path}; see its log)")
    if not isinstance(calibration, dict) or not calibration.get("seconds_per_step", 0) > 0:
        raise CalibrationError(f"{path} is not a calibration (no seconds_per_step > 0)")
    calibration.setdefault("precision", "fp32")  # files written before it was recorded
    different = [
        f"{key} {calibration.get(key)!r} (run: {expected[key]!r})"
        for key in CALIBRATION_MATCH_KEYS
        if calibration.get(key) != expected[key]
    ]
    if different:
        raise CalibrationError(f"{path} was made for another run: {', '.join(different)}")
    return calibration


def calibration_key(
    dataset: str, architecture: str, family: str, recipe, precision: str = "fp32"
) -> dict:
    return dict(
        dataset=dataset,
        architecture=architecture,
        family=family,
        batch_size=recipe.batch_size,
        augment=recipe.augment,
        precision=precision,
    )


def chunk_sizes(steps: int, chunks: int = CALIBRATION_CHUNKS) -> list[int]:
    """``steps`` cut into ``min(chunks, steps)`` chunks of (nearly) equal size."""
    count = max(1, min(chunks, steps))
    return [steps * (index + 1) // count - steps * index // count for index in range(count)]


def median_seconds_per_step(chunk_seconds: list[float], chunk_steps: list[int]) -> float:
    """The median of the chunks' seconds per step (the lower median for an even count)."""
    if not chunk_seconds or len(chunk_seconds) != len(chunk_steps):
        raise ValueError("one time per chunk is needed")
    pairs = zip(chunk_seconds, chunk_steps, strict=True)
    per_step = sorted(seconds / steps for seconds, steps in pairs)
    return per_step[(len(per_step) - 1) // 2]


def _endless_batches(dataset: data.Dataset, recipe, augmentation, seed: int, device):
    """Training batches as a run draws them, epoch after epoch."""
    from aol.engine.train import epoch_batches  # train imports this module

    order_generator = torch.Generator().manual_seed(seed)
    augment_generator = torch.Generator(device=device).manual_seed(seed + 1)
    while True:
        yield from epoch_batches(
            dataset.train_images,
            dataset.train_labels,
            recipe.batch_size,
            order_generator,
            augmentation,
            augment_generator,
        )


def calibrate(
    key: dict,
    recipe: recipes.Recipe,
    device: torch.device,
    steps: int = 20,
    warmup: int = 5,
    compile_step: bool = False,
    data_dir: str = "data",
    channels_last: bool = False,
) -> dict:
    """Seconds per step (and per epoch of the whole training split) of training ``key``
    (``calibration_key``) with ``recipe`` on ``device``: ``warmup`` untimed steps
    (compilation), then ``steps`` timed ones in the run's precision (``key["precision"]``)
    and layout, each with its augmentation, loss accumulation and SGD step, in
    ``chunk_sizes(steps)`` chunks synchronised at both ends; the median chunk's time per step
    is the calibration's."""
    from aol.engine.train import tf32_settings  # train imports this module

    with tf32_settings(key["precision"]):
        return _calibrate(key, recipe, device, steps, warmup, compile_step, data_dir, channels_last)


def _calibrate(key, recipe, device, steps, warmup, compile_step, data_dir, channels_last):
    from aol.engine.train import make_optimiser, step_autocast, training_step

    info = data.info(key["dataset"])
    dataset = data.load(key["dataset"], data_dir).to(device)
    identity = run_identity(key["dataset"], key["architecture"], key["family"], 0, "", {})
    torch.manual_seed(0)
    model = build_model(identity).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    step_model = torch.compile(model, mode="reduce-overhead") if compile_step else model
    optimiser = make_optimiser(model, recipe)
    loss_fn = OffsetCrossEntropy(recipe.offset, recipe.temperature)
    augmentation = Augmentation(
        colour=info.colour, spatial=True, horizontal_flip=info.horizontal_flip
    )
    batches = _endless_batches(dataset, recipe, augmentation if recipe.augment else None, 0, device)
    # the sums a training epoch keeps (aol.engine.train.train_epoch), kept here too
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    autocast = step_autocast(key["precision"], device)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    model.train()

    def run_steps(count: int) -> None:
        for images, labels in itertools.islice(batches, count):
            images = images.contiguous(memory_format=layout)
            loss, scores = training_step(step_model, optimiser, loss_fn, images, labels, autocast)
            loss_sum.add_(loss.double() * len(labels))
            correct.add_((scores.argmax(1) == labels).sum())

    run_steps(warmup)
    chunk_steps = chunk_sizes(steps)
    chunk_seconds = []
    for count in chunk_steps:
        synchronise(device)
        begin = time.perf_counter()
        run_steps(count)
        synchronise(device)
        chunk_seconds.append(time.perf_counter() - begin)
    seconds_per_step = median_seconds_per_step(chunk_seconds, chunk_steps)
    full_split_steps = steps_per_epoch(len(dataset.train_labels), recipe.batch_size)
    return {
        **key,
        "recipe": recipe.as_dict(),
        **environment(device),
        "compiled": compile_step,
        "warmup_steps": warmup,
        "timed_steps": steps,
        "channels_last": channels_last,
        "chunk_steps": chunk_steps,
        "chunk_seconds": chunk_seconds,
        "seconds_per_step": seconds_per_step,
        "steps_per_epoch": full_split_steps,
        "seconds_per_epoch": seconds_per_step * full_split_steps,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
