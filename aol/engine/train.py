"""The training loop: whole dataset on the device, batched augmentation, offset cross-entropy,
SGD with a per-epoch schedule, per-epoch test metrics, atomic checkpoints, resume, divergence.

``train(config)`` writes into ``config.out``:

* ``checkpoint.pt`` every ``checkpoint_every`` epochs and at the end (``aol.engine.checkpoint``);
* ``metrics.jsonl``: one JSON object per finished epoch (test metrics every
  ``eval_every`` epochs and at the last one, null in between);
* ``result.json`` last (status ``completed`` or ``diverged``).

Running it again with the same configuration resumes from the checkpoint; on CPU
the resumed run ends with exactly the weights of an uninterrupted one (the data
order, the augmentation and the schedule depend only on saved generator states
and the epoch). A NaN/Inf loss or weight stops the run with status ``diverged``.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass

import torch
from torch import nn

import aol
from aol import architectures, families
from aol.certificate import PAPER_EPSILONS, certified_robust_accuracy
from aol.engine import checkpoint, data, recipes
from aol.engine.augment import Augmentation
from aol.engine.progress import Progress
from aol.engine.runtime import environment, synchronise, write_atomically, write_json_atomically
from aol.loss import OffsetCrossEntropy
from aol.radius import epsilon_key

METRICS_FILE = "metrics.jsonl"
RESULT_FILE = "result.json"
EVALUATION_BATCH = 1000


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

    def identity(self) -> dict:
        """What makes two runs the same run (a checkpoint must match it to be resumed)."""
        return {
            "dataset": self.dataset,
            "architecture": self.architecture,
            "family": self.family,
            "seed": self.seed,
            "recipe": self.recipe_name,
            "hyperparameters": self.recipe.as_dict(),
        }


class RunMismatchError(ValueError):
    """The output folder holds a run with another configuration."""


def build_model(config_or_identity, info: data.DatasetInfo) -> nn.Sequential:
    identity = config_or_identity
    return architectures.build(
        identity["architecture"],
        families.get(identity["family"]),
        info.num_classes,
        info.channels,
        info.image_size,
    )


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
def evaluate(model: nn.Module, images, labels, loss_fn, lipschitz_bound: float | None) -> dict:
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
        cra = certified_robust_accuracy(scores, labels, PAPER_EPSILONS, lipschitz_bound)
        metrics["test_certified_accuracy"] = {epsilon_key(e): v for e, v in cra.items()}
    return metrics


def _read_metrics(path: str, up_to_epoch: int) -> list[dict]:
    if not os.path.exists(path):
        return []
    with open(path) as stream:
        rows = [json.loads(line) for line in stream if line.strip()]
    return [row for row in rows if row["epoch"] <= up_to_epoch]


def _write_metrics(path: str, rows: list[dict]) -> None:
    write_atomically(path, lambda stream: stream.writelines(json.dumps(r) + "\n" for r in rows))


def train(config: TrainConfig, progress_stream=None) -> dict:
    """Train (or resume, or report the finished run) and return the result dictionary."""
    os.makedirs(config.out, exist_ok=True)
    checkpoint_path = os.path.join(config.out, checkpoint.CHECKPOINT_FILE)
    metrics_path = os.path.join(config.out, METRICS_FILE)
    result_path = os.path.join(config.out, RESULT_FILE)
    identity = config.identity()

    saved = checkpoint.load(checkpoint_path) if os.path.exists(checkpoint_path) else None
    if saved is not None and saved["identity"] != identity:
        raise RunMismatchError(
            f"{config.out} holds another run ({json.dumps(saved['identity'])}); "
            "use another --out or delete that folder"
        )
    if os.path.exists(result_path):
        with open(result_path) as stream:
            finished = json.load(stream)
        if all(finished.get(key) == value for key, value in identity.items()):
            return finished
        raise RunMismatchError(f"{config.out} holds a finished run with another configuration")

    info = data.info(config.dataset)
    dataset = data.load(config.dataset, config.data_dir, config.download).to(config.device)
    recipe = config.recipe
    torch.manual_seed(config.seed)
    model = build_model(identity, info).to(config.device)
    optimiser = make_optimiser(model, recipe)
    loss_fn = OffsetCrossEntropy(recipe.offset, recipe.temperature)
    # AOL-Small at batch 250 is host-bound on a GPU (hundreds of small kernels per
    # step); CUDA graphs cut its step from ~28 ms to ~10 ms on an H200 (README).
    step_model = torch.compile(model, mode="reduce-overhead") if config.compile else model
    order_generator = torch.Generator().manual_seed(config.seed)
    augment_generator = torch.Generator(device=config.device).manual_seed(config.seed + 1)
    augmentation = Augmentation(
        colour=info.colour, spatial=True, horizontal_flip=info.horizontal_flip
    )

    start_epoch, elapsed, train_seconds = 0, 0.0, 0.0
    if saved is not None:
        model.load_state_dict(saved["model"])
        optimiser.load_state_dict(saved["optimiser"])
        checkpoint.restore_random_states(saved["random_states"], order_generator, augment_generator)
        start_epoch = saved["epoch"]
        elapsed, train_seconds = saved["elapsed_seconds"], saved["train_seconds"]
    rows = _read_metrics(metrics_path, start_epoch)
    _write_metrics(metrics_path, rows)

    num_train = len(dataset.train_labels)
    steps_per_epoch = math.ceil(num_train / recipe.batch_size)
    progress = Progress(recipe.epochs, steps_per_epoch, progress_stream)
    if start_epoch:
        progress.message(f"resuming {config.out} after epoch {start_epoch}")

    def save_checkpoint(epoch: int) -> None:
        checkpoint.save(
            checkpoint_path,
            {
                "identity": identity,
                "epoch": epoch,
                "model": model.state_dict(),
                "optimiser": optimiser.state_dict(),
                "schedule": {"name": recipe.schedule, "next_epoch": epoch},
                "random_states": checkpoint.random_states(order_generator, augment_generator),
                "elapsed_seconds": elapsed,
                "train_seconds": train_seconds,
            },
        )

    result = {
        "status": "completed",
        **identity,
        "epochs": recipe.epochs,
        "epochs_completed": start_epoch,
        **environment(config.device),
        "compiled": config.compile,
        "num_parameters": sum(p.numel() for p in model.parameters()),
    }
    for epoch in range(start_epoch, recipe.epochs):
        lr, momentum = recipes.epoch_settings(recipe, epoch)
        for group in optimiser.param_groups:
            group["lr"], group["momentum"] = lr, momentum
        model.train()
        synchronise(config.device)
        epoch_start = time.perf_counter()
        order = torch.randperm(num_train, generator=order_generator).to(config.device)
        loss_sum = torch.zeros((), device=config.device, dtype=torch.float64)
        correct = torch.zeros((), device=config.device, dtype=torch.int64)
        for step, begin in enumerate(range(0, num_train, recipe.batch_size), start=1):
            indices = order[begin : begin + recipe.batch_size]
            images, labels = dataset.train_images[indices], dataset.train_labels[indices]
            if recipe.augment:
                images = augmentation(images, augment_generator)
            scores = step_model(images)
            loss = loss_fn(scores, labels)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            loss_sum += loss.detach().double() * len(indices)
            correct += (scores.detach().argmax(1) == labels).sum()
            if progress.wants_update():
                seen = min(begin + recipe.batch_size, num_train)
                progress.step(epoch + 1, step, loss_sum.item() / seen, correct.item() / seen)
        synchronise(config.device)
        epoch_seconds = time.perf_counter() - epoch_start
        train_loss = loss_sum.item() / num_train
        if not math.isfinite(train_loss) or not parameters_finite(model):
            result.update(
                status="diverged",
                diverged_at_epoch=epoch + 1,
                test_accuracy=None,
                test_certified_accuracy=None,
                lipschitz_bound=None,
            )
            progress.message(f"diverged in epoch {epoch + 1}: loss {train_loss}")
            break
        if (epoch + 1) % config.eval_every == 0 or epoch + 1 == recipe.epochs:
            bound = eval_mode_lipschitz_bound(model)
            evaluation = evaluate(model, dataset.test_images, dataset.test_labels, loss_fn, bound)
        else:
            evaluation = dict.fromkeys(("test_loss", "test_accuracy", "test_certified_accuracy"))
        synchronise(config.device)
        total_seconds = time.perf_counter() - epoch_start
        train_seconds += epoch_seconds
        elapsed += total_seconds
        row = {
            "epoch": epoch + 1,
            "lr": lr,
            "momentum": momentum,
            "train_loss": train_loss,
            "train_accuracy": correct.item() / num_train,
            **evaluation,
            "epoch_seconds": epoch_seconds,
            "eval_seconds": total_seconds - epoch_seconds,
            "elapsed_seconds": elapsed,
        }
        rows.append(row)
        with open(metrics_path, "a") as stream:
            stream.write(json.dumps(row) + "\n")
        progress.epoch_end(row)
        result["epochs_completed"] = epoch + 1
        if (epoch + 1) % config.checkpoint_every == 0 or epoch + 1 == recipe.epochs:
            save_checkpoint(epoch + 1)

    last = rows[-1] if rows else {}
    if result["status"] == "completed":
        if start_epoch == recipe.epochs:  # resumed from the final checkpoint: nothing ran
            bound = eval_mode_lipschitz_bound(model)
        # else: the last epoch was evaluated above with these weights; its bound stands
        result.update(
            test_accuracy=last.get("test_accuracy"),
            test_certified_accuracy=last.get("test_certified_accuracy"),
            lipschitz_bound=bound,
        )
    result.update(
        train_seconds=elapsed,
        train_step_seconds=train_seconds,
        seconds_per_epoch=train_seconds / max(len(rows), 1),
    )
    write_json_atomically(result_path, result)
    return result
