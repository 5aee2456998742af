"""HashMapStateBackend: keyed state in plain dicts, one per state name, keyed by the record's key.

Key groups are not stored per entry: they are derived from the key (``state.keygroups``) when state is
snapshotted or redistributed, which keeps the per-record path to one dict operation.
"""

from __future__ import annotations

from typing import Any

from weir.datastream.state import ValueState, ValueStateDescriptor


class _HashMapValueState(ValueState):
    __slots__ = ("_backend", "_table")

    def __init__(self, backend: HashMapKeyedStateBackend, table: dict[Any, Any]) -> None:
        self._backend = backend
        self._table = table

    def value(self) -> Any:
        return self._table.get(self._backend.current_key)

    def update(self, value: Any) -> None:
        if value is None:
            self._table.pop(self._backend.current_key, None)
        else:
            self._table[self._backend.current_key] = value

    def clear(self) -> None:
        self._table.pop(self._backend.current_key, None)


class HashMapKeyedStateBackend:
    """Keyed state in memory. See ``state.backend.KeyedStateBackend``."""

    def __init__(self) -> None:
        self.current_key: Any = None
        self.tables: dict[str, dict[Any, Any]] = {}

    def set_current_key(self, key: Any) -> None:
        self.current_key = key

    def get_current_key(self) -> Any:
        return self.current_key

    def get_state(self, descriptor: ValueStateDescriptor) -> ValueState:
        return _HashMapValueState(self, self.tables.setdefault(descriptor.name, {}))
