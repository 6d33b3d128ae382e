"""Synthetic colposcopy photos with their masks: ``v1`` (painted layers, ``layers``) and
``v2`` (a scene: tissue, surround, camera), and ``colour_stats`` to compare them."""
