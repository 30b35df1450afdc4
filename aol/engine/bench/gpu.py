"""GPU table: epoch time and peak memory of ConvNet-S (every family) and AOL-Small/Medium/Large.

One run prints, side by side, for ConvNet-S built from every registered family and for
AOL-Small / -Medium / -Large (family ``aol``): the seconds of one CIFAR-10 training epoch
(50,000 images), the peak training memory, and the epochs that fit 2 h as published in
"1-Lipschitz Layers Compared" (Prach et al., CVPR 2024, Table 8: one A100 80GB, batch 256;
``results/reference/published.csv``) with the epochs in 2 h our measurement implies.

The data are random CIFAR-10-shaped images that the command writes itself, in the real
CIFAR-10 file format (their md5 sums are registered with torchvision for this process
only), so it needs no download. Each row runs the training loop's own pieces
(``aol.engine.train``: data on the device, batched augmentation, offset cross-entropy,
SGD, the chosen precision): ``--warmup`` steps, then ``--steps`` timed steps; the epoch
time is the mean step time times the steps of an epoch (``ceil(50000 / batch)``).
Memory is ``aol.engine.memory.peak_training_memory`` (CUDA allocator peak on a GPU).

    python -m aol bench gpu                      # on a CUDA machine: under 10 min on an H200
    python -m aol bench gpu --device cpu --smoke # a few steps of small models on a CPU
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import math
import os
import pickle
import platform
import tempfile
import time

import numpy as np
import torch

from aol import families
from aol.engine import data, recipes
from aol.engine.augment import Augmentation
from aol.engine.memory import peak_training_memory
from aol.engine.run_folder import build_model, run_identity
from aol.engine.runtime import synchronise
from aol.engine.train import (
    PRECISIONS,
    epoch_batches,
    make_optimiser,
    step_autocast,
    tf32_settings,
    training_step,
)
from aol.loss import OffsetCrossEntropy

CIFAR_TRAIN_IMAGES = 50_000
AOL_MODELS = ("aol-small", "aol-medium", "aol-large")
REFERENCE_CSV = os.path.join(
    os.path.dirname(__file__), "..", "..", "..", "results", "reference", "published.csv"
)


def write_synthetic_cifar10(data_dir: str, images_per_file: int, seed: int = 0) -> None:
    """Random images and labels in CIFAR-10's files under ``data_dir``; their md5 sums are
    registered with torchvision's ``CIFAR10`` for this process, so its check passes."""
    from torchvision.datasets import CIFAR10

    folder = os.path.join(data_dir, CIFAR10.base_folder)
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    sums = {}
    for name, _ in CIFAR10.train_list + CIFAR10.test_list:
        batch = {
            "data": rng.integers(0, 256, (images_per_file, 3072), dtype=np.uint8),
            "labels": rng.integers(0, 10, images_per_file).tolist(),
        }
        path = os.path.join(folder, name)
        with open(path, "wb") as stream:
            pickle.dump(batch, stream)
        sums[name] = hashlib.md5(open(path, "rb").read()).hexdigest()
    meta = os.path.join(folder, CIFAR10.meta["filename"])
    with open(meta, "wb") as stream:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)]}, stream)
    CIFAR10.train_list = [[name, sums[name]] for name, _ in CIFAR10.train_list]
    CIFAR10.test_list = [[name, sums[name]] for name, _ in CIFAR10.test_list]
    CIFAR10.meta = {**CIFAR10.meta, "md5": hashlib.md5(open(meta, "rb").read()).hexdigest()}


def published_epochs(convnet: str, path: str = REFERENCE_CSV) -> dict[str, int]:
    """1LLC Table 8, CIFAR-10, the ConvNet ``convnet`` (e.g. convnet-s): epochs in 2 h by
    lower-case method name."""
    setting = "ConvNet" + convnet.removeprefix("convnet-").upper()
    with open(path, newline="") as stream:
        rows = list(csv.DictReader(stream))
    return {
        row["method"].lower(): int(row["value"])
        for row in rows
        if row["table"] == "Table 8" and row["dataset"] == "CIFAR-10" and row["setting"] == setting
    }


