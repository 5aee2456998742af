"""HashMapStateBackend: keyed state in plain dicts, one per state name, keyed by ``(key, namespace)``.

Key groups are not stored per entry: they are derived from the key (``state.keygroups``) when state is
snapshotted or redistributed, which keeps the per-record path to one dict operation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from state.backend import AbstractKeyedStateBackend
from state.keygroups import key_group_for

__all__ = ["HashMapKeyedStateBackend"]


class HashMapKeyedStateBackend(AbstractKeyedStateBackend):
    """Keyed state in memory; a table is a plain ``dict``. See ``state.backend.KeyedStateBackend``.

    Attributes:
        tables: state name -> table.
    """

    def __init__(self, max_parallelism: int = 128, clock: Callable[[], int] | None = None) -> None:
        """Creates an empty backend.

        Args:
            max_parallelism: number of key groups, 1..32768.
            clock: processing time in integer ms, for TTL (default: the wall clock).
        """
        super().__init__(max_parallelism, clock)
        self.tables: dict[str, dict[tuple[Any, Any], Any]] = {}

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

    def flush(self) -> None:
        """Nothing to do: the dicts are the state."""

    def close(self) -> None:
        """Nothing to release; the state stays readable."""

    def dispose(self) -> None:
        """Drops all state (handles stay usable, on empty tables)."""
        for t in self.tables.values():
            t.clear()
