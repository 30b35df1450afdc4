"""The training loop: whole dataset on the device, batched augmentation, offset cross-entropy,
SGD with a per-epoch schedule, per-epoch test metrics, atomic checkpoints, resume, divergence.

``train(config)`` writes into ``config.out``:

* ``checkpoint.pt`` at the start, every ``checkpoint_every`` epochs and at the end
  (``aol.engine.checkpoint``);
* ``metrics.jsonl``: one JSON object per finished epoch (test metrics every
  ``eval_every`` epochs and at the last one, null in between; the monitoring certificate
  at ``radii``, keyed by their text, e.g. ``"36/255"``);
* ``result.json`` last (status ``completed`` or ``diverged``).

The folder's files, its lock and the run's identity are ``aol.engine.run_folder``.

Running it again with the same configuration resumes from the checkpoint; on CPU
the resumed run ends with exactly the weights of an uninterrupted one (the data
order, the augmentation and the schedule depend only on saved generator states
and the epoch). A NaN/Inf loss or weight stops the run with status ``diverged``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

import aol
from aol.certificate import certified_robust_accuracy
from aol.engine import budget, checkpoint, data, recipes
from aol.engine.augment import Augmentation, CropFlip
from aol.engine.progress import Progress
from aol.engine.run_folder import RunFolder, build_model, run_identity
from aol.engine.runtime import environment, synchronise
from aol.loss import OffsetCrossEntropy
from aol.radius import PAPER_RADII, Radius

EVALUATION_BATCH = 1000
TEST_METRICS = ("test_loss", "test_accuracy", "test_certified_accuracy")
#: ``fp32``: float32 everywhere, TF32 off for matmuls and cuDNN convolutions; ``tf32``: float32
#: tensors, TF32 tensor-core matmuls and convolutions (CUDA; no effect on a CPU); ``bf16``:
#: forward and backward under bfloat16 autocast (parameters, optimiser and loss sum stay
#: float32; the AOL rescaling runs with autocast off, ``aol.nn.rescaling``).
PRECISIONS = ("fp32", "tf32", "bf16")


@contextlib.contextmanager
def tf32_settings(precision: str):
    """TF32 on for ``tf32`` and off otherwise, for matmuls and cuDNN; restored afterwards."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = precision == "tf32"
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def step_autocast(precision: str, device: torch.device):
    """bfloat16 autocast for ``bf16``, nothing otherwise."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


@dataclass(frozen=True)
class TrainConfig:
    dataset: str
    architecture: str
    family: str
    seed: int
    out: str
    recipe_name: str
    recipe: recipes.Recipe
    checkpoint_every: int = 10
    #: evaluate on the test split every N epochs and always after the last one; the
    #: bound of the baselines costs seconds per evaluation (frequency-grid SVDs)
    eval_every: int = 1
    device: torch.device = torch.device("cpu")
    data_dir: str = "data"
    download: bool = False
    #: compile the training step's forward/backward with CUDA graphs (torch.compile
    #: mode "reduce-overhead"); not part of the run's identity (same math)
    compile: bool = False
    #: radii of the per-epoch monitoring certificate; not part of the run's identity
    #: (a run may resume with other radii)
    radii: tuple[Radius, ...] = PAPER_RADII
    #: arithmetic of the training steps (``PRECISIONS``); part of the run's identity
    precision: str = "fp32"
    #: images and convolution weights in channels-last layout (same math, another memory
    #: layout); not part of the run's identity
    channels_last: bool = False
    #: a training budget: ``recipe.epochs`` is its planned epochs (part of the identity)
    budget: budget.BudgetPlan | None = None
    #: train on this many images of the training split (``data.subset_indices``: fixed,
    #: class-balanced, the same for every seed); None: all of them. Part of the identity
    train_subset: int | None = None
    #: evaluate the monitoring metrics on this many test images (``data.subset_indices``);
    #: None: all. Not part of the run's identity (monitoring only, like ``radii``)
    test_subset: int | None = None

    def identity(self) -> dict:
        """What makes two runs the same run (``aol.engine.run_folder.run_identity``)."""
        return run_identity(
            self.dataset,
            self.architecture,
            self.family,
            self.seed,
            self.recipe_name,
            self.recipe.as_dict(),
            self.precision,
            None if self.budget is None else self.budget.as_dict(),
            self.train_subset,
        )

    def keeping_saved_budget(self, saved: dict | None) -> TrainConfig:
        """This config with the budget plan saved in the run folder's checkpoint, when it
        has the same budget: a resumed budget run keeps its planned epochs."""
        if self.budget is None or saved is None:
            return self
        kept = budget.resumed_plan(self.budget, saved.get("identity"))
        recipe = self.recipe.with_overrides(epochs=kept.planned_epochs)
        return dataclasses.replace(self, budget=kept, recipe=recipe)


def make_optimiser(model: nn.Module, recipe: recipes.Recipe) -> torch.optim.SGD:
    """SGD; weight decay on parameters with >= 2 dimensions only unless ``decay_biases``."""
    parameters = list(model.parameters())
    if recipe.decay_biases:
        groups = [{"params": parameters, "weight_decay": recipe.weight_decay}]
    else:
        groups = [
            {"params": [p for p in parameters if p.ndim >= 2], "weight_decay": recipe.weight_decay},
            {"params": [p for p in parameters if p.ndim < 2], "weight_decay": 0.0},
        ]
    return torch.optim.SGD(groups, lr=recipe.lr, momentum=recipe.momentum, nesterov=recipe.nesterov)


def parameters_finite(model: nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


def eval_mode_lipschitz_bound(model: nn.Module) -> float | None:
    """The network bound of ``model`` in eval mode, the mode that is exported and certified
    (SOC sums more series terms there, so its bound is tighter); the mode is restored."""
    was_training = model.training
    model.eval()
    try:
        return aol.network_lipschitz_bound(model)
    finally:
        model.train(was_training)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    images,
    labels,
    loss_fn,
    lipschitz_bound: float | None,
    radii: tuple[Radius, ...] = PAPER_RADII,
) -> dict:
    """Test loss, accuracy and (monitoring-only, float32 scores) certified accuracy.

    The authoritative certificate is ``python -m aol certify`` (float64, exported weights).
    """
    exported = aol.export(model)
    scores = torch.cat(
        [
            exported(images[i : i + EVALUATION_BATCH])
            for i in range(0, len(images), EVALUATION_BATCH)
        ]
    )
    metrics = {
        "test_loss": loss_fn(scores, labels).item(),
        "test_accuracy": (scores.argmax(1) == labels).double().mean().item(),
        "test_certified_accuracy": None,
    }
    if lipschitz_bound is not None and math.isfinite(lipschitz_bound) and lipschitz_bound > 0:
        certified = certified_robust_accuracy(scores, labels, radii, lipschitz_bound)
        metrics["test_certified_accuracy"] = {str(r): value for r, value in certified.items()}
    return metrics


def epoch_batches(
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int,
    order_generator: torch.Generator,
    augmentation: Augmentation | None,
    augment_generator: torch.Generator,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch's training batches, cut on the data's device from a new random order
    (one ``torch.randperm`` on ``order_generator``, a CPU generator) and augmented per batch
    with ``augment_generator`` (``augmentation`` None: not augmented)."""
    order = torch.randperm(len(labels), generator=order_generator).to(images.device)
    for begin in range(0, len(labels), batch_size):
        indices = order[begin : begin + batch_size]
        batch_images, batch_labels = images[indices], labels[indices]
        if augmentation is not None:
            batch_images = augmentation(batch_images, augment_generator)
        yield batch_images, batch_labels


