"""A worker: it claims batches, runs every input through the models, writes and commits.

Two schedules (``runner.Runner``: one batch after another; ``overlapped.Overlap``: the
next batch read while the model runs the current one) share the per-input phases of
``phases`` and the commit of ``commit``; ``lease_keeper`` keeps the claims alive and
``presence`` keeps the worker's row, while it works.
"""
