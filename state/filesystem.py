"""Checkpoint storage on a local (or mounted shared) file system: ``file:///abs/dir`` or a plain path.

Every write goes to a temporary file in the destination's directory, is fsynced, and is renamed over the
destination with ``os.replace`` (atomic on POSIX), after which the directory is fsynced too: a reader sees the old
file or the whole new one, never a partial one, and a write that fails midway leaves no file behind. Temporary
files are named ``.weir-tmp-<random>``; ``list()`` never returns them, and such names are refused as paths.

Directories are implicit, as on S3: they are created as needed, ``list()`` returns files only, and a directory is
not an object (reading it raises FileNotFoundError, ``exists()`` is False, deleting it does nothing).
Nothing is shared between calls, so one instance is safe to use from several threads.
"""

from __future__ import annotations

import errno
import os
import secrets
from collections.abc import Callable
from contextlib import suppress
from typing import BinaryIO
from urllib.parse import unquote, urlsplit

from state.storage import CheckpointStorageError

TMP_PREFIX = ".weir-tmp-"
COPY_CHUNK = 1 << 30  # bytes per sendfile call (the kernel's limit is about 2 GiB)


def check_path(path: str) -> str:
    """``path`` if it is a valid storage path: relative, '/'-separated, no empty, '.' or '..' components.

    Raises:
        ValueError: naming the path and what is wrong with it.
    """
    if not isinstance(path, str) or not path:
        raise ValueError(f"invalid checkpoint storage path {path!r}: must be a non-empty string")
    if path.startswith("/"):
        raise ValueError(f"invalid checkpoint storage path {path!r}: must be relative (no leading '/')")
    if "\0" in path:
        raise ValueError(f"invalid checkpoint storage path {path!r}: contains a NUL character")
    for part in path.split("/"):
        if part in ("", ".", ".."):
            raise ValueError(f"invalid checkpoint storage path {path!r}: empty, '.' or '..' component")
        if part.startswith(TMP_PREFIX):
            raise ValueError(f"invalid checkpoint storage path {path!r}: {TMP_PREFIX!r} names are reserved")
    return path


def check_prefix(prefix: str) -> str:
    """A ``list()`` prefix without its trailing '/': '' (everything) or a valid path."""
    if prefix in ("", "/"):
        return ""
    return check_path(prefix[:-1] if prefix.endswith("/") else prefix)


def _root_dir(uri: str) -> str:
    if uri.startswith("file:"):
        parts = urlsplit(uri)
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise ValueError(f"invalid file URI {uri!r}: use file:///absolute/dir (or a plain path)")
        if parts.query or parts.fragment:
            raise ValueError(f"invalid file URI {uri!r}: no query or fragment allowed")
        path = unquote(parts.path)
    else:
        if not uri:
            raise ValueError("empty checkpoint storage path")
        path = os.path.expanduser(uri)
    return os.path.normpath(os.path.abspath(path))


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _not_found(where: str, local: str) -> FileNotFoundError:
    return FileNotFoundError(errno.ENOENT, f"not found in checkpoint storage {where}", local)


def atomic_write_file(dest: str, fill: Callable[[BinaryIO], object], durable: bool = True) -> None:
    """Create ``dest`` (and its directories) with the bytes ``fill`` writes, atomically.

    ``fill`` writes into a temporary file next to ``dest``; only when it returned (and, if ``durable``, the file
    was fsynced) is the file renamed to ``dest``. On any failure the temporary file is removed and ``dest`` is
    untouched. Raises the OSError (or whatever ``fill`` raised).
    """
    directory = os.path.dirname(dest) or "."
    created = _makedirs(directory)
    tmp = os.path.join(directory, TMP_PREFIX + secrets.token_hex(8))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            fill(f)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, dest)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise
    if durable:  # the rename's directory entry, and those of the directories created for it
        for d in dict.fromkeys([directory, *(os.path.dirname(c) for c in created)]):
            _fsync_dir(d)


def copy_file(src: BinaryIO, dst: BinaryIO) -> int:
    """Copy the rest of ``src`` (from its start) into ``dst``; returns the bytes copied.

    In the kernel (``os.sendfile``, the GIL released for the whole file): uploads and downloads run in threads
    beside the subtasks' mailbox loops, and a Python read/write loop would contend with them for the GIL.
    """
    dst.flush()
    total = os.fstat(src.fileno()).st_size
    done = 0
    while done < total:
        sent = os.sendfile(dst.fileno(), src.fileno(), done, min(total - done, COPY_CHUNK))
        if sent == 0:  # the file shrank under us: what is there is copied
            break
        done += sent
    return done


