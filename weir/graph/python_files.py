"""Python files shipped with a job (``env.add_python_file``, PyFlink's ``python.files``).

The client zips the named files and directories and puts the archive in front of the pickled graph; a slot worker
extracts it once per archive (named by its digest) and puts it on ``sys.path`` before it unpickles the graph, so
modules that the job's functions import -- at unpickling or only when they run -- are importable on TaskManagers
that never had them. The JobManager passes the bytes on without looking inside.

Layout of the shipped bytes: ``MAGIC``, the archive's length (8 bytes, big-endian), the zip archive, the graph.
Bytes without ``MAGIC`` are a plain pickled graph.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import struct
import sys
import tempfile
import zipfile
from collections.abc import Iterable

CONFIG_KEY = "python.files"  # comma-separated absolute paths, as PyFlink's option
MAGIC = b"WEIRPYF1"
_LEN = struct.Struct("!Q")


def archive(paths: Iterable[str]) -> bytes:
    """A zip of ``paths``: a file lands at the archive's root, a directory's *contents* do (PyFlink puts a
    directory itself on the PYTHONPATH), except a package directory (with ``__init__.py``), which lands whole.

    Raises:
        FileNotFoundError: a path does not exist (any more).
    """
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for path in paths:
            if os.path.isfile(path):
                z.write(path, os.path.basename(path))
            elif os.path.isdir(path):
                is_pkg = os.path.isfile(os.path.join(path, "__init__.py"))
                base = os.path.dirname(path) if is_pkg else path
                for root, dirs, files in os.walk(path):
                    dirs[:] = sorted(d for d in dirs if d != "__pycache__" and not d.startswith("."))
                    for f in sorted(files):
                        if not f.endswith((".pyc", ".pyo")):
                            full = os.path.join(root, f)
                            z.write(full, os.path.relpath(full, base))
            else:
                raise FileNotFoundError(f"the Python file {path} given to add_python_file no longer exists")
    return buf.getvalue()


def pack(graph_bytes: bytes, paths: list[str]) -> bytes:
    """The graph with the archive of ``paths`` in front (the graph alone when there are none)."""
    if not paths:
        return graph_bytes
    z = archive(paths)
    return MAGIC + _LEN.pack(len(z)) + z + graph_bytes


def unpack(data: bytes, root: str) -> tuple[bytes, str | None]:
    """(the pickled graph, the directory the archive was extracted to, or None) of shipped bytes.

    The archive is extracted under ``root`` into a directory named by its digest, once (a second job or subtask
    with the same files reuses it), and that directory is put first on ``sys.path``.
    """
    if not data.startswith(MAGIC):
        return data, None
    (n,) = _LEN.unpack_from(data, len(MAGIC))
    start = len(MAGIC) + _LEN.size
    z = data[start:start + n]
    target = os.path.join(root, "python-files", hashlib.sha256(z).hexdigest()[:16])
    if not os.path.isdir(target):
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with zipfile.ZipFile(io.BytesIO(z)) as archive_:
            for name in archive_.namelist():  # no path may leave the directory
                if name.startswith("/") or ".." in name.split("/"):
                    raise ValueError(f"the job's Python files hold an unsafe path {name!r}")
            tmp = tempfile.mkdtemp(dir=os.path.dirname(target))
            archive_.extractall(tmp)
        try:
            os.rename(tmp, target)
        except OSError:  # another subtask extracted the same archive first
            shutil.rmtree(tmp, ignore_errors=True)
    if target not in sys.path:
        sys.path.insert(0, target)
    return data[start + n:], target
