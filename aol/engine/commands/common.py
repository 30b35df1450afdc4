"""Argument checks shared by the subcommands: each turns a bad value into one UsageError."""

from __future__ import annotations

import argparse

import torch

from aol import architectures, families
from aol.engine import data
from aol.engine.commands import UsageError
from aol.engine.runtime import resolve_device
from aol.radius import PAPER_RADII, Radius


def _integer_at_least(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from error
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
    return value


def positive_int(text: str) -> int:
    return _integer_at_least(text, 1)


def non_negative_int(text: str) -> int:
    return _integer_at_least(text, 0)


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


def device(flag: str) -> torch.device:
    try:
        return resolve_device(flag)
    except ValueError as error:
        raise UsageError(str(error)) from error


def check_model(architecture: str, family: str, dataset: str) -> data.DatasetInfo:
    """Known names, and the architecture can take the dataset's shape (built on the meta
    device: no memory, no work)."""
    try:
        info = data.info(dataset)
        family_object = families.get(family)
        with torch.device("meta"):
            model = architectures.build(
                architecture, family_object, info.num_classes, info.channels, info.image_size
            )
            scores = model(torch.empty(2, info.channels, info.image_size, info.image_size))
    except (KeyError, ValueError, RuntimeError) as error:
        raise UsageError(str(error)) from error
    if tuple(scores.shape) != (2, info.num_classes):
        raise UsageError(
            f"{architecture} on {dataset} gives outputs of shape {tuple(scores.shape[1:])}, "
            f"expected ({info.num_classes},)"
        )
    return info


def check_data_available(dataset: str, data_dir: str, download: bool) -> None:
    if dataset != "digits" and not download and not data.cifar_files_present(dataset, data_dir):
        raise UsageError(data.missing_cifar_message(dataset, data_dir))