def _makedirs(directory: str) -> list[str]:
    """Create ``directory`` and missing parents; the ones created, deepest first."""
    missing = []
    d = os.path.abspath(directory)
    while not os.path.isdir(d):
        missing.append(d)
        parent = os.path.dirname(d)
        if parent == d:
            break
        d = parent
    os.makedirs(directory, exist_ok=True)
    return missing


class FileSystemCheckpointStorage:
    """The CheckpointStorage role on a directory (see the module docstring)."""

    def __init__(self, uri: str) -> None:
        self.root = _root_dir(uri)
        self.base_uri = "file://" + self.root

    def __repr__(self) -> str:
        return f"FileSystemCheckpointStorage({self.base_uri!r})"

    def uri(self, path: str) -> str:
        return self.base_uri.rstrip("/") + "/" + check_path(path)

    def local_path(self, path: str) -> str:
        """The file system path of ``path``."""
        return os.path.join(self.root, *check_path(path).split("/"))

    def _error(self, op: str, path: str, e: BaseException) -> CheckpointStorageError:
        return CheckpointStorageError(f"checkpoint storage: cannot {op} {self.uri(path)}: {e}")

    # -- writes

    def write(self, path: str, data: bytes) -> None:
        local = self.local_path(path)
        try:
            atomic_write_file(local, lambda f: f.write(data))
        except OSError as e:
            raise self._error("write", path, e) from e

    def upload_file(self, local_path: str, path: str) -> int:
        dest = self.local_path(path)
        with open(local_path, "rb") as src:  # a missing local file: FileNotFoundError naming it
            size = 0

            def copy(f: BinaryIO) -> None:
                nonlocal size
                size = copy_file(src, f)

            try:
                atomic_write_file(dest, copy)
            except OSError as e:
                raise self._error(f"upload {local_path} to", path, e) from e
        return size

    def delete(self, path: str) -> None:
        local = self.local_path(path)
        try:
            os.unlink(local)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            pass  # nothing there (a directory is not an object)
        except OSError as e:
            if os.path.isdir(local):  # some platforms report EPERM for unlink(dir)
                return
            raise self._error("delete", path, e) from e

    # -- reads

    def _open(self, path: str) -> BinaryIO:
        local = self.local_path(path)
        try:
            return open(local, "rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as e:
            raise _not_found(self.base_uri, local) from e
        except OSError as e:
            raise self._error("read", path, e) from e

    def read(self, path: str) -> bytes:
        with self._open(path) as f:
            try:
                return f.read()
            except OSError as e:
                raise self._error("read", path, e) from e

    def download_file(self, path: str, local_path: str) -> int:
        with self._open(path) as src:
            size = 0

            def copy(f: BinaryIO) -> None:
                nonlocal size
                size = copy_file(src, f)

            try:
                atomic_write_file(os.path.abspath(local_path), copy, durable=False)
            except OSError as e:
                raise CheckpointStorageError(
                    f"checkpoint storage: cannot download {self.uri(path)} to {local_path}: {e}") from e
        return size

    def exists(self, path: str) -> bool:
        return os.path.isfile(self.local_path(path))

    def size(self, path: str) -> int:
        local = self.local_path(path)
        try:
            st = os.stat(local)
        except (FileNotFoundError, NotADirectoryError) as e:
            raise _not_found(self.base_uri, local) from e
        except OSError as e:
            raise self._error("stat", path, e) from e
        if not os.path.isfile(local):
            raise _not_found(self.base_uri, local)
        return st.st_size

    def list(self, prefix: str) -> list[str]:
        """Every file under the directory ``prefix`` ('' for all), as paths relative to the base, sorted."""
        prefix = check_prefix(prefix)
        top = os.path.join(self.root, *prefix.split("/")) if prefix else self.root
        out: list[str] = []
        for dirpath, _dirnames, filenames in os.walk(top):
            rel = os.path.relpath(dirpath, self.root)
            base = "" if rel == "." else rel.replace(os.sep, "/") + "/"
            out.extend(base + name for name in filenames if not name.startswith(TMP_PREFIX))
        return sorted(out)
