"""State handles, written once over raw state tables and shared by every keyed state backend.

A backend stores each state in a *table*: a ``MutableMapping[(key, namespace), value]`` (a plain dict in the
hashmap backend, a cache-fronted RocksDB column family in the rocksdb backend). A handle addresses the entry
``(backend.current_key, handle namespace)``; the namespace is None for plain keyed state and a window for window
state. What a table entry holds, per kind of state:

============  ==============================  ===========================================================
kind          without TTL                     with TTL (``ts`` = last-access time, ms of processing time)
============  ==============================  ===========================================================
value         the value                       ``(value, ts)``
list          a non-empty list of elements    a non-empty list of ``(element, ts)``
map           a non-empty dict                a non-empty dict of ``user_key -> (value, ts)``
reducing      the reduced value               ``(value, ts)``
aggregating   the accumulator                 ``(accumulator, ts)``
============  ==============================  ===========================================================

Rules every handle keeps, which make the RocksDB write-back cache correct:

- after changing an entry it writes it back (``table[k] = new_value``), even when the change was made in place
  on the object the table returned: a table may hold a copy, and only an assignment marks the entry dirty;
- an entry that becomes empty is deleted (``discard``), never stored empty;
- objects handed to user code are copies where the state's contract says so (``ListState.get``, map views).

TTL follows Flink (``TtlStateFactory`` and the ``Ttl*State`` decorators): an entry expires when
``ts + ttl <= now``; a read that meets an expired entry removes it, and returns it only with
``ReturnExpiredIfNotCleanedUp``; with ``OnReadAndWrite`` a read also refreshes ``ts``. ListState keeps a
timestamp per element, MapState per map entry.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Hashable, Iterable, MutableMapping
from typing import TYPE_CHECKING, Any

from weir.datastream.state import (
    AggregatingState,
    AggregatingStateDescriptor,
    ListState,
    MapState,
    ReducingState,
    ReducingStateDescriptor,
    StateDescriptor,
    StateTtlConfig,
    ValueState,
)

if TYPE_CHECKING:
    from state.backend import KeyedStateBackend

Table = MutableMapping[tuple[Any, Any], Any]
"""A raw state table: (key, namespace) -> stored value."""

__all__ = [
    "InternalAggregatingState",
    "InternalKvState",
    "InternalListState",
    "InternalMapState",
    "InternalMergingState",
    "InternalReducingState",
    "InternalValueState",
    "Table",
    "create_handle",
    "discard_of",
]


def discard_of(table: Table) -> Callable[[tuple[Any, Any]], None]:
    """A function that deletes an entry of ``table`` if present (a blind delete where the table has one)."""
    discard = getattr(table, "discard", None)
    if discard is not None:
        return discard  # type: ignore[no-any-return]
    pop = table.pop

    def _discard(k: tuple[Any, Any]) -> None:
        pop(k, None)

    return _discard


# ---------------------------------------------------------------------------------------------------------------
# Internal interfaces: what operators see beyond the user-facing state interfaces
# ---------------------------------------------------------------------------------------------------------------


class InternalKvState:
    """A handle's operator-facing side: the namespace its accesses address."""

    kind: str = ""
    name: str
    ttl_config: StateTtlConfig | None

    @abstractmethod
    def set_current_namespace(self, namespace: Hashable) -> None:
        """Addresses ``(current key, namespace)`` from now on (None: plain keyed state; else e.g. a window)."""

    @abstractmethod
    def get_current_namespace(self) -> Hashable:
        """The namespace accesses address now."""


class InternalMergingState(InternalKvState):
    """A handle whose namespaces can be merged (merging session windows)."""

    @abstractmethod
    def merge_namespaces(self, target: Hashable, sources: Iterable[Hashable]) -> None:
        """Merges the current key's contents of ``sources`` into ``target`` and clears the sources.

        A source equal to ``target`` is skipped. The current namespace is left unchanged.
        """


class InternalValueState(ValueState[Any], InternalKvState):
    """ValueState handle."""


class InternalListState(ListState[Any], InternalMergingState):
    """ListState handle."""

    @abstractmethod
    def get(self) -> list[Any]:
        """A new list of the current key's elements (empty when it has none)."""


class InternalMapState(MapState[Any, Any], InternalKvState):
    """MapState handle."""


class InternalReducingState(ReducingState[Any], InternalMergingState):
    """ReducingState handle."""


class InternalAggregatingState(AggregatingState[Any, Any], InternalMergingState):
    """AggregatingState handle."""


