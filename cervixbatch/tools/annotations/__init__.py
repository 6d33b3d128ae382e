"""Annotations as training input: mask folders and the formats of common tools
(``reading``, ``formats``, ``shapes``), outline strokes turned into regions (``outline``)
and the contact sheet that shows the rule (``outline_sheet``)."""
