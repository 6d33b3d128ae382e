"""Tools around the runtime, one package each: ``synth`` (synthetic data, two
generations), ``training``, ``annotations``, ``evaluation``, ``quantize`` and ``bench``;
``cards`` is the model card training writes. Their commands live in ``cli`` under the
command's name.

The runtime path (worker, daemon) never imports from here.
"""
