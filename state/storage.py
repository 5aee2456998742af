"""The checkpoint storage role: where checkpoints, savepoints and the JobManager's HA data live.

Paths are relative, '/'-separated names under the storage's base URI (``file:///dir`` or ``s3://bucket/prefix``).
Implementations: ``FileSystemCheckpointStorage`` (state/filesystem.py) and ``S3CheckpointStorage`` (state/s3.py);
``checkpoint_storage_for(uri)`` picks one. All methods are blocking (call them from a thread, never from a task's
mailbox loop) and safe to call from several threads at once.
"""

from __future__ import annotations

from typing import Protocol


class CheckpointStorageError(IOError):
    """A storage operation failed; the message names the URI and path."""


class CheckpointStorage(Protocol):
    base_uri: str

    def write(self, path: str, data: bytes) -> None:
        """Write ``data`` at ``path`` atomically: readers see the whole object or none of it."""

    def read(self, path: str) -> bytes:
        """Raises FileNotFoundError (naming the path) when it does not exist."""

    def upload_file(self, local_path: str, path: str) -> int:
        """Copy a local file to ``path`` atomically; returns its size in bytes."""

    def download_file(self, path: str, local_path: str) -> int:
        """Copy ``path`` to a local file; returns its size. Raises FileNotFoundError when it does not exist."""

    def exists(self, path: str) -> bool: ...

    def size(self, path: str) -> int:
        """Size in bytes; raises FileNotFoundError when it does not exist."""

    def delete(self, path: str) -> None:
        """Delete ``path`` if it exists (no error when it does not)."""

    def list(self, prefix: str) -> list[str]:
        """Every path under ``prefix`` (recursively), sorted.

        ``prefix`` names a directory: ``""`` lists everything; ``"a/b"`` (or ``"a/b/"``) lists ``a/b/...``, not
        ``a/bc``. The paths returned are relative to the base URI (ready for ``read``), not to ``prefix``.
        """

    def uri(self, path: str) -> str:
        """The full URI of ``path``, for messages and for self-contained savepoint pointers."""


def checkpoint_storage_for(uri: str, options: dict[str, str] | None = None) -> CheckpointStorage:
    """The storage for ``uri``: ``file:///abs/dir`` (or a plain path) or ``s3://bucket/prefix``.

    ``options`` may carry S3 settings (``s3.endpoint``, ``s3.region``, ``s3.access-key``, ``s3.secret-key``,
    ``s3.path-style-access``); the usual AWS environment variables apply otherwise.

    Raises:
        ValueError: an unsupported scheme, with the schemes that are supported.
    """
    if uri.startswith("s3://"):
        from state.s3 import S3CheckpointStorage

        return S3CheckpointStorage(uri, options or {})
    if uri.startswith("file://") or "://" not in uri:
        from state.filesystem import FileSystemCheckpointStorage

        return FileSystemCheckpointStorage(uri)
    raise ValueError(f"unsupported checkpoint storage {uri!r}: use file:///path or s3://bucket/prefix")
