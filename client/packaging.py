"""Job packaging: the compiled graph pickled with cloudpickle, plus its code-free topology.

Functions defined in the job file (``__main__``) are pickled by value by cloudpickle. Modules the job file
imports from its own directory are registered to be pickled by value too, so a job made of a few local
files runs on TaskManagers that do not have them.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import sys

import cloudpickle

from weir.graph import python_files
from weir.graph.jobgraph import JobGraph, topology

_OWN_PACKAGES = {"weir", "client", "jobmanager", "taskmanager", "state"}


def _job_dir() -> str | None:
    main = sys.modules.get("__main__")
    f = getattr(main, "__file__", None)
    return os.path.dirname(os.path.abspath(f)) if f else None


def _register_local_modules(job_dir: str) -> None:
    for name, mod in list(sys.modules.items()):
        f = getattr(mod, "__file__", None)
        if not f or name == "__main__" or name.split(".")[0] in _OWN_PACKAGES:
            continue
        path = os.path.abspath(f)
        if path.startswith(job_dir + os.sep) and "site-packages" not in path:
            with contextlib.suppress(ValueError):
                cloudpickle.register_pickle_by_value(mod)


def package(graph: JobGraph) -> tuple[bytes, bytes]:
    """(graph bytes for the TaskManagers, topology bytes for the JobManager)."""
    job_dir = _job_dir()
    if job_dir:
        _register_local_modules(job_dir)
    try:
        graph_bytes = cloudpickle.dumps(graph, protocol=5)
    except Exception as e:
        raise TypeError(
            f"the job cannot be shipped: a function or object it uses cannot be pickled ({e}). Open "
            "connections, locks and files must be created in open(), not captured from the job file."
        ) from e
    # env.add_python_file: the files travel in front of the graph and are importable before it is unpickled
    files = [f for f in graph.config.get(python_files.CONFIG_KEY, "").split(",") if f]
    return python_files.pack(graph_bytes, files), pickle.dumps(topology(graph), protocol=5)
