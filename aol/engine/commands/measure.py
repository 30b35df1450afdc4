"""Measure training-step time, exported inference time, weight-transform time and peak memory
of several families of one architecture, side by side, as ratios to ``standard``."""

from __future__ import annotations

import argparse
import json

import torch

from aol.engine.commands import UsageError, common
from aol.engine.measure import MeasureConfig, measure, measured_families
from aol.engine.runtime import write_json_atomically

SUMMARY_KEYS = ("train_step_vs_standard", "inference_vs_standard", "peak_train_memory_bytes")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Time a training step, inference of the exported model and the weight transform "
        "of every family named and of standard (the reference), in one process, interleaved "
        "round by round (warm-up, then median and quartiles of --repeats rounds, "
        "CUDA-synchronised), and the peak memory of 3 training steps; ratios to standard "
        "come from the same rounds."
    )
    parser.add_argument("--architecture", required=True)
    parser.add_argument(
        "--families", nargs="+", required=True, metavar="FAMILY", help="standard is always added"
    )
    parser.add_argument("--batch-size", type=common.positive_int, required=True)
    parser.add_argument("--out", required=True, metavar="FILE.json")
    parser.add_argument("--dataset", default="cifar10", help="input shape and classes from it")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:K")
    parser.add_argument("--repeats", type=common.positive_int, default=10)
    parser.add_argument("--warmup", type=common.non_negative_int, default=2)
    parser.add_argument("--threads", type=common.threads, help="torch CPU threads")


def run(arguments: argparse.Namespace) -> int:
    families = measured_families(arguments.families)
    for family in families:
        common.check_model(arguments.architecture, family, arguments.dataset)
    device = common.device(arguments.device)
    if arguments.repeats < 10:
        raise UsageError(
            f"--repeats must be >= 10 for a median and quartiles, got {arguments.repeats}"
        )
    if arguments.threads:
        torch.set_num_threads(arguments.threads)
    report = measure(
        MeasureConfig(
            architecture=arguments.architecture,
            families=tuple(families),
            dataset=arguments.dataset,
            batch_size=arguments.batch_size,
            device=device,
            repeats=arguments.repeats,
            warmup=arguments.warmup,
        )
    )
    write_json_atomically(arguments.out, report)
    for family, record in report["families"].items():
        summary = {key: record[key] for key in SUMMARY_KEYS}
        print(json.dumps({"family": family, **summary}))
    return 0
