"""The ``cervixbatch`` command line: the group, its error edge, one module per command group."""

from cervixbatch.cli.main import main

__all__ = ["main"]
