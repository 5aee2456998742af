"""Checkpoint snapshots of keyed state: the handles a checkpoint records, and the key-group file format.

A snapshot has two parts. The *synchronous* part (``backend.snapshot(...)``) runs on the task's mailbox thread
between two records and captures a consistent view of every table; it returns a ``PendingSnapshot``. The
*asynchronous* part (``PendingSnapshot.upload``) runs in another thread, concurrently with further state changes,
writes the view to checkpoint storage and returns a ``KeyedStateHandle``: pure data, recorded in the checkpoint's
metadata and given back to ``backend.restore`` after a failure or a rescale.

Kinds of handles:

``hashmap`` / ``canonical``
    One *key-group file* (below) under the checkpoint's private prefix. ``hashmap`` is what the hashmap backend
    checkpoints; ``canonical`` (savepoints) is the same format made by either backend. Self-contained, no shared
    files; restorable into either backend with any parallelism.
``rocksdb-incremental``
    The files of a native RocksDB checkpoint: SST files (immutable, ``shared=True``) uploaded once under the shared
    prefix and referenced again by later checkpoints while they are live, and the MANIFEST/CURRENT/OPTIONS files
    (``shared=False``) uploaded under the private prefix every time. ``meta["local_names"]`` maps each storage path
    to the file's name in the database directory.

Key-group file (format 1)::

    b"WEIRKGS1" | blob(key group a) | blob(key group b) | ...

Each blob is a pickle (protocol 5) of ``[(table name, [(key, namespace, stored value), ...]), ...]`` holding the
entries of one key group; key groups without entries have no blob. ``meta["index"]`` lists
``[key group, offset, length, crc32]`` per blob, so a restore decodes only the key groups it owns and checks each
one's checksum; the file's size is checked against ``StateFile.size``. Stored values are as the tables hold them
(TTL-wrapped where TTL is on), namespaces (windows) included.

*Raw keyed state* (``KeyedStateBackend.write_raw_state``: an opaque bytes value per (name, key group), e.g. the
timers) follows the table blobs in the same file, each value written as it is (not pickled again);
``meta["raw_index"]`` lists ``[name, key group, offset, length, crc32]`` per value. A file without raw state has
no ``raw_index`` (files written before raw state existed have none either, and read the same). In a RocksDB
database raw state ``name`` is the column family ``r.<name>`` keyed by the 2-byte big-endian key group.

Every handle's ``meta`` has ``tables`` (state name -> ``[kind, ttl on]`` for states registered through a
descriptor, so a restored backend refuses another kind, as a reopened RocksDB database does), ``table_names``
(every table, operator tables included) and ``checkpoint_id``.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import shutil
import tempfile
import threading
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from state.backend import IncompatibleStateError

if TYPE_CHECKING:
    from state.storage import CheckpointStorage

__all__ = [
    "KIND_CANONICAL",
    "KIND_HASHMAP",
    "KIND_ROCKSDB_INCREMENTAL",
    "CorruptStateError",
    "KeyGroupFileSnapshot",
    "KeyedStateHandle",
    "PendingSnapshot",
    "RestorePlan",
    "StateFile",
    "download_checked",
    "iter_downloaded_raw",
    "iter_key_group_file",
    "iter_key_group_file_raw",
    "join_path",
    "plan_restore",
    "serialize_key_groups",
]

KIND_HASHMAP = "hashmap"
KIND_ROCKSDB_INCREMENTAL = "rocksdb-incremental"
KIND_CANONICAL = "canonical"
_KINDS = (KIND_HASHMAP, KIND_ROCKSDB_INCREMENTAL, KIND_CANONICAL)

MAGIC = b"WEIRKGS1"
FORMAT_VERSION = 1
_PROTOCOL = 5

TableKinds = dict[str, list[Any]]
"""state name -> [kind, ttl on] (lists, so that handles stay JSON-friendly)."""


class CorruptStateError(Exception):
    """A state file of a checkpoint is missing, truncated or fails its checksum; the message names its URI."""


@dataclass(frozen=True)
class StateFile:
    """One file of a snapshot in checkpoint storage.

    Attributes:
        path: relative path in checkpoint storage.
        size: its size in bytes.
        shared: True when later checkpoints may reference it too (incremental RocksDB SST files).
    """

    path: str
    size: int
    shared: bool


@dataclass
class KeyedStateHandle:
    """One operator instance's keyed state in one checkpoint: pure data, picklable.

    Attributes:
        kind: "hashmap", "rocksdb-incremental" or "canonical" (see the module docstring).
        key_groups: ``[start, stop)`` of the key groups it holds.
        max_parallelism: the number of key groups of the job.
        files: the files it consists of.
        meta: format details (index, table kinds, local file names, checkpoint id).
        uploaded_bytes: the bytes the checkpoint that made it wrote (its incremental size).
    """

    kind: str
    key_groups: tuple[int, int]
    max_parallelism: int
    files: list[StateFile]
    meta: dict[str, Any] = field(default_factory=dict)
    uploaded_bytes: int = 0

    @property
    def size(self) -> int:
        """The total bytes of all its files (shared ones included)."""
        return sum(f.size for f in self.files)

    @property
    def key_group_range(self) -> range:
        """``key_groups`` as a range."""
        return range(self.key_groups[0], self.key_groups[1])


class PendingSnapshot(Protocol):
    """The result of a snapshot's synchronous part; exactly one of ``upload`` or ``discard`` is called."""

    def upload(self, storage: CheckpointStorage, private_prefix: str, shared_prefix: str) -> KeyedStateHandle:
        """Writes the snapshot to ``storage`` (blocking; from a thread other than the task's) and frees local files.

        Raises:
            RuntimeError: the snapshot was discarded or uploaded already.
        """
        ...

    def discard(self) -> None:
        """Frees local resources of an aborted checkpoint (no-op after ``upload``)."""
        ...


