"""Layer cost of every registered family, as ratios to ``standard`` measured in the same run.

Cases (batch 250 by default, the AOL paper's batch size):

* ``conv``: one 192 -> 192 3x3 convolution on 8x8 inputs (AOL-Small's encoding layer);
* ``dense``: one 1024 -> 1024 dense layer (AOL-Small's dense width, 64 * 16);
* ``stack``: 12 such convolutions and 4 such dense layers with the family's
  activation in between (FirstChannels(16) + Flatten joins the two parts).
  Not in the default run (it takes ~15x the time of ``conv``); ask with ``--cases``.

For each case and family: a training step (forward, ``out.square().mean()``,
backward, SGD step), inference of the model as trained (eval mode: weight
transform recomputed, or cached where the family caches), inference of
``aol.export(model)``, and the training-time weight transform alone (every
constrained layer's ``weight_transform()``, ``aol.engine.cost``), shown as a share
of ``standard``'s training step. All candidates of one case are timed
interleaved, round by round, so that the ratios compare like with like on a
noisy machine. Then the peak memory of 3 training steps
(``aol.engine.memory.peak_training_memory``), as a ratio to ``standard``.

Next to the measured training ratio: the ratio predicted by counting
multiply-adds as 1LLC Table 1 does (Prach et al., CVPR 2024): every module's
``multiply_adds(input_shape, batch_size)`` (plain layers are counted in
``aol.engine.cost``), summed over the model, divided by ``standard``'s count.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
from collections.abc import Callable

import torch
from torch import nn

import aol
from aol import families
from aol.engine.cost import (
    REFERENCE_FAMILY,
    inference,
    model_multiply_adds,
    training_memory,
    training_step,
    weight_transform,
)
from aol.engine.timing import Timing, interleaved_timings

CASES = ("conv", "dense", "stack")
DEFAULT_CASES = ("conv", "dense")


def build_case(case: str, family: families.LayerFamily) -> tuple[nn.Module, tuple[int, ...]]:
    """The model of ``case`` built from ``family`` and its per-sample input shape."""
    if case == "conv":
        return nn.Sequential(family.conv(192, 192, 3)), (192, 8, 8)
    if case == "dense":
        return nn.Sequential(family.linear(1024, 1024)), (1024,)
    if case == "stack":
        layers: list[nn.Module] = []
        for _ in range(12):
            layers += [family.conv(192, 192, 3), family.activation()]
        layers += [aol.FirstChannels(16), nn.Flatten()]
        for index in range(4):
            layers.append(family.linear(1024, 1024))
            if index < 3:
                layers.append(family.activation())
        return nn.Sequential(*layers), (192, 8, 8)
    raise ValueError(f"unknown case {case!r}; choose from {', '.join(CASES)}")


def output_square_mean(model: nn.Module, x: torch.Tensor) -> Callable[[], torch.Tensor]:
    """The benchmark's loss: the mean square of the output (a single layer has no labels)."""
    return lambda: model(x).square().mean()