def training_step(
    model: nn.Module,
    optimiser,
    loss_fn,
    images: torch.Tensor,
    labels: torch.Tensor,
    autocast=None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One SGD step on a batch, the forward under ``autocast``; returns the batch's loss and
    scores (float32), detached."""
    with autocast or contextlib.nullcontext():
        scores = model(images).float()
        loss = loss_fn(scores, labels)
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    optimiser.step()
    return loss.detach(), scores.detach()


@dataclass
class Training:
    """One training run in progress: built by ``prepare``, advanced by ``run_epoch``."""

    config: TrainConfig
    folder: RunFolder
    identity: dict
    dataset: data.Dataset
    model: nn.Module
    #: ``model``, compiled when ``config.compile`` (the same parameters)
    step_model: nn.Module
    optimiser: torch.optim.SGD
    loss_fn: OffsetCrossEntropy
    order_generator: torch.Generator
    augment_generator: torch.Generator
    augmentation: Augmentation | CropFlip | None
    progress: Progress
    start_epoch: int = 0
    #: seconds of the finished epochs: all of them, and their training steps alone
    elapsed: float = 0.0
    train_seconds: float = 0.0
    #: the Lipschitz bound of the latest evaluation
    bound: float | None = None
    rows: list[dict] = field(default_factory=list)


def train(config: TrainConfig, progress_stream=None) -> dict:
    """Train (or resume, or report the finished run) and return the result dictionary.
    The run folder is locked for the whole call; every problem with it is a
    ``RunFolderError``, raised before any work, and so is ``data.SubsetError`` (a
    subset larger than a split found under ``data_dir``)."""
    folder = RunFolder(config.out)
    with folder.locked():
        folder.remove_orphaned_temporaries()
        if config.budget is not None:  # a resumed budget run keeps its planned epochs
            config = config.keeping_saved_budget(folder.load_checkpoint())
        identity = config.identity()
        saved = folder.load_checkpoint(identity)
        finished = folder.finished_result(identity)
        if finished is not None:
            return finished
        folder.check_resumable(saved)
        with tf32_settings(config.precision):
            training = prepare(config, folder, identity, saved, progress_stream)
            result = initial_result(training)
            for epoch in range(training.start_epoch, config.recipe.epochs):
                if not run_epoch(training, epoch, result):
                    break
            return finish(training, result)


def make_augmentation(recipe: recipes.Recipe, info: data.DatasetInfo):
    """The recipe's training augmentation for the dataset (colour only on RGB, the flip only
    where it keeps the class)."""
    if recipe.augmentation == "crop-flip":
        return CropFlip(fill=info.channel_mean, horizontal_flip=info.horizontal_flip)
    return Augmentation(colour=info.colour, spatial=True, horizontal_flip=info.horizontal_flip)


def prepare(config: TrainConfig, folder, identity, saved, progress_stream) -> Training:
    """The data (the training and test subsets, if any) on the device, the seeded model, optimiser,
    loss and generators; the saved state when resuming, else a checkpoint of epoch 0 (so
    that a folder with metrics always has a checkpoint); metrics.jsonl cut back to the
    checkpoint's epoch (which also drops a torn last line)."""
    info = data.info(config.dataset)
    dataset = data.load(config.dataset, config.data_dir, config.download)
    if config.train_subset is not None:
        dataset = dataset.with_train_subset(config.train_subset)
    if config.test_subset is not None:
        dataset = dataset.with_test_subset(config.test_subset)
    dataset = dataset.to(config.device)
    recipe = config.recipe
    torch.manual_seed(config.seed)
    model = build_model(identity).to(config.device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    augmentation = make_augmentation(recipe, info)
    training = Training(
        config=config,
        folder=folder,
        identity=identity,
        dataset=dataset,
        model=model,
        optimiser=make_optimiser(model, recipe),
        loss_fn=OffsetCrossEntropy(recipe.offset, recipe.temperature),
        # AOL-Small at batch 250 is host-bound on a GPU (hundreds of small kernels per
        # step); CUDA graphs cut its epoch from 5.5 s to 2.08 s on an H200
        # (docs/benchmarks.md, "GPU epoch time")
        step_model=torch.compile(model, mode="reduce-overhead") if config.compile else model,
        order_generator=torch.Generator().manual_seed(config.seed),
        augment_generator=torch.Generator(device=config.device).manual_seed(config.seed + 1),
        augmentation=augmentation if recipe.augment else None,
        progress=Progress(
            recipe.epochs, math.ceil(len(dataset.train_labels) / recipe.batch_size), progress_stream
        ),
    )
    if saved is not None:
        resume(training, saved)
    else:
        save_checkpoint(training, 0)
    training.rows = folder.read_metrics(up_to_epoch=training.start_epoch)
    folder.write_metrics(training.rows)
    if training.start_epoch:
        training.progress.message(f"resuming {config.out} after epoch {training.start_epoch}")
    return training


def resume(training: Training, saved: dict) -> None:
    """Continue from a checkpoint: weights, optimiser, generators, epoch and clocks."""
    training.model.load_state_dict(saved["model"])
    training.optimiser.load_state_dict(saved["optimiser"])
    checkpoint.restore_random_states(
        saved["random_states"], training.order_generator, training.augment_generator
    )
    training.start_epoch = saved["epoch"]
    training.elapsed, training.train_seconds = saved["elapsed_seconds"], saved["train_seconds"]


def initial_result(training: Training) -> dict:
    config = training.config
    return {
        "status": "completed",
        **training.identity,
        "epochs": config.recipe.epochs,
        "epochs_completed": training.start_epoch,
        **environment(config.device),
        "compiled": config.compile,
        "channels_last": config.channels_last,
        "num_parameters": sum(p.numel() for p in training.model.parameters()),
        "test_subset": config.test_subset,
        **budget_fields(config),
    }


def budget_fields(config: TrainConfig) -> dict:
    """result.json's budget and planned epochs (null for a run without a budget)."""
    plan = config.budget
    return {
        "budget_seconds": None if plan is None else plan.budget_seconds,
        "planned_epochs": None if plan is None else plan.planned_epochs,
    }


def run_epoch(training: Training, epoch: int, result: dict) -> bool:
    """Train epoch ``epoch`` (0-based), evaluate, record and checkpoint it; False (and the
    result marked diverged) when its loss or the weights are not finite."""
    config, num_train = training.config, len(training.dataset.train_labels)
    lr, momentum = recipes.epoch_settings(config.recipe, epoch)
    for group in training.optimiser.param_groups:
        group["lr"], group["momentum"] = lr, momentum
    training.model.train()
    synchronise(config.device)
    epoch_start = time.perf_counter()
    loss_sum, correct = train_epoch(training, epoch)
    synchronise(config.device)
    epoch_seconds = time.perf_counter() - epoch_start
    train_loss = loss_sum.item() / num_train
    if not math.isfinite(train_loss) or not parameters_finite(training.model):
        mark_diverged(training, epoch, train_loss, result)
        return False
    evaluation = evaluate_epoch(training, epoch)
    synchronise(config.device)
    total_seconds = time.perf_counter() - epoch_start
    training.train_seconds += epoch_seconds
    training.elapsed += total_seconds
    row = {
        "epoch": epoch + 1,
        "lr": lr,
        "momentum": momentum,
        "train_loss": train_loss,
        "train_accuracy": correct.item() / num_train,
        **evaluation,
        "epoch_seconds": epoch_seconds,
        "eval_seconds": total_seconds - epoch_seconds,
        "elapsed_seconds": training.elapsed,
    }
    record_epoch(training, row, result)
    return True


def train_epoch(training: Training, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The epoch's training steps; returns the summed loss (float64) and the number of
    correct training predictions, both on the device (read only for the progress bar)."""
    config, dataset = training.config, training.dataset
    loss_sum = torch.zeros((), device=config.device, dtype=torch.float64)
    correct = torch.zeros((), device=config.device, dtype=torch.int64)
    seen = 0
    batches = epoch_batches(
        dataset.train_images,
        dataset.train_labels,
        config.recipe.batch_size,
        training.order_generator,
        training.augmentation,
        training.augment_generator,
    )
    autocast = step_autocast(config.precision, config.device)
    layout = torch.channels_last if config.channels_last else torch.contiguous_format
    for step, (images, labels) in enumerate(batches, start=1):
        images = images.contiguous(memory_format=layout)  # a no-op in the default layout
        loss, scores = training_step(
            training.step_model, training.optimiser, training.loss_fn, images, labels, autocast
        )
        loss_sum += loss.double() * len(labels)
        correct += (scores.argmax(1) == labels).sum()
        seen += len(labels)
        if training.progress.wants_update():
            training.progress.step(epoch + 1, step, loss_sum.item() / seen, correct.item() / seen)
    return loss_sum, correct


def evaluate_epoch(training: Training, epoch: int) -> dict:
    """Test metrics every ``eval_every`` epochs and after the last one; null in between."""
    config, dataset = training.config, training.dataset
    if (epoch + 1) % config.eval_every != 0 and epoch + 1 != config.recipe.epochs:
        return dict.fromkeys(TEST_METRICS)
    training.bound = eval_mode_lipschitz_bound(training.model)
    return evaluate(
        training.model,
        dataset.test_images,
        dataset.test_labels,
        training.loss_fn,
        training.bound,
        config.radii,
    )


def mark_diverged(training: Training, epoch: int, train_loss: float, result: dict) -> None:
    result.update(
        status="diverged",
        diverged_at_epoch=epoch + 1,
        test_accuracy=None,
        test_certified_accuracy=None,
        lipschitz_bound=None,
    )
    training.progress.message(f"diverged in epoch {epoch + 1}: loss {train_loss}")


def record_epoch(training: Training, row: dict, result: dict) -> None:
    """Append the epoch's row to metrics.jsonl; checkpoint every ``checkpoint_every``
    epochs and after the last one."""
    epoch, config = row["epoch"], training.config
    training.rows.append(row)
    training.folder.append_metrics(row)
    training.progress.epoch_end(row)
    result["epochs_completed"] = epoch
    if epoch % config.checkpoint_every == 0 or epoch == config.recipe.epochs:
        save_checkpoint(training, epoch)


def save_checkpoint(training: Training, epoch: int) -> None:
    """Everything the run needs to continue after ``epoch`` finished epochs."""
    training.folder.save_checkpoint(
        {
            "identity": training.identity,
            "epoch": epoch,
            "model": training.model.state_dict(),
            "optimiser": training.optimiser.state_dict(),
            "schedule": {"name": training.config.recipe.schedule, "next_epoch": epoch},
            "random_states": checkpoint.random_states(
                training.order_generator, training.augment_generator
            ),
            "elapsed_seconds": training.elapsed,
            "train_seconds": training.train_seconds,
        }
    )


def finish(training: Training, result: dict) -> dict:
    """Complete the result with the final test metrics, bound and times; write result.json."""
    rows, epochs = training.rows, training.config.recipe.epochs
    last = rows[-1] if rows else {}
    if result["status"] == "completed":
        if training.start_epoch == epochs:  # resumed from the final checkpoint: nothing ran
            training.bound = eval_mode_lipschitz_bound(training.model)
        # else: the last epoch was evaluated with these weights; its bound stands
        result.update(
            test_accuracy=last.get("test_accuracy"),
            test_certified_accuracy=last.get("test_certified_accuracy"),
            lipschitz_bound=training.bound,
        )
    result.update(
        train_seconds=training.elapsed,
        train_step_seconds=training.train_seconds,
        seconds_per_epoch=training.train_seconds / max(len(rows), 1),
    )
    if result["budget_seconds"] is not None:  # the share of the budget the steps used
        result["budget_used"] = training.train_seconds / result["budget_seconds"]
    training.folder.write_result(result)
    return result