def join_path(prefix: str, name: str) -> str:
    """``prefix/name`` for storage paths ('/'-separated; an empty prefix gives ``name``)."""
    prefix = prefix.rstrip("/")
    return f"{prefix}/{name}" if prefix else name


# ---------------------------------------------------------------------------------------------------------------
# Writing key-group files
# ---------------------------------------------------------------------------------------------------------------


def serialize_key_groups(groups: dict[int, dict[str, list[tuple[Any, Any, Any]]]]) -> list[tuple[int, bytes]]:
    """One blob per key group, in key-group order, from ``key group -> table name -> [(key, ns, value)]``.

    Raises:
        TypeError: an entry cannot be pickled; the message names the state, key and namespace.
    """
    out: list[tuple[int, bytes]] = []
    for kg in sorted(groups):
        tables = [(name, entries) for name, entries in groups[kg].items() if entries]
        if not tables:
            continue
        try:
            out.append((kg, pickle.dumps(tables, _PROTOCOL)))
        except Exception as e:
            raise TypeError(f"keyed state cannot be snapshotted: {_unpicklable(tables) or e}") from e
    return out


def _unpicklable(tables: list[tuple[str, list[tuple[Any, Any, Any]]]]) -> str | None:
    for name, entries in tables:
        for key, ns, value in entries:
            try:
                pickle.dumps((key, ns, value), _PROTOCOL)
            except Exception as e:
                return f"state {name!r}: the entry of key {key!r:.60} (namespace {ns!r:.60}) cannot be pickled: {e}"
    return None


