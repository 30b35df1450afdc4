"""``python -m aol.bench layers|digits|gpu ...``: another spelling of
``python -m aol bench ...`` (the benchmarks live in aol/engine/bench/)."""

import sys

if __name__ == "__main__":
    from aol.engine.cli import main

    sys.exit(main(["bench", *sys.argv[1:]]))
