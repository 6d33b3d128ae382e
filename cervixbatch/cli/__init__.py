"""The ``cervixbatch`` command line: the group, its error edge, one module per command group.

A module here is named after its command (``cli/train.py`` is ``cervixbatch train``) and
only parses and formats; the work is done by the package of the same concept
(``tools.training``, ``tools.synth``, ``tools.bench``, ``tools.evaluation``, ``ops``...).
"""

from cervixbatch.cli.main import main

__all__ = ["main"]
