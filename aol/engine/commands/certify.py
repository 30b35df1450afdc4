"""Certify a trained run in float64 on exported weights, with Lipschitz and attack audits."""

from __future__ import annotations

import argparse
import json
import os
import sys

import torch

from aol.engine import data
from aol.engine.certify import CertifyConfig, certify
from aol.engine.commands import UsageError, common
from aol.engine.run_folder import (
    RunFolder,
    RunFolderError,
    check_output_file_path,
    output_lock,
)
from aol.engine.runtime import remove_orphaned_temporaries, write_json_atomically


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Clean and certified robust accuracy of a trained run (float64, exported weights, "
        "the trained model's guaranteed bound), a power-iteration Lipschitz audit and an L2 PGD "
        "attack audit. Exit status 1 when an audit fails."
    )
    parser.add_argument("--run", required=True, metavar="RUN_DIR")
    parser.add_argument("--out", required=True, metavar="FILE.json")
    common.add_radii_argument(
        parser,
        "--radii",
        "--epsilons",
        description="l2 radii in [0, 1] pixel space, e.g. 36/255 0.5 1",
    )
    for name, default in (("attack_points", 100), ("attack_steps", 50), ("attack_restarts", 2)):
        flag = f"--{name.replace('_', '-')}"
        parser.add_argument(flag, type=common.attack_setting(name), default=default)
    parser.add_argument(
        "--audit-points", type=common.positive_int, default=4, help="points of the Lipschitz audit"
    )
    parser.add_argument(
        "--audit-iterations", type=common.positive_int, default=100, help="power iterations"
    )
    common.add_test_subset_argument(parser, "certify N test images")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:K")
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--threads", type=common.threads, help="torch CPU threads")


def run(arguments: argparse.Namespace) -> int:
    device = common.device(arguments.device)
    if arguments.threads:
        torch.set_num_threads(arguments.threads)
    try:  # the run folder's and the output's problems are raised before any work
        check_output_file_path(arguments.out)
        result = RunFolder(arguments.run).read_trained_result()
        with output_lock(arguments.out):
            out_folder, out_name = os.path.split(os.path.abspath(arguments.out))
            remove_orphaned_temporaries(out_folder, (out_name,))
            if result["status"] != "diverged":
                common.check_data_available(result["dataset"], arguments.data_dir, download=False)
                common.test_subset(arguments.test_subset, data.info(result["dataset"]))
            report = certify(certify_config(arguments, device))
            write_json_atomically(arguments.out, report)
    except (RunFolderError, data.SubsetError) as error:  # a subset of files under --data-dir
        raise UsageError(str(error)) from error
    summary = {
        key: report.get(key)
        for key in ("status", "clean_accuracy", "certified_accuracy", "broken_certificates")
    }
    print(json.dumps({**summary, "audits_passed": report["audits_passed"]}))
    if not report["audits_passed"]:
        print(
            f"aol certify: audit FAILED for {arguments.run}; see {arguments.out}", file=sys.stderr
        )
        return 1
    return 0


def certify_config(arguments: argparse.Namespace, device: torch.device) -> CertifyConfig:
    return CertifyConfig(
        run=arguments.run,
        radii=tuple(arguments.radii),
        attack_points=arguments.attack_points,
        attack_steps=arguments.attack_steps,
        attack_restarts=arguments.attack_restarts,
        audit_points=arguments.audit_points,
        audit_iterations=arguments.audit_iterations,
        device=device,
        data_dir=arguments.data_dir,
        test_subset=arguments.test_subset,
    )
