"""``python -m aol``: the engine's command line (``aol.engine.cli``)."""

import sys

from aol.engine.cli import main

sys.exit(main())
