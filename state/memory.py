"""HashMapStateBackend: keyed state in plain dicts, one per state name, keyed by ``(key, namespace)``.

Key groups are not stored per entry: they are derived from the key (``state.keygroups``) when state is
snapshotted or redistributed, which keeps the per-record path to one dict operation.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from state.backend import AbstractKeyedStateBackend, IncompatibleStateError
from state.keygroups import key_group_for
from state.snapshot import (
    KIND_CANONICAL,
    KIND_HASHMAP,
    KeyedStateHandle,
    KeyGroupFileSnapshot,
    download_handle,
    iter_downloaded,
    iter_downloaded_raw,
    plan_restore,
    serialize_key_groups,
)

if TYPE_CHECKING:
    from state.storage import CheckpointStorage

__all__ = ["HashMapKeyedStateBackend"]


class HashMapKeyedStateBackend(AbstractKeyedStateBackend):
    """Keyed state in memory; a table is a plain ``dict``. See ``state.backend.KeyedStateBackend``.

    Attributes:
        tables: state name -> table.
        raw: raw keyed state: name -> key group -> value.
    """

    def __init__(self, max_parallelism: int = 128, clock: Callable[[], int] | None = None) -> None:
        """Creates an empty backend.

        Args:
            max_parallelism: number of key groups, 1..32768.
            clock: processing time in integer ms, for TTL (default: the wall clock).
        """
        super().__init__(max_parallelism, clock)
        self.tables: dict[str, dict[tuple[Any, Any], Any]] = {}
        self.raw: dict[str, dict[int, bytes]] = {}
        self._restored_kinds: dict[str, list[Any]] = {}  # kinds of restored states, checked as RocksDB does
        self._instance_id = uuid.uuid4().hex[:16]

    def table(self, name: str) -> dict[tuple[Any, Any], Any]:
        """The dict of state ``name`` (created empty if new)."""
        t = self.tables.get(name)
        if t is None:
            t = self.tables[name] = {}
        return t

    def table_names(self) -> list[str]:
        """The names of all tables."""
        return list(self.tables)

    def iter_key_group(self, key_group: int) -> Iterator[tuple[str, Any, Any, Any]]:
        """Every entry whose key is in ``key_group``: ``(table name, key, namespace, value)``.

        A scan of every table (the hashmap backend does not index by key group).

        Raises:
            ValueError: ``key_group`` is not in ``0..max_parallelism - 1``.
        """
        mp = self.max_parallelism
        if not 0 <= key_group < mp:
            raise ValueError(f"key group {key_group} is out of range 0..{mp - 1}")
        for name, t in list(self.tables.items()):
            for (key, ns), v in list(t.items()):
                if key_group_for(key, mp) == key_group:
                    yield name, key, ns, v

    def write_raw_state(self, name: str, blobs: Mapping[int, bytes]) -> None:
        """See ``KeyedStateBackend.write_raw_state`` (the values are kept as given: bytes are immutable)."""
        self._check_raw(name, blobs)
        if blobs or name in self.raw:
            self.raw[name] = dict(blobs)

    def read_raw_state(self, name: str) -> dict[int, bytes]:
        """See ``KeyedStateBackend.read_raw_state``."""
        return dict(self.raw.get(name, {}))

    def raw_state_names(self) -> list[str]:
        """See ``KeyedStateBackend.raw_state_names``."""
        return list(self.raw)

    def flush(self) -> None:
        """Nothing to do: the dicts are the state."""

    def close(self) -> None:
        """Nothing to release; the state stays readable."""

    def dispose(self) -> None:
        """Drops all state (handles stay usable, on empty tables)."""
        for t in self.tables.values():
            t.clear()
        self.raw.clear()

    def _check_kind(self, name: str, kind: str, ttl: bool) -> None:
        restored = self._restored_kinds.get(name)
        if restored is not None and (restored[0], bool(restored[1])) != (kind, ttl):
            raise IncompatibleStateError(
                f"state {name!r} was restored as {restored[0]} state {'with' if restored[1] else 'without'} TTL; "
                f"it cannot be read as {kind} state {'with' if ttl else 'without'} TTL"
            )

    # -- checkpoints ----------------------------------------------------------------------------------------

    def snapshot(
        self, checkpoint_id: int, key_groups: range, local_dir: str, canonical: bool = False
    ) -> KeyGroupFileSnapshot:
        """Serializes every table now, one blob per key group; ``upload`` writes them (and the raw keyed state of
        ``key_groups``) as one key-group file.

        Values are pickled here, so later changes (in place too) do not reach the snapshot. Entries whose key
        group is outside ``key_groups`` are left out.

        Raises:
            TypeError: a value cannot be pickled (names the state and key).
        """
        mp = self.max_parallelism
        kgf = key_group_for
        groups: dict[int, dict[str, list[tuple[Any, Any, Any]]]] = {}
        whole = key_groups.start <= 0 and key_groups.stop >= mp and key_groups.step == 1
        for name, t in self.tables.items():
            for (key, ns), v in t.items():
                kg = kgf(key, mp)
                if not whole and kg not in key_groups:
                    continue
                g = groups.get(kg)
                if g is None:
                    g = groups[kg] = {}
                lst = g.get(name)
                if lst is None:
                    g[name] = [(key, ns, v)]
                else:
                    lst.append((key, ns, v))
        blobs = serialize_key_groups(groups)
        del groups
        raw = [
            (name, kg, v)
            for name, vals in self.raw.items()
            for kg, v in sorted(vals.items())
            if whole or kg in key_groups
        ]
        meta: dict[str, Any] = {
            "checkpoint_id": checkpoint_id,
            "tables": {**self._restored_kinds, **self._table_kinds()},
            "table_names": list(self.tables),
        }
        return KeyGroupFileSnapshot(
            KIND_CANONICAL if canonical else KIND_HASHMAP,
            checkpoint_id,
            key_groups,
            mp,
            blobs,
            meta,
            local_dir,
            f"hashmap-{self._instance_id}",
            raw,
        )

    def restore(
        self, handles: list[KeyedStateHandle], storage: CheckpointStorage, key_groups: range, local_dir: str
    ) -> None:
        """Loads the entries of ``key_groups`` from ``handles`` of any kind; see ``KeyedStateBackend.restore``.

        Every file is downloaded and size-checked before anything is inserted; a failure later (a checksum)
        leaves the backend empty.
        """
        plan = plan_restore(handles, key_groups, self.max_parallelism)
        if any(self.tables.values()) or any(self.raw.values()):
            raise ValueError("restore needs an empty backend: this one holds state already")
        self._check_registered(plan.kinds)
        dirs: list[str] = []
        try:
            for h in plan.handles:
                dirs.append(download_handle(storage, h, local_dir))
            for name in plan.table_names:
                self.table(name)
            tables = self.tables
            for h, d in zip(plan.handles, dirs, strict=True):
                for name, key, ns, v in iter_downloaded(h, d, storage.uri(h.files[0].path), key_groups):
                    t = tables.get(name)
                    if t is None:
                        t = self.table(name)
                    t[(key, ns)] = v
                for name, kg, value in iter_downloaded_raw(h, d, storage.uri(h.files[0].path), key_groups):
                    r = self.raw.get(name)
                    if r is None:
                        r = self.raw[name] = {}
                    r[kg] = value
        except BaseException:
            self.dispose()
            raise
        finally:
            for d in dirs:
                shutil.rmtree(d, ignore_errors=True)
        self._restored_kinds.update(plan.kinds)