# ---------------------------------------------------------------------------------------------------------------
# Shared plumbing
# ---------------------------------------------------------------------------------------------------------------


class _Handle:
    __slots__ = ("_backend", "_table", "_ns", "_discard", "name", "ttl_config")

    def __init__(self, backend: KeyedStateBackend, table: Table, name: str, ttl_config: StateTtlConfig | None) -> None:
        self._backend = backend
        self._table = table
        self._ns: Hashable = None
        self._discard = discard_of(table)
        self.name = name
        self.ttl_config = ttl_config

    def set_current_namespace(self, namespace: Hashable) -> None:
        self._ns = namespace

    def get_current_namespace(self) -> Hashable:
        return self._ns

    def clear(self) -> None:
        self._discard((self._backend.current_key, self._ns))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


class _Ttl(_Handle):
    __slots__ = ("_ttl", "_refresh", "_return_expired", "_clock")

    def __init__(self, backend: KeyedStateBackend, table: Table, name: str, ttl_config: StateTtlConfig | None) -> None:
        super().__init__(backend, table, name, ttl_config)
        assert ttl_config is not None
        self._ttl = ttl_config.get_ttl().ms
        self._refresh = ttl_config.get_update_type() is StateTtlConfig.UpdateType.OnReadAndWrite
        self._return_expired = (
            ttl_config.get_state_visibility() is StateTtlConfig.StateVisibility.ReturnExpiredIfNotCleanedUp
        )
        self._clock: Callable[[], int] = backend.clock

    def _read_single(self, k: tuple[Any, Any]) -> Any:
        """The user value of a ``(value, ts)`` entry, with expiry and refresh-on-read applied."""
        w = self._table.get(k)
        if w is None:
            return None
        v, ts = w
        now = self._clock()
        if ts + self._ttl <= now:
            self._discard(k)
            return v if self._return_expired else None
        if self._refresh:
            self._table[k] = (v, now)
        return v

    def _live(self, w: tuple[Any, int] | None, now: int) -> Any:
        """The user value of an entry read for a write: None when absent, or expired and not returnable."""
        if w is None or (w[1] + self._ttl <= now and not self._return_expired):
            return None
        return w[0]


def _check_elements(values: Iterable[Any] | None) -> list[Any]:
    out = [] if values is None else list(values)
    for v in out:
        if v is None:
            raise ValueError("None cannot be added to a ListState")
    return out


# ---------------------------------------------------------------------------------------------------------------
# Value
# ---------------------------------------------------------------------------------------------------------------


class _ValueHandle(_Handle, InternalValueState):
    __slots__ = ()
    kind = "value"

    def value(self) -> Any:
        return self._table.get((self._backend.current_key, self._ns))

    def update(self, value: Any) -> None:
        if value is None:
            self._discard((self._backend.current_key, self._ns))
        else:
            self._table[(self._backend.current_key, self._ns)] = value


class _TtlValueHandle(_Ttl, InternalValueState):
    __slots__ = ()
    kind = "value"

    def value(self) -> Any:
        return self._read_single((self._backend.current_key, self._ns))

    def update(self, value: Any) -> None:
        k = (self._backend.current_key, self._ns)
        if value is None:
            self._discard(k)
        else:
            self._table[k] = (value, self._clock())


# ---------------------------------------------------------------------------------------------------------------
# List
# ---------------------------------------------------------------------------------------------------------------


class _ListHandle(_Handle, InternalListState):
    __slots__ = ()
    kind = "list"

    def get(self) -> list[Any]:
        lst = self._table.get((self._backend.current_key, self._ns))
        return [] if lst is None else list(lst)

    def add(self, value: Any) -> None:
        if value is None:
            raise ValueError("None cannot be added to a ListState")
        t = self._table
        k = (self._backend.current_key, self._ns)
        lst = t.get(k)
        if lst is None:
            t[k] = [value]
        else:
            lst.append(value)
            t[k] = lst

    def add_all(self, values: Iterable[Any] | None) -> None:
        new = _check_elements(values)
        if not new:
            return
        t = self._table
        k = (self._backend.current_key, self._ns)
        lst = t.get(k)
        if lst is None:
            t[k] = new
        else:
            lst.extend(new)
            t[k] = lst

    def update(self, values: Iterable[Any] | None) -> None:
        new = _check_elements(values)
        k = (self._backend.current_key, self._ns)
        if new:
            self._table[k] = new
        else:
            self._discard(k)

    def merge_namespaces(self, target: Hashable, sources: Iterable[Hashable]) -> None:
        t, key = self._table, self._backend.current_key
        merged: list[Any] = []
        for ns in sources:
            if ns == target:
                continue
            lst = t.get((key, ns))
            if lst is not None:
                merged.extend(lst)
                self._discard((key, ns))
        if merged:
            lst = t.get((key, target))
            if lst is None:
                t[(key, target)] = merged
            else:
                lst.extend(merged)
                t[(key, target)] = lst


