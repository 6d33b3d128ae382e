"""``cervixbatch backfill``: a backlog of photos (folders or a manifest) through the same
phases, outbox and database as ``process``, scheduled by Ray Data over a cluster
(:mod:`cervixbatch.backfill.engine`) or by today's runner (``--engine local``).

Ray is imported only by :mod:`cervixbatch.backfill.engine` and the callables it ships to
the cluster never import it: the runtime path knows nothing of Ray.
"""
