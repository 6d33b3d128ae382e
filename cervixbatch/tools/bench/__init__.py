"""``cervixbatch bench``: the runs (``run``), their set-up (``setup``), the seed loop
baseline (``seed_loop``), runtimes and precisions (``runtimes``), schedules
(``schedule``), the simulated device (``device``) and the file paths (``paths``)."""
