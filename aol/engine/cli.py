"""``python -m aol {train,calibrate,certify,measure,bench}``: the engine's commands
(docs/engine.md)."""

from __future__ import annotations

import argparse
import sys

from aol.engine.bench import digits, gpu, layers
from aol.engine.commands import UsageError, calibrate, certify, measure, train

COMMANDS = {"train": train, "calibrate": calibrate, "certify": certify, "measure": measure}
BENCHMARKS = {"layers": layers, "digits": digits, "gpu": gpu}


def _summary(module) -> str:
    return module.__doc__.strip().splitlines()[0]


class ArgumentParser(argparse.ArgumentParser):
    """argparse without the usage block before an error: one line, the error last, exit 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="aol", description=__doc__)
    subcommands = parser.add_subparsers(dest="command", required=True)
    for name, module in COMMANDS.items():
        module.add_arguments(subcommands.add_parser(name, help=_summary(module)))
    bench = subcommands.add_parser(
        "bench", help="benchmarks: layer cost ratios; the digits goal; the GPU table"
    )
    benchmarks = bench.add_subparsers(dest="benchmark", required=True)
    for name, module in BENCHMARKS.items():
        module.add_arguments(benchmarks.add_parser(name, help=_summary(module)))
    return parser


def main(argv: list[str] | None = None) -> int:
    arguments = build_parser().parse_args(argv)
    if arguments.command == "bench":
        module = BENCHMARKS[arguments.benchmark]
    else:
        module = COMMANDS[arguments.command]
    try:
        return module.run(arguments)
    except UsageError as error:
        print(f"aol {arguments.command}: error: {error}", file=sys.stderr)
        return 2
