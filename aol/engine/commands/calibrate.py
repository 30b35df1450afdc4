"""Time real training steps of a (dataset, architecture, family) and write its epoch time."""

from __future__ import annotations

import argparse
import json

import torch

from aol.engine import budget, recipes
from aol.engine.commands import UsageError, common
from aol.engine.commands.train import add_precision_arguments, resolve_channels_last
from aol.engine.run_folder import RunFolderError, check_output_file_path
from aol.engine.runtime import write_json_atomically


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Time --steps training steps (data order, augmentation, precision, loss and SGD step "
        "of a run with the recipe) after --warmup untimed ones (compilation), in 5 chunks "
        "synchronised at both ends, and write the seconds per epoch on this device (the "
        "median chunk's time per step) to FILE.json; python -m aol train --budget-seconds S "
        "--calibration FILE.json derives its epochs from it."
    )
    parser.add_argument("--dataset", required=True, help="digits | cifar10 | cifar100")
    parser.add_argument("--architecture", required=True)
    parser.add_argument("--family", required=True)
    parser.add_argument("--out", required=True, metavar="FILE.json")
    common.add_recipe_argument(
        parser, help="its batch size and augmentation are timed (default: the dataset's recipe)"
    )
    parser.add_argument("--batch-size", type=common.positive_int)
    parser.add_argument("--steps", type=common.positive_int, default=20)
    parser.add_argument("--warmup", type=common.non_negative_int, default=5)
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:K")
    parser.add_argument("--data-dir", default="data", help="where CIFAR lives (default: data)")
    parser.add_argument("--threads", type=common.threads, help="torch CPU threads")
    common.add_compile_argument(parser)
    add_precision_arguments(parser, "timed")


def run(arguments: argparse.Namespace) -> int:
    common.check_model(arguments.architecture, arguments.family, arguments.dataset)
    recipe_name = arguments.recipe or recipes.default_recipe(arguments.dataset)
    recipe = recipes.get(recipe_name).with_overrides(batch_size=arguments.batch_size)
    device = common.device(arguments.device)
    common.check_data_available(arguments.dataset, arguments.data_dir, False)
    try:
        check_output_file_path(arguments.out)
    except RunFolderError as error:
        raise UsageError(str(error)) from error
    if arguments.threads:
        torch.set_num_threads(arguments.threads)
    key = budget.calibration_key(
        arguments.dataset, arguments.architecture, arguments.family, recipe, arguments.precision
    )
    calibration = budget.calibrate(
        key,
        recipe,
        device,
        steps=arguments.steps,
        warmup=arguments.warmup,
        compile_step=common.resolve_compile(arguments.compile, device),
        data_dir=arguments.data_dir,
        channels_last=resolve_channels_last(arguments.channels_last, device, arguments.precision),
    )
    write_json_atomically(arguments.out, calibration)
    summary = ("family", "device_name", "seconds_per_step", "seconds_per_epoch")
    print(json.dumps({key: calibration[key] for key in summary}))
    return 0
