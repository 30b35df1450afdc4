"""Train and certify aol-digits for every registered family on digits; print one table.

For each family: ``python -m aol train --dataset digits --architecture aol-digits
--family F --seed S --out OUT/F`` (the ``digits`` recipe unless overridden), then
``python -m aol certify --run OUT/F --out OUT/F/certify.json``. Existing finished runs
are reused (the train command resumes or reports them).

``train s`` is the run's wall time including the per-epoch test evaluation; ``steps s``
the training steps alone (for the baselines most of the difference is their
guaranteed bound, computed at every evaluation). ``cert R %`` is the certified accuracy
at each radius R of certify.json (its keys: 36/255, 72/255, 108/255, 1 by default),
``PGD R %`` the accuracy under the attack audit at the first one.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

from aol import families
from aol.engine.run_folder import RunFolder


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="results/digits", help="default: results/digits")
    parser.add_argument("--families", nargs="+", default=None, help="default: all registered")
    parser.add_argument("--seed", default="0")
    parser.add_argument("--threads", default=None, help="torch CPU threads")
    parser.add_argument(
        "--train-args", nargs=argparse.REMAINDER, default=[], help="extra train flags (last)"
    )


def _cell(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _table(rows: list[tuple]) -> str:
    """One Markdown row per family; the certified accuracy at every radius of the
    certify.json files (keys such as "36/255"), the attack's at the first radius."""
    radii = list(rows[0][2]["certified_accuracy"]) if rows else []
    first = radii[:1]
    header = ["family", "status", "train s", "steps s", "clean %",
              *(f"cert {radius} %" for radius in radii), *(f"PGD {radius} %" for radius in first),
              "broken", "audits"]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, result, report, _ in rows:
        certified, empirical = report["certified_accuracy"], report["empirical_robust_accuracy"]
        broken = sum(v or 0 for v in report["broken_certificates"].values())
        cells = [name, report["status"], f"{result['train_seconds']:.0f}",
                 f"{result['train_step_seconds']:.0f}", _cell(report["clean_accuracy"]),
                 *(_cell(certified.get(radius)) for radius in radii),
                 *(_cell(empirical.get(radius)) for radius in first),
                 str(broken), "passed" if report["audits_passed"] else "FAILED"]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run(arguments: argparse.Namespace) -> int:
    import json

    from aol.engine.cli import main as aol_main  # the CLI imports this module

    names = arguments.families or families.names()
    for name in names:
        families.get(name)
    threads = ["--threads", arguments.threads] if arguments.threads else []
    rows = []
    for name in names:
        run_dir = os.path.join(arguments.out, name)
        train = ["train", "--dataset", "digits", "--architecture", "aol-digits", "--family", name,
                 "--seed", arguments.seed, "--out", run_dir, "--device", "cpu", *threads,
                 *arguments.train_args]  # fmt: skip
        if aol_main(train) != 0:
            return 1
        report_path = os.path.join(run_dir, "certify.json")
        certify_code = aol_main(["certify", "--run", run_dir, "--out", report_path,
                                 "--device", "cpu", *threads])  # fmt: skip
        result = RunFolder(run_dir).read_result()
        with open(report_path) as stream:
            report = json.load(stream)
        rows.append((name, result, report, certify_code))
    print(f"# aol bench digits: aol-digits, seed {arguments.seed}, torch {torch.__version__}")
    print(_table(rows))
    sys.stdout.flush()
    return 0 if all(code == 0 for *_, code in rows) else 1
