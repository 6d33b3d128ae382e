"""``python -m cervixbatch.cli``: the same as the ``cervixbatch`` script."""

from cervixbatch.cli import main

main()