class _OneShot:
    """Makes sure a pending snapshot is uploaded or discarded once (upload runs in another thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state = "ready"

    def start_upload(self) -> None:
        with self._lock:
            if self._state != "ready":
                raise RuntimeError(f"this snapshot cannot be uploaded: it is {self._state}")
            self._state = "uploading"

    def finish(self) -> None:
        with self._lock:
            self._state = "uploaded"

    def try_discard(self) -> bool:
        """True when the caller should free the resources (the snapshot was neither uploaded nor is uploading)."""
        with self._lock:
            if self._state != "ready":
                return False
            self._state = "discarded"
            return True


class KeyGroupFileSnapshot:
    """A pending snapshot already serialized into key-group blobs (the hashmap backend's synchronous part)."""

    def __init__(
        self,
        kind: str,
        checkpoint_id: int,
        key_groups: range,
        max_parallelism: int,
        blobs: list[tuple[int, bytes]],
        meta: dict[str, Any],
        local_dir: str,
        file_prefix: str,
        raw: list[tuple[str, int, bytes]] | None = None,
    ) -> None:
        """``blobs`` from ``serialize_key_groups``, ``raw`` the raw keyed state as ``(name, key group, value)``; the
        file is named ``{file_prefix}-{checkpoint_id}-keyed.state``."""
        self.kind = kind
        self._raw = raw or []
        self.checkpoint_id = checkpoint_id
        self.key_groups = key_groups
        self.max_parallelism = max_parallelism
        self._blobs: list[tuple[int, bytes]] | None = blobs
        self.meta = meta
        self.local_dir = local_dir
        self.file_name = f"{file_prefix}-{checkpoint_id}-keyed.state"
        self._once = _OneShot()

    def upload(self, storage: CheckpointStorage, private_prefix: str, shared_prefix: str) -> KeyedStateHandle:
        """Writes the key-group file to ``private_prefix`` and returns its handle (no shared files)."""
        self._once.start_upload()
        blobs = self._blobs
        assert blobs is not None
        try:
            return upload_key_group_blobs(
                storage,
                blobs,
                join_path(private_prefix, self.file_name),
                self.local_dir,
                self.kind,
                self.key_groups,
                self.max_parallelism,
                self.meta,
                self._raw,
            )
        finally:
            self._blobs = None
            self._raw = []
            self._once.finish()

    def discard(self) -> None:
        """Drops the serialized state."""
        if self._once.try_discard():
            self._blobs = None
            self._raw = []


def upload_key_group_blobs(
    storage: CheckpointStorage,
    blobs: Iterable[tuple[int, bytes]],
    path: str,
    local_dir: str,
    kind: str,
    key_groups: range,
    max_parallelism: int,
    meta: dict[str, Any],
    raw: Iterable[tuple[str, int, bytes]] = (),
) -> KeyedStateHandle:
    """Writes ``blobs`` (and the raw keyed state ``raw``, as ``(name, key group, value)``) as a key-group file in
    ``local_dir``, uploads it to ``path``, deletes the local copy."""
    os.makedirs(local_dir, exist_ok=True)
    fd, local = tempfile.mkstemp(prefix="keyed-", suffix=".state", dir=local_dir)
    index: list[list[int]] = []
    raw_index: list[list[Any]] = []
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(MAGIC)
            offset = len(MAGIC)
            for kg, blob in blobs:
                f.write(blob)
                index.append([kg, offset, len(blob), zlib.crc32(blob)])
                offset += len(blob)
            for name, kg, value in raw:
                f.write(value)
                raw_index.append([name, kg, offset, len(value), zlib.crc32(value)])
                offset += len(value)
        size = storage.upload_file(local, path)
        if size != offset:
            raise CorruptStateError(f"uploading {storage.uri(path)} wrote {size} bytes, expected {offset}")
    finally:
        with contextlib.suppress(OSError):
            os.unlink(local)
    return KeyedStateHandle(
        kind=kind,
        key_groups=(key_groups.start, key_groups.stop),
        max_parallelism=max_parallelism,
        files=[StateFile(path, size, False)],
        meta={**meta, "format": FORMAT_VERSION, "index": index, **({"raw_index": raw_index} if raw_index else {})},
        uploaded_bytes=size,
    )


# ---------------------------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------------------------


def download_checked(storage: CheckpointStorage, f: StateFile, local_path: str) -> None:
    """Downloads ``f`` to ``local_path`` and checks its size.

    Raises:
        CorruptStateError: the file is missing or its size is not ``f.size``; names the file's URI.
    """
    try:
        storage.download_file(f.path, local_path)
    except FileNotFoundError as e:
        raise CorruptStateError(f"state file {storage.uri(f.path)} of the checkpoint is missing: {e}") from e
    actual = os.path.getsize(local_path)
    if actual != f.size:
        raise CorruptStateError(
            f"state file {storage.uri(f.path)} has {actual} bytes, the checkpoint recorded {f.size} "
            "(truncated or overwritten)"
        )


def iter_key_group_file(
    local_path: str, uri: str, index: list[list[int]], key_groups: range
) -> Iterator[tuple[str, Any, Any, Any]]:
    """The entries ``(table, key, namespace, value)`` of the key groups in ``key_groups`` of a downloaded file.

    Raises:
        CorruptStateError: bad header, a blob beyond the end of the file, or a checksum mismatch (names ``uri``).
    """
    with open(local_path, "rb") as f:
        if f.read(len(MAGIC)) != MAGIC:
            raise CorruptStateError(f"state file {uri} is not a weir key-group file (bad header)")
        for kg, offset, length, crc in index:
            if kg not in key_groups:
                continue
            f.seek(offset)
            blob = f.read(length)
            if len(blob) != length or zlib.crc32(blob) != crc:
                raise CorruptStateError(f"state file {uri}: key group {kg} fails its checksum (corrupt file)")
            try:
                tables = pickle.loads(blob)
            except Exception as e:
                raise CorruptStateError(f"state file {uri}: key group {kg} cannot be unpickled: {e}") from e
            for name, entries in tables:
                for key, ns, value in entries:
                    yield name, key, ns, value


def iter_key_group_file_raw(
    local_path: str, uri: str, raw_index: list[list[Any]], key_groups: range
) -> Iterator[tuple[str, int, bytes]]:
    """The raw keyed state ``(name, key group, value)`` of the key groups in ``key_groups`` of a downloaded file.

    Raises:
        CorruptStateError: bad header, a value beyond the end of the file, or a checksum mismatch (names ``uri``).
    """
    if not raw_index:
        return
    with open(local_path, "rb") as f:
        if f.read(len(MAGIC)) != MAGIC:
            raise CorruptStateError(f"state file {uri} is not a weir key-group file (bad header)")
        for name, kg, offset, length, crc in raw_index:
            if kg not in key_groups:
                continue
            f.seek(offset)
            value = f.read(length)
            if len(value) != length or zlib.crc32(value) != crc:
                raise CorruptStateError(
                    f"state file {uri}: raw state {name!r} of key group {kg} fails its checksum (corrupt file)"
                )
            yield name, kg, value


@dataclass
class RestorePlan:
    """What a restore reads: the handles overlapping the wanted key groups, and the tables they declare.

    Attributes:
        handles: the handles holding key groups of the restore, in key-group order.
        kinds: state name -> [kind, ttl on], merged over all handles.
        table_names: every table any of them declares.
    """

    handles: list[KeyedStateHandle]
    kinds: TableKinds
    table_names: list[str]


def plan_restore(handles: list[KeyedStateHandle], key_groups: range, max_parallelism: int) -> RestorePlan:
    """Checks ``handles`` and picks those a restore of ``key_groups`` needs.

    Raises:
        ValueError: a handle of another max parallelism or an unknown kind, key groups out of range, or two
            handles holding the same key group (their union would duplicate state).
        IncompatibleStateError: two handles declare one state as different kinds.
    """
    if key_groups.step != 1 or not 0 <= key_groups.start <= key_groups.stop <= max_parallelism:
        raise ValueError(f"cannot restore key groups {key_groups}: they must be a range within 0..{max_parallelism}")
    chosen: list[KeyedStateHandle] = []
    for h in handles:
        if not isinstance(h, KeyedStateHandle):
            raise TypeError(f"restore takes KeyedStateHandles, got {type(h).__name__}")
        if h.kind not in _KINDS:
            raise ValueError(f"unknown keyed state handle kind {h.kind!r}; one of {list(_KINDS)}")
        if h.max_parallelism != max_parallelism:
            raise ValueError(
                f"a snapshot with max_parallelism {h.max_parallelism} cannot be restored into a backend with "
                f"{max_parallelism} (max parallelism is fixed for the lifetime of a job)"
            )
        r = h.key_group_range
        if max(r.start, key_groups.start) < min(r.stop, key_groups.stop):
            chosen.append(h)
    chosen.sort(key=lambda h: h.key_groups)
    for a, b in zip(chosen, chosen[1:], strict=False):
        if b.key_groups[0] < a.key_groups[1]:
            raise ValueError(
                f"two snapshots hold the same key groups ({a.key_groups} and {b.key_groups}): restoring both would "
                "duplicate state"
            )
    kinds: TableKinds = {}
    names: list[str] = []
    for h in chosen:
        for name, kt in h.meta.get("tables", {}).items():
            prev = kinds.setdefault(name, list(kt))
            if list(prev) != list(kt):
                raise IncompatibleStateError(f"snapshots disagree about state {name!r}: {prev} and {list(kt)}")
        for name in h.meta.get("table_names", []):
            if name not in names:
                names.append(name)
    return RestorePlan(chosen, kinds, names)


def download_handle(storage: CheckpointStorage, handle: KeyedStateHandle, local_dir: str) -> str:
    """Downloads every file of ``handle`` into a new directory under ``local_dir``, checked; returns the directory.

    RocksDB files get their names in the database directory; a key-group file is ``keyed.state``.

    Raises:
        CorruptStateError: a file is missing or has the wrong size (names it).
    """
    os.makedirs(local_dir, exist_ok=True)
    d = tempfile.mkdtemp(prefix="restore-", dir=local_dir)
    try:
        if handle.kind == KIND_ROCKSDB_INCREMENTAL:
            local_names: dict[str, str] = handle.meta["local_names"]
            for f in handle.files:
                name = local_names.get(f.path)
                if not name or "/" in name or name in (".", ".."):
                    raise CorruptStateError(f"the handle does not name state file {storage.uri(f.path)} validly")
                download_checked(storage, f, os.path.join(d, name))
        else:
            if len(handle.files) != 1:
                raise CorruptStateError(f"a {handle.kind} handle has one file, this one has {len(handle.files)}")
            download_checked(storage, handle.files[0], os.path.join(d, "keyed.state"))
    except BaseException:
        shutil.rmtree(d, ignore_errors=True)
        raise
    return d


def iter_downloaded(
    handle: KeyedStateHandle, directory: str, uri: str, key_groups: range
) -> Iterator[tuple[str, Any, Any, Any]]:
    """The entries ``(table, key, namespace, stored value)`` of ``key_groups`` in a handle's downloaded files.

    ``uri`` names the handle's (first) file in errors.
    """
    if handle.kind == KIND_ROCKSDB_INCREMENTAL:
        from state.rocksdb import iter_db_dir_entries

        yield from iter_db_dir_entries(directory, key_groups, handle.max_parallelism, uri)
    else:
        yield from iter_key_group_file(
            os.path.join(directory, "keyed.state"), uri, handle.meta.get("index", []), key_groups
        )


def iter_downloaded_raw(
    handle: KeyedStateHandle, directory: str, uri: str, key_groups: range
) -> Iterator[tuple[str, int, bytes]]:
    """The raw keyed state ``(name, key group, value)`` of ``key_groups`` in a handle's downloaded files.

    ``uri`` names the handle's (first) file in errors.
    """
    if handle.kind == KIND_ROCKSDB_INCREMENTAL:
        from state.rocksdb import iter_db_dir_raw_state

        yield from iter_db_dir_raw_state(directory, key_groups)
    else:
        yield from iter_key_group_file_raw(
            os.path.join(directory, "keyed.state"), uri, handle.meta.get("raw_index", []), key_groups
        )
