"""weir side by side with PyFlink and Bytewax (``make bench-peers``): the same workloads, data and output checks.

``workloads.py`` (data, user functions, digest, reference; stdlib only), ``weir_jobs.py``, ``pyflink_jobs.py``
and ``bytewax_jobs.py`` (one script per engine, each run with its own venv), ``run.py`` (the runner).
"""