class _TtlListHandle(_Ttl, InternalListState):
    __slots__ = ()
    kind = "list"

    def get(self) -> list[Any]:
        t = self._table
        k = (self._backend.current_key, self._ns)
        lst = t.get(k)
        if lst is None:
            return []
        now, ttl = self._clock(), self._ttl
        out: list[Any] = []
        keep: list[tuple[Any, int]] = []
        expired = False
        for w in lst:
            v, ts = w
            if ts + ttl <= now:
                expired = True
                if self._return_expired:
                    out.append(v)
            else:
                out.append(v)
                keep.append((v, now) if self._refresh else w)
        if expired or self._refresh:
            if keep:
                t[k] = keep
            else:
                self._discard(k)
        return out

    def add(self, value: Any) -> None:
        if value is None:
            raise ValueError("None cannot be added to a ListState")
        self._append([(value, self._clock())])

    def add_all(self, values: Iterable[Any] | None) -> None:
        new = _check_elements(values)
        if new:
            now = self._clock()
            self._append([(v, now) for v in new])

    def _append(self, wrapped: list[tuple[Any, int]]) -> None:
        t = self._table
        k = (self._backend.current_key, self._ns)
        lst = t.get(k)
        if lst is None:
            t[k] = wrapped
        else:
            lst.extend(wrapped)
            t[k] = lst

    def update(self, values: Iterable[Any] | None) -> None:
        new = _check_elements(values)
        k = (self._backend.current_key, self._ns)
        if new:
            now = self._clock()
            self._table[k] = [(v, now) for v in new]
        else:
            self._discard(k)

    def merge_namespaces(self, target: Hashable, sources: Iterable[Hashable]) -> None:
        # elements keep their own timestamps, as in Flink (the merged list is the concatenation)
        t, key = self._table, self._backend.current_key
        merged: list[tuple[Any, int]] = []
        for ns in sources:
            if ns == target:
                continue
            lst = t.get((key, ns))
            if lst is not None:
                merged.extend(lst)
                self._discard((key, ns))
        if merged:
            lst = t.get((key, target))
            t[(key, target)] = merged if lst is None else lst + merged


# ---------------------------------------------------------------------------------------------------------------
# Map
# ---------------------------------------------------------------------------------------------------------------


class _MapHandle(_Handle, InternalMapState):
    __slots__ = ()
    kind = "map"

    def get(self, key: Any) -> Any:
        d = self._table.get((self._backend.current_key, self._ns))
        return None if d is None else d.get(key)

    def put(self, key: Any, value: Any) -> None:
        t = self._table
        k = (self._backend.current_key, self._ns)
        d = t.get(k)
        if d is None:
            t[k] = {key: value}
        else:
            d[key] = value
            t[k] = d

    def put_all(self, dict_value: dict[Any, Any]) -> None:
        if not dict_value:
            return
        t = self._table
        k = (self._backend.current_key, self._ns)
        d = t.get(k)
        if d is None:
            t[k] = dict(dict_value)
        else:
            d.update(dict_value)
            t[k] = d

    def remove(self, key: Any) -> None:
        t = self._table
        k = (self._backend.current_key, self._ns)
        d = t.get(k)
        if d is None or key not in d:
            return
        del d[key]
        if d:
            t[k] = d
        else:
            self._discard(k)

    def contains(self, key: Any) -> bool:
        d = self._table.get((self._backend.current_key, self._ns))
        return d is not None and key in d

    def items(self) -> list[tuple[Any, Any]]:
        d = self._table.get((self._backend.current_key, self._ns))
        return [] if d is None else list(d.items())

    def keys(self) -> list[Any]:
        d = self._table.get((self._backend.current_key, self._ns))
        return [] if d is None else list(d)

    def values(self) -> list[Any]:
        d = self._table.get((self._backend.current_key, self._ns))
        return [] if d is None else list(d.values())

    def is_empty(self) -> bool:
        return not self._table.get((self._backend.current_key, self._ns))


