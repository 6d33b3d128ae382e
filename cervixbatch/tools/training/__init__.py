"""Training the two stages: the data (``dataset``, ``data``, ``augment``), the fit
(``train``) and what watches it (``callbacks``)."""