def time_row(
    architecture: str, family: str, dataset: data.Dataset, arguments, device: torch.device
) -> dict:
    """Seconds per epoch (from ``arguments.steps`` timed steps) and peak training memory."""
    recipe = recipes.get("1llc").with_overrides(batch_size=arguments.batch_size)
    identity = run_identity(
        "cifar10", architecture, family, 0, "1llc", recipe.as_dict(), arguments.precision
    )
    torch.manual_seed(0)
    model = build_model(identity).to(device)
    optimiser = make_optimiser(model, recipe)
    loss_fn = OffsetCrossEntropy(recipe.offset, recipe.temperature)
    augmentation = Augmentation(colour=True, spatial=True, horizontal_flip=True)
    autocast = step_autocast(arguments.precision, device)
    step_model = torch.compile(model, mode="reduce-overhead") if arguments.compile else model
    order = torch.Generator().manual_seed(0)
    augment = torch.Generator(device=device).manual_seed(1)
    images, labels = dataset.train_images, dataset.train_labels

    def batches():
        while True:  # the small smoke data set runs out of batches: start a new epoch
            yield from epoch_batches(
                images, labels, recipe.batch_size, order, augmentation, augment
            )

    stream = batches()
    with tf32_settings(arguments.precision):
        for _ in range(arguments.warmup):
            training_step(step_model, optimiser, loss_fn, *next(stream), autocast)
        synchronise(device)
        start = time.perf_counter()
        for _ in range(arguments.steps):
            training_step(step_model, optimiser, loss_fn, *next(stream), autocast)
        synchronise(device)
        seconds_per_step = (time.perf_counter() - start) / arguments.steps
        batch_images, batch_labels = next(stream)

        def forward_loss():
            with autocast:
                return loss_fn(model(batch_images).float(), batch_labels)

        optimiser = make_optimiser(model, recipe)
        memory = peak_training_memory(forward_loss, optimiser, device, arguments.memory_steps)
    epoch_seconds = seconds_per_step * math.ceil(CIFAR_TRAIN_IMAGES / recipe.batch_size)
    return {"architecture": architecture, "family": family, "epoch_seconds": epoch_seconds,
            "memory_bytes": memory.bytes}  # fmt: skip


def format_table(rows: list[dict], convnet: str, published: dict[str, int]) -> str:
    lines = [
        "| model | family | epoch s | epochs in 2 h | 1LLC Table 8 epochs in 2 h (A100) "
        "| peak train MiB |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        on_paper = published.get(row["family"]) if row["architecture"] == convnet else None
        cells = [
            row["architecture"],
            row["family"],
            f"{row['epoch_seconds']:.2f}",
            f"{int(7200 / row['epoch_seconds'])}",
            "-" if on_paper is None else str(on_paper),
            f"{row['memory_bytes'] / 2**20:.0f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--families", nargs="+", default=None, help="default: every registered")
    parser.add_argument("--convnet", default="convnet-s", help="default: convnet-s (Table 8)")
    parser.add_argument("--aol-models", nargs="*", default=list(AOL_MODELS), metavar="MODEL")
    parser.add_argument("--batch-size", type=int, default=256, help="default: 256 (1LLC)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps (default 5)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps (default 20)")
    parser.add_argument("--memory-steps", type=int, default=3, help="steps of the peak memory")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32")
    parser.add_argument(
        "--compile",
        action="store_true",
        help="CUDA graphs via torch.compile(mode='reduce-overhead'), as train does on CUDA "
        "(adds a compilation per row to the run time)",
    )
    parser.add_argument("--images-per-file", type=int, default=10_000, help="default: 10000")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="tiny setting for a CPU: convnet-xs only, batch 4, 1 + 1 steps, 50 images a file",
    )
    parser.add_argument("--data-dir", default=None, help="default: a temporary folder")


def apply_smoke(arguments: argparse.Namespace) -> None:
    """A CPU check of the whole command in seconds: ConvNet-XS only (an AOL-Small step alone
    takes seconds on a CPU: its 14 dense 1024 x 1024 Gram matrices)."""
    arguments.convnet, arguments.aol_models = "convnet-xs", []
    arguments.batch_size, arguments.warmup, arguments.steps = 4, 1, 1
    arguments.images_per_file, arguments.memory_steps = 50, 1


def run(arguments: argparse.Namespace) -> int:
    if arguments.smoke:
        apply_smoke(arguments)
    family_names = arguments.families or families.names()
    for name in family_names:
        families.get(name)  # fail early, listing the registered names
    if min(arguments.batch_size, arguments.steps, arguments.images_per_file) < 1:
        raise SystemExit("--batch-size, --steps and --images-per-file must be >= 1")
    device = torch.device(arguments.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.machine()
    print(f"# aol bench gpu: {name}, torch {torch.__version__}, batch {arguments.batch_size}, "
          f"{arguments.precision}, compile {arguments.compile}, {arguments.warmup} warm-up + "
          f"{arguments.steps} timed steps per row", flush=True)  # fmt: skip
    with tempfile.TemporaryDirectory() as scratch:
        data_dir = arguments.data_dir or scratch
        write_synthetic_cifar10(data_dir, arguments.images_per_file)
        dataset = data.load("cifar10", data_dir).to(device)
        models = [(arguments.convnet, family) for family in family_names]
        models += [(model, "aol") for model in arguments.aol_models]
        rows = []
        for architecture, family in models:
            rows.append(time_row(architecture, family, dataset, arguments, device))
            print(f"# {architecture} {family}: {rows[-1]['epoch_seconds']:.2f} s", flush=True)
    print(format_table(rows, arguments.convnet, published_epochs(arguments.convnet)))
    return 0
