"""Argument checks shared by the subcommands: each turns a bad value into one UsageError."""

from __future__ import annotations

import argparse
import functools

import torch

from aol.engine import data, recipes, validation
from aol.engine.commands import UsageError
from aol.engine.runtime import resolve_device
from aol.radius import PAPER_RADII, Radius

#: Choices of a switch whose ``auto`` depends on the device (``--compile``, ``--channels-last``).
AUTO_ON_OFF = ("auto", "on", "off")


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from error


def _integer_at_least(text: str, minimum: int) -> int:
    value = _integer(text)
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
    return value


def positive_int(text: str) -> int:
    return _integer_at_least(text, 1)


def non_negative_int(text: str) -> int:
    return _integer_at_least(text, 0)


def positive_seconds(text: str) -> float:
    """A finite number of seconds > 0."""
    try:
        value = float(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from error
    if not (0 < value < float("inf")):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def _checked_integer(check, name: str):
    """An argparse type: an integer, then ``check`` (a function of aol.engine.validation)."""

    def parse(text: str) -> int:
        try:
            return check(_integer(text))
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from error

    parse.__name__ = name  # argparse names the type in its messages
    return parse


seed = _checked_integer(validation.seed, "seed")
threads = _checked_integer(validation.threads, "threads")


def radius(text: str) -> Radius:
    try:
        return Radius.parse(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def add_radii_argument(parser: argparse.ArgumentParser, *names: str, description: str) -> None:
    """``--radii R [R ...]``: certificate radii such as 36/255, 0.5 or 1 (default: the
    papers' 36/255 72/255 108/255 1)."""
    parser.add_argument(
        *names,
        dest="radii",
        type=radius,
        nargs="+",
        default=list(PAPER_RADII),
        metavar="R",
        help=f"{description} (default: {' '.join(map(str, PAPER_RADII))})",
    )


def add_recipe_argument(parser: argparse.ArgumentParser, help: str) -> None:
    """``--recipe paper|1llc|digits|...``: the training recipe (None: the dataset's default,
    ``aol.engine.recipes.default_recipe``)."""
    parser.add_argument("--recipe", choices=sorted(recipes.RECIPES), default=None, help=help)


def add_compile_argument(parser: argparse.ArgumentParser) -> None:
    """``--compile auto|on|off`` of the commands that run training steps (train, calibrate)."""
    parser.add_argument(
        "--compile",
        choices=AUTO_ON_OFF,
        default="auto",
        help="CUDA graphs for the training step via torch.compile(mode='reduce-overhead'); "
        "auto (default) = on for CUDA, off for CPU",
    )


def resolve_compile(choice: str, device: torch.device) -> bool:
    """``auto`` compiles on CUDA only: on CPU, compiling costs minutes and gains little."""
    return choice == "on" or (choice == "auto" and device.type == "cuda")


def device(flag: str) -> torch.device:
    try:
        return resolve_device(flag)
    except ValueError as error:
        raise UsageError(str(error)) from error


def check_model(architecture: str, family: str, dataset: str) -> data.DatasetInfo:
    """Known names, and the architecture can take the dataset's shape."""
    try:
        return validation.model_fits_dataset(architecture, family, dataset)
    except ValueError as error:
        raise UsageError(str(error)) from error


def train_subset(size: int | None, info: data.DatasetInfo) -> int:
    """The images of a training epoch: ``size`` (--train-subset), checked against the
    dataset's training split, or the whole split when None."""
    return _subset(size, info.train_size, "--train-subset", f"{info.name} training split")


def test_subset(size: int | None, info: data.DatasetInfo) -> int:
    """The test images evaluated: ``size`` (--test-subset), checked against the dataset's
    test split, or the whole split when None."""
    return _subset(size, info.test_size, "--test-subset", f"{info.name} test split")


def _subset(size: int | None, available: int, flag: str, split: str) -> int:
    if size is None:
        return available
    if size > available:
        raise UsageError(
            f"argument {flag}: {size} is more than the {available} images of the {split}"
        )
    return size


def add_test_subset_argument(parser: argparse.ArgumentParser, description: str) -> None:
    """``--test-subset N``: N images of the test split (a fixed, class-balanced subset,
    aol.engine.data.subset_indices), instead of all of them."""
    parser.add_argument(
        "--test-subset",
        type=positive_int,
        metavar="N",
        help=f"{description}: a fixed, class-balanced subset of N test images (default: all)",
    )


def attack_setting(name: str):
    """The argparse type of ``--attack-points``, ``--attack-steps`` or ``--attack-restarts``."""
    return _checked_integer(functools.partial(validation.attack_setting, name), name)


def check_data_available(dataset: str, data_dir: str, download: bool) -> None:
    if dataset == "fashion-mnist":  # never downloaded: a Debian package or files in data_dir
        if data.fashion_mnist_folder(data_dir) is None:
            raise UsageError(data.missing_fashion_mnist_message(data_dir))
        return
    if dataset != "digits" and not download and not data.cifar_files_present(dataset, data_dir):
        raise UsageError(data.missing_cifar_message(dataset, data_dir))