class _TtlMapHandle(_Ttl, InternalMapState):
    __slots__ = ()
    kind = "map"

    def _store(self, k: tuple[Any, Any], d: dict[Any, Any]) -> None:
        if d:
            self._table[k] = d
        else:
            self._discard(k)

    def _lookup(self, key: Any) -> tuple[bool, Any]:
        """(visible, value) of one map entry, with expiry and refresh-on-read applied."""
        k = (self._backend.current_key, self._ns)
        d = self._table.get(k)
        if d is None:
            return False, None
        w = d.get(key)
        if w is None:
            return False, None
        v, ts = w
        now = self._clock()
        if ts + self._ttl <= now:
            del d[key]
            self._store(k, d)
            return self._return_expired, v if self._return_expired else None
        if self._refresh:
            d[key] = (v, now)
            self._table[k] = d
        return True, v

    def get(self, key: Any) -> Any:
        return self._lookup(key)[1]

    def contains(self, key: Any) -> bool:
        return self._lookup(key)[0]

    def put(self, key: Any, value: Any) -> None:
        t = self._table
        k = (self._backend.current_key, self._ns)
        d = t.get(k)
        if d is None:
            t[k] = {key: (value, self._clock())}
        else:
            d[key] = (value, self._clock())
            t[k] = d

    def put_all(self, dict_value: dict[Any, Any]) -> None:
        if not dict_value:
            return
        now = self._clock()
        t = self._table
        k = (self._backend.current_key, self._ns)
        d = t.get(k)
        if d is None:
            d = {}
        for mk, mv in dict_value.items():
            d[mk] = (mv, now)
        t[k] = d

    def remove(self, key: Any) -> None:
        k = (self._backend.current_key, self._ns)
        d = self._table.get(k)
        if d is None or key not in d:
            return
        del d[key]
        self._store(k, d)

    def _scan(self, refresh: bool) -> list[tuple[Any, Any]]:
        """The visible entries; expired ones are removed, live ones refreshed when ``refresh``."""
        k = (self._backend.current_key, self._ns)
        d = self._table.get(k)
        if d is None:
            return []
        now, ttl, ret = self._clock(), self._ttl, self._return_expired
        out: list[tuple[Any, Any]] = []
        expired: list[Any] = []
        for mk, (v, ts) in d.items():
            if ts + ttl <= now:
                expired.append(mk)
                if ret:
                    out.append((mk, v))
            else:
                out.append((mk, v))
        if expired or refresh:
            for mk in expired:
                del d[mk]
            if refresh:
                for mk in d:
                    d[mk] = (d[mk][0], now)
            self._store(k, d)
        return out

    def items(self) -> list[tuple[Any, Any]]:
        return self._scan(self._refresh)

    def keys(self) -> list[Any]:
        return [mk for mk, _ in self._scan(self._refresh)]

    def values(self) -> list[Any]:
        return [v for _, v in self._scan(self._refresh)]

    def is_empty(self) -> bool:
        return not self._scan(False)


# ---------------------------------------------------------------------------------------------------------------
# Reducing and aggregating: one accumulator per entry
# ---------------------------------------------------------------------------------------------------------------


class _Accumulating(_Handle):
    """Reducing and aggregating state share everything but three functions."""

    __slots__ = ()

    def _add(self, acc: Any, value: Any) -> Any:
        """The accumulator after adding ``value`` to ``acc`` (None: no accumulator yet)."""
        raise NotImplementedError

    def _merge(self, a: Any, b: Any) -> Any:
        raise NotImplementedError

    def _result(self, acc: Any) -> Any:
        raise NotImplementedError

    def get(self) -> Any:
        acc = self._table.get((self._backend.current_key, self._ns))
        return None if acc is None else self._result(acc)

    def add(self, value: Any) -> None:
        k = (self._backend.current_key, self._ns)
        if value is None:  # Flink's heap backend: adding null clears
            self._discard(k)
            return
        t = self._table
        t[k] = self._add(t.get(k), value)

    def merge_namespaces(self, target: Hashable, sources: Iterable[Hashable]) -> None:
        t, key = self._table, self._backend.current_key
        merged: Any = None
        for ns in sources:
            if ns == target:
                continue
            acc = t.get((key, ns))
            if acc is not None:
                self._discard((key, ns))
                merged = acc if merged is None else self._merge(merged, acc)
        if merged is not None:
            acc = t.get((key, target))
            t[(key, target)] = merged if acc is None else self._merge(acc, merged)


