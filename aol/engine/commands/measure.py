"""Measure training-step time, exported inference time, weight-transform time and peak memory."""

from __future__ import annotations

import argparse
import json

import torch

from aol.engine.commands import UsageError, common
from aol.engine.measure import MeasureConfig, measure
from aol.engine.runtime import write_json_atomically


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Time a training step, inference of the exported model and the weight transform "
        "(warm-up, then median and quartiles of --repeats interleaved runs, CUDA-synchronised), "
        "and the peak memory of 3 training steps, for one architecture x family x batch size."
    )
    parser.add_argument("--architecture", required=True)
    parser.add_argument("--family", required=True)
    parser.add_argument("--batch-size", type=common.positive_int, required=True)
    parser.add_argument("--out", required=True, metavar="FILE.json")
    parser.add_argument("--dataset", default="cifar10", help="input shape and classes from it")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:K")
    parser.add_argument("--repeats", type=common.positive_int, default=10)
    parser.add_argument("--warmup", type=common.non_negative_int, default=2)
    parser.add_argument("--threads", type=common.positive_int, help="torch CPU threads")


def run(arguments: argparse.Namespace) -> int:
    common.check_model(arguments.architecture, arguments.family, arguments.dataset)
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
            family=arguments.family,
            dataset=arguments.dataset,
            batch_size=arguments.batch_size,
            device=device,
            repeats=arguments.repeats,
            warmup=arguments.warmup,
        )
    )
    write_json_atomically(arguments.out, report)
    print(json.dumps({k: report[k] for k in ("train_step_seconds", "peak_train_memory_bytes")}))
    return 0
