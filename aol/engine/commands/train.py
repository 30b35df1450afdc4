"""Train a network; resumable, writes checkpoint.pt, metrics.jsonl and result.json."""

from __future__ import annotations

import argparse
import json
import sys

import torch

from aol.engine import budget, data, recipes
from aol.engine.commands import UsageError, common
from aol.engine.run_folder import RunFolderError, check_run_folder_path
from aol.engine.runtime import device_name
from aol.engine.train import PRECISIONS, TrainConfig, train


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Train a network on a dataset with a recipe (paper | 1llc | digits). Rerunning the "
        "same command resumes from RUN_DIR/checkpoint.pt; a finished run is reported, not redone."
    )
    parser.add_argument(
        "--dataset", required=True, help="digits | fashion-mnist | cifar10 | cifar100"
    )
    parser.add_argument("--architecture", required=True, help="e.g. aol-digits, aol-small")
    parser.add_argument("--family", required=True, help="a registered layer family, e.g. aol")
    parser.add_argument("--seed", type=common.seed, required=True)
    parser.add_argument("--out", required=True, metavar="RUN_DIR")
    common.add_recipe_argument(
        parser, help="preset of every knob below (default: digits for digits, paper otherwise)"
    )
    _add_recipe_overrides(parser)
    parser.add_argument(
        "--train-subset",
        type=common.positive_int,
        metavar="N",
        help="train on N images of the training split (part of the run's identity): a fixed, "
        "class-balanced subset, the same for every seed (default: all of them)",
    )
    common.add_test_subset_argument(
        parser,
        "evaluate the per-epoch monitoring metrics on N test images (not part of the "
        "run's identity; python -m aol certify --test-subset for the certificate)",
    )
    _add_budget_arguments(parser)
    parser.add_argument("--checkpoint-every", type=common.positive_int, default=10)
    parser.add_argument(
        "--eval-every",
        type=common.positive_int,
        default=1,
        help="test metrics every N epochs and after the last (default 1); the baselines' "
        "bound costs seconds per evaluation",
    )
    common.add_radii_argument(
        parser,
        "--radii",
        description="l2 radii of the per-epoch monitoring certificate (float32; the "
        "authoritative one is python -m aol certify); not part of the run's identity",
    )
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:K")
    parser.add_argument(
        "--data-dir",
        default="data",
        help="where CIFAR lives, or Fashion-MNIST if not from its Debian package (default: data)",
    )
    parser.add_argument("--download", action="store_true", help="allow downloading CIFAR")
    parser.add_argument("--threads", type=common.threads, help="torch CPU threads")
    common.add_compile_argument(parser)
    add_precision_arguments(parser, "trained")


def add_precision_arguments(parser: argparse.ArgumentParser, verb: str) -> None:
    """--precision and --channels-last (train, and calibrate, which times the same steps)."""
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="fp32",
        help=f"arithmetic of the {verb} steps (part of a run's and a calibration's identity): "
        "fp32 (default; TF32 off), tf32 (TF32 matmuls and convolutions, CUDA only), bf16 "
        "(bfloat16 autocast; the AOL rescaling stays float32); certification is float64 "
        "whatever the precision",
    )
    parser.add_argument(
        "--channels-last",
        choices=common.AUTO_ON_OFF,
        default="auto",
        help="channels-last images and convolution weights; auto (default) = on for CUDA "
        "with --precision bf16 or tf32 (tensor-core convolutions), off otherwise",
    )


def _add_budget_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "training budget (instead of --epochs; 1-Lipschitz Layers Compared, Table 8)"
    )
    group.add_argument(
        "--budget-seconds",
        type=common.positive_seconds,
        help="seconds of training steps on this device; the epochs are budget / the "
        "calibrated epoch time, rounded, at least 1, and the schedule follows them "
        "(needs --calibration)",
    )
    group.add_argument(
        "--calibration",
        metavar="FILE.json",
        help="the epoch time written by python -m aol calibrate for this run's dataset, "
        "architecture, family, batch size and augmentation",
    )


def _add_recipe_overrides(parser: argparse.ArgumentParser) -> None:
    knobs = parser.add_argument_group("recipe overrides (default: the recipe's value)")
    knobs.add_argument("--epochs", type=common.positive_int)
    knobs.add_argument("--batch-size", type=common.positive_int)
    knobs.add_argument("--lr", type=float)
    knobs.add_argument("--momentum", type=float)
    knobs.add_argument("--nesterov", action=argparse.BooleanOptionalAction, default=None)
    knobs.add_argument("--weight-decay", type=float)
    knobs.add_argument(
        "--decay-biases",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="weight decay also on 1-d parameters (biases)",
    )
    knobs.add_argument("--offset", type=float, help="offset u of the loss")
    knobs.add_argument("--temperature", type=float, help="temperature t of the loss")
    knobs.add_argument("--schedule", choices=recipes.SCHEDULES)
    knobs.add_argument(
        "--lr-drops",
        type=common.non_negative_int,
        nargs="+",
        metavar="EPOCH",
        help="step schedule: 0-based epochs where lr is divided by 10",
    )
    knobs.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None)


