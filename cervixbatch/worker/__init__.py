"""A worker: it claims batches, runs every input through the models, writes and commits.

Two schedules (``runner.Runner``: one batch after another; ``overlapped.Overlap``, the
default: the next batch read while the model runs the current one) run one public
``batch_phases.BatchPhases`` (claim, read, segment, write, commit, after-commit, the
pools), which the Runner builds; its per-input functions (``phases``) are what the Ray
backfill's stages call, and ``commit`` records a batch. ``lease_keeper`` keeps the claims
alive and ``presence`` keeps the worker's row while it works; ``one_shot`` starts and
stops a worker for a run that ends (``process``, ``backfill``).
"""
