"""INT8 with OpenVINO/NNCF: the run (``run``), its calibration photos (``calibration``),
the search for layers kept in float (``search``) and the agreement gate (``agreement``)."""
