"""Running cervixbatch for months: worker presence and status, reprocessing, retention,
backups and checks. The library side of ``status``, ``reprocess``, ``purge`` and ``db``."""
