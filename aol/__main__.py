"""``python -m aol {train,certify,measure}``: the engine's commands (see the README)."""

from __future__ import annotations

import argparse
import sys

from aol.commands import UsageError, certify, measure, train

COMMANDS = {"train": train, "certify": certify, "measure": measure}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="aol", description=__doc__)
    subcommands = parser.add_subparsers(dest="command", required=True)
    for name, module in COMMANDS.items():
        summary = module.__doc__.strip().splitlines()[0]
        module.add_arguments(subcommands.add_parser(name, help=summary))
    arguments = parser.parse_args(argv)
    try:
        return COMMANDS[arguments.command].run(arguments)
    except UsageError as error:
        print(f"aol {arguments.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
