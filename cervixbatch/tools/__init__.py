"""Tools around the runtime: synthetic data, datasets, training, evaluation, benchmarks.

The runtime path (runner, daemon) never imports from here.
"""
