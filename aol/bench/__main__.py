"""``python -m aol.bench layers``: per-family layer cost as ratios to ``standard``."""

from __future__ import annotations

import argparse
import sys

from aol.bench import layers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aol.bench", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    layers.add_arguments(commands.add_parser("layers", help=layers.__doc__.splitlines()[0]))
    arguments = parser.parse_args(argv)
    return layers.run(arguments)


if __name__ == "__main__":
    sys.exit(main())
