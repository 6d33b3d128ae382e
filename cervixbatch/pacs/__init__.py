"""Pulling from a DICOMweb PACS: QIDO-RS to find instances, WADO-RS to fetch them into the
inbox, where they become inputs like any dropped file (:mod:`cervixbatch.pacs.source`)."""