def config_from_arguments(arguments: argparse.Namespace) -> TrainConfig:
    """Every check that can fail happens here, before any work."""
    info = common.check_model(arguments.architecture, arguments.family, arguments.dataset)
    train_images = common.train_subset(arguments.train_subset, info)
    common.test_subset(arguments.test_subset, info)
    recipe_name = arguments.recipe or recipes.default_recipe(arguments.dataset)
    recipe = recipes.get(recipe_name).with_overrides(
        epochs=arguments.epochs,
        batch_size=arguments.batch_size,
        lr=arguments.lr,
        momentum=arguments.momentum,
        nesterov=arguments.nesterov,
        weight_decay=arguments.weight_decay,
        decay_biases=arguments.decay_biases,
        offset=arguments.offset,
        temperature=arguments.temperature,
        schedule=arguments.schedule,
        lr_drops=tuple(arguments.lr_drops) if arguments.lr_drops else None,
        augment=arguments.augment,
    )
    try:
        recipe.validate()
    except recipes.RecipeError as error:
        raise UsageError(f"argument --{error.knob.replace('_', '-')}: {error}") from error
    device = common.device(arguments.device)
    common.check_data_available(arguments.dataset, arguments.data_dir, arguments.download)
    budget_plan = budget_from_arguments(arguments, recipe, device, train_images)
    if budget_plan is not None:
        recipe = recipe.with_overrides(epochs=budget_plan.planned_epochs)
    return TrainConfig(
        dataset=arguments.dataset,
        architecture=arguments.architecture,
        family=arguments.family,
        seed=arguments.seed,
        out=arguments.out,
        recipe_name=recipe_name,
        recipe=recipe,
        checkpoint_every=arguments.checkpoint_every,
        eval_every=arguments.eval_every,
        device=device,
        data_dir=arguments.data_dir,
        download=arguments.download,
        compile=common.resolve_compile(arguments.compile, device),
        radii=tuple(arguments.radii),
        precision=arguments.precision,
        channels_last=resolve_channels_last(arguments.channels_last, device, arguments.precision),
        budget=budget_plan,
        train_subset=arguments.train_subset,
        test_subset=arguments.test_subset,
    )


def budget_from_arguments(
    arguments: argparse.Namespace, recipe: recipes.Recipe, device: torch.device, train_images: int
) -> budget.BudgetPlan | None:
    """The budget plan from --budget-seconds and --calibration for epochs of
    ``train_images`` images (None without a budget); a resumed run replaces it by the plan
    saved in its folder (aol.engine.train.train)."""
    if arguments.budget_seconds is None and arguments.calibration is None:
        return None
    if arguments.budget_seconds is None or arguments.calibration is None:
        raise UsageError("--budget-seconds and --calibration go together")
    if arguments.epochs is not None:
        raise UsageError("give either --epochs or --budget-seconds, not both")
    key = budget.calibration_key(
        arguments.dataset, arguments.architecture, arguments.family, recipe, arguments.precision
    )
    try:
        calibration = budget.read_calibration(arguments.calibration, key)
    except budget.CalibrationError as error:
        raise UsageError(str(error)) from error
    if calibration.get("device_name") != device_name(device):
        print(
            f"aol train: warning: {arguments.calibration} was calibrated on "
            f"{calibration.get('device_name')}, this run trains on {device_name(device)}",
            file=sys.stderr,
        )
    steps = budget.steps_per_epoch(train_images, recipe.batch_size)
    return budget.plan(arguments.budget_seconds, calibration, steps)


def resolve_channels_last(choice: str, device: torch.device, precision: str) -> bool:
    """``auto``: channels-last where cuDNN's tensor-core convolutions want it (CUDA, bf16 or
    tf32); a CPU's convolutions gain nothing from it."""
    tensor_cores = device.type == "cuda" and precision in ("bf16", "tf32")
    return choice == "on" or (choice == "auto" and tensor_cores)


def run(arguments: argparse.Namespace) -> int:
    config = config_from_arguments(arguments)
    if arguments.threads:
        torch.set_num_threads(arguments.threads)
    try:
        check_run_folder_path(config.out)
        result = train(config)  # the folder's problems are raised before any work
    except (RunFolderError, data.SubsetError) as error:  # a subset of files under --data-dir
        raise UsageError(str(error)) from error
    summary = {
        key: result.get(key)
        for key in ("status", "epochs_completed", "test_accuracy", "test_certified_accuracy")
    }
    print(json.dumps(summary))
    return 0
