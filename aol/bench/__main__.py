"""``python -m aol.bench {layers,digits}``: layer cost ratios; the digits goal for every family."""

from __future__ import annotations

import argparse
import sys

from aol.bench import digits, layers

BENCHMARKS = {"layers": layers, "digits": digits}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aol.bench", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, module in BENCHMARKS.items():
        module.add_arguments(commands.add_parser(name, help=module.__doc__.splitlines()[0]))
    arguments = parser.parse_args(argv)
    return BENCHMARKS[arguments.command].run(arguments)


if __name__ == "__main__":
    sys.exit(main())