class _TtlAccumulating(_Ttl):
    __slots__ = ()

    def _add(self, acc: Any, value: Any) -> Any:
        raise NotImplementedError

    def _merge(self, a: Any, b: Any) -> Any:
        raise NotImplementedError

    def _result(self, acc: Any) -> Any:
        raise NotImplementedError

    def get(self) -> Any:
        acc = self._read_single((self._backend.current_key, self._ns))
        return None if acc is None else self._result(acc)

    def add(self, value: Any) -> None:
        k = (self._backend.current_key, self._ns)
        if value is None:
            self._discard(k)
            return
        t = self._table
        now = self._clock()
        t[k] = (self._add(self._live(t.get(k), now), value), now)

    def merge_namespaces(self, target: Hashable, sources: Iterable[Hashable]) -> None:
        t, key = self._table, self._backend.current_key
        now = self._clock()
        merged: Any = None
        for ns in sources:
            if ns == target:
                continue
            w = t.get((key, ns))
            if w is not None:
                self._discard((key, ns))
                acc = self._live(w, now)
                if acc is not None:
                    merged = acc if merged is None else self._merge(merged, acc)
        if merged is not None:
            acc = self._live(t.get((key, target)), now)
            t[(key, target)] = (merged if acc is None else self._merge(acc, merged), now)


class _ReducingMixin:
    __slots__ = ()
    _reduce: Callable[[Any, Any], Any]

    def _add(self, acc: Any, value: Any) -> Any:
        return value if acc is None else self._reduce(acc, value)

    def _merge(self, a: Any, b: Any) -> Any:
        return self._reduce(a, b)

    def _result(self, acc: Any) -> Any:
        return acc


class _AggregatingMixin:
    __slots__ = ()
    _agg: Any

    def _add(self, acc: Any, value: Any) -> Any:
        agg = self._agg
        return agg.add(value, agg.create_accumulator() if acc is None else acc)

    def _merge(self, a: Any, b: Any) -> Any:
        merge = getattr(self._agg, "merge", None)
        if merge is None:
            raise TypeError(
                f"merging windows needs AggregateFunction.merge(acc_a, acc_b); {type(self._agg).__name__} has none"
            )
        return merge(a, b)

    def _result(self, acc: Any) -> Any:
        return self._agg.get_result(acc)


class _ReducingHandle(_ReducingMixin, _Accumulating, InternalReducingState):
    __slots__ = ("_reduce",)
    kind = "reducing"

    def add(self, value: Any) -> None:  # the hot path, without the generic _add indirection
        k = (self._backend.current_key, self._ns)
        if value is None:
            self._discard(k)
            return
        t = self._table
        acc = t.get(k)
        t[k] = value if acc is None else self._reduce(acc, value)


class _TtlReducingHandle(_ReducingMixin, _TtlAccumulating, InternalReducingState):
    __slots__ = ("_reduce",)
    kind = "reducing"


class _AggregatingHandle(_AggregatingMixin, _Accumulating, InternalAggregatingState):
    __slots__ = ("_agg",)
    kind = "aggregating"


class _TtlAggregatingHandle(_AggregatingMixin, _TtlAccumulating, InternalAggregatingState):
    __slots__ = ("_agg",)
    kind = "aggregating"


# ---------------------------------------------------------------------------------------------------------------
# Factory
# ---------------------------------------------------------------------------------------------------------------

_CLASSES: dict[str, tuple[type[_Handle], type[_Handle]]] = {
    "value": (_ValueHandle, _TtlValueHandle),
    "list": (_ListHandle, _TtlListHandle),
    "map": (_MapHandle, _TtlMapHandle),
    "reducing": (_ReducingHandle, _TtlReducingHandle),
    "aggregating": (_AggregatingHandle, _TtlAggregatingHandle),
}


def create_handle(kind: str, backend: KeyedStateBackend, table: Table, descriptor: StateDescriptor) -> InternalKvState:
    """A new handle of ``kind`` ("value", "list", "map", "reducing", "aggregating") over ``table``.

    TTL is taken from ``descriptor`` (``enable_time_to_live``); the clock is ``backend.clock``.

    Raises:
        ValueError: ``kind`` is unknown.
    """
    try:
        plain, with_ttl = _CLASSES[kind]
    except KeyError:
        raise ValueError(f"unknown state kind {kind!r}; one of {sorted(_CLASSES)}") from None
    ttl = descriptor.get_ttl_config()
    h = (plain if ttl is None else with_ttl)(backend, table, descriptor.name, ttl)
    if isinstance(h, _ReducingMixin):
        assert isinstance(descriptor, ReducingStateDescriptor)
        h._reduce = descriptor.reducer()
    elif isinstance(h, _AggregatingMixin):
        assert isinstance(descriptor, AggregatingStateDescriptor)
        h._agg = descriptor.get_agg_function()
    assert isinstance(h, InternalKvState)
    return h
