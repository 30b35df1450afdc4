"""The subcommands of ``python -m aol``: each module has ``add_arguments`` and ``run``."""


class UsageError(ValueError):
    """A bad argument: reported as one line, exit status 2, before any work."""
