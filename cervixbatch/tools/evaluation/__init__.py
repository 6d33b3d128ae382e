"""Measuring models against masks: ``evaluate`` (a model pair on an annotated folder),
``compare`` (two pairs side by side) and ``boundary`` (boundary F against strokes)."""