def measure_case(
    case: str, family_names: list[str], batch_size: int, repeats: int, device: torch.device
) -> list[dict]:
    """Rows of one case: one per family, with times (seconds) and ratios to the reference."""
    candidates: dict[str, Callable[[], None]] = {}
    models: dict[str, tuple[nn.Module, torch.Tensor]] = {}
    multiply_adds: dict[str, int | None] = {}
    for name in family_names:
        torch.manual_seed(0)
        model, input_shape = build_case(case, families.get(name))
        model.to(device)
        x = torch.rand(batch_size, *input_shape, device=device)
        models[name] = (model, x)
        multiply_adds[name] = model_multiply_adds(model, x)
        candidates[f"{name}/train"] = training_step(model, output_square_mean(model, x))
        # a separate copy: inference() puts its model in eval mode, which must not
        # switch the training step's model out of training mode
        candidates[f"{name}/infer"] = inference(copy.deepcopy(model), x)
        candidates[f"{name}/exported"] = inference(aol.export(model), x)
        transform = weight_transform(model)
        if transform is not None:
            candidates[f"{name}/transform"] = transform
    timings = interleaved_timings(candidates, device, repeats=repeats)
    memory = {
        name: training_memory(model, output_square_mean(model, x), device).bytes
        for name, (model, x) in models.items()
    }
    reference = {kind: timings[f"{REFERENCE_FAMILY}/{kind}"] for kind in ("train", "infer")}
    reference_count = multiply_adds[REFERENCE_FAMILY]
    rows = []
    for name in family_names:
        row: dict = {"case": case, "family": name}
        for kind in ("train", "infer", "exported"):
            timing: Timing = timings[f"{name}/{kind}"]
            baseline = reference["train" if kind == "train" else "infer"]
            row[f"{kind}_ms"] = 1e3 * timing.median
            row[f"{kind}_iqr_ms"] = 1e3 * timing.iqr
            row[f"{kind}_ratio"] = timing.median / baseline.median
        transform = timings.get(f"{name}/transform")
        row["transform_ms"] = 0.0 if transform is None else 1e3 * transform.median
        row["transform_share"] = row["transform_ms"] / reference["train"].median / 1e3
        count = multiply_adds[name]
        row["predicted_train_ratio"] = (
            None if count is None or not reference_count else count / reference_count
        )
        row["memory_bytes"] = memory[name]
        row["memory_ratio"] = memory[name] / memory[REFERENCE_FAMILY]
        rows.append(row)
    return rows


def format_table(rows: list[dict]) -> str:
    header = (
        "| case | family | train ms (IQR) | train / std | MAC-predicted / std "
        "| measured / predicted | infer / std | exported / std | weight transform ms "
        "| transform / std step | peak train MiB | memory / std |"
    )
    lines = [header, "|" + "---|" * 12]
    for row in rows:
        predicted = row["predicted_train_ratio"]
        cells = [
            row["case"],
            row["family"],
            f"{row['train_ms']:.1f} ({row['train_iqr_ms']:.1f})",
            f"{row['train_ratio']:.2f}x",
            "n/a" if predicted is None else f"{predicted:.2f}x",
            "n/a" if predicted is None else f"{row['train_ratio'] / predicted:.2f}",
            f"{row['infer_ratio']:.2f}x",
            f"{row['exported_ratio']:.2f}x",
            f"{row['transform_ms']:.1f}",
            f"{row['transform_share']:.2f}",
            f"{row['memory_bytes'] / 2**20:.1f}",
            f"{row['memory_ratio']:.2f}x",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch-size", type=int, default=250, help="default: 250 (paper)")
    parser.add_argument(
        "--repeats", type=int, default=10, help="timed rounds after 2 warm-up (default 10)"
    )
    parser.add_argument(
        "--cases",
        nargs="+",
        default=list(DEFAULT_CASES),
        choices=CASES,
        help=f"default: {' '.join(DEFAULT_CASES)} (stack takes ~15x as long as conv)",
    )
    parser.add_argument(
        "--families", nargs="+", default=None, help="default: every registered family"
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")


def run(arguments: argparse.Namespace) -> int:
    family_names = arguments.families or families.names()
    for name in family_names:
        families.get(name)  # fail early, listing the registered names
    if REFERENCE_FAMILY not in family_names:
        family_names = [REFERENCE_FAMILY, *family_names]
    if arguments.batch_size < 1 or arguments.repeats < 2:
        raise SystemExit("--batch-size must be >= 1 and --repeats >= 2")
    device = torch.device(arguments.device)
    if device.type == "cuda":
        device_name = torch.cuda.get_device_name(device)
    else:
        device_name = platform.processor() or platform.machine()
    print(
        f"# aol bench layers: batch {arguments.batch_size}, median of {arguments.repeats} "
        f"after 2 warm-up, device {device} ({device_name}), "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads",
        flush=True,
    )
    rows = []
    for case in arguments.cases:
        rows += measure_case(case, family_names, arguments.batch_size, arguments.repeats, device)
        print(f"# measured {case}", flush=True)
    print(format_table(rows))
    if arguments.json:
        with open(arguments.json, "w") as handle:
            json.dump(rows, handle, indent=2)
    return 0
