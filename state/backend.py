"""The keyed state backend contract, and the part of it every backend shares.

One backend serves one keyed operator instance (one subtask), and the subtask's mailbox thread is its only
caller: nothing here locks. State lives in *tables*, one per state name, each a
``MutableMapping[(key, namespace), value]``; the namespace is None for plain keyed state and a window object
(hashable, picklable) for window state. Operators may use tables directly on hot paths (a window operator's
contents, a rolling reduce), user functions get *handles* (``state.handles``) bound to the current key.

Operators naming their own tables should start the name with ``_`` (e.g. ``_window_contents``): user state
names and operator table names share one space per backend.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from state.handles import (
    InternalAggregatingState,
    InternalKvState,
    InternalListState,
    InternalMapState,
    InternalReducingState,
    InternalValueState,
    create_handle,
)
from weir.datastream.state import (
    AggregatingStateDescriptor,
    ListStateDescriptor,
    MapStateDescriptor,
    ReducingStateDescriptor,
    StateDescriptor,
    ValueStateDescriptor,
)

if TYPE_CHECKING:
    from state.snapshot import KeyedStateHandle, PendingSnapshot
    from state.storage import CheckpointStorage

__all__ = [
    "MAX_MAX_PARALLELISM",
    "AbstractKeyedStateBackend",
    "IncompatibleStateError",
    "KeyedStateBackend",
    "wall_clock_ms",
]

MAX_MAX_PARALLELISM = 32768
"""Flink's upper bound for max parallelism; key groups fit in two bytes."""


def wall_clock_ms() -> int:
    """The default TTL clock: processing time in integer milliseconds."""
    return int(time.time() * 1000)


class IncompatibleStateError(ValueError):
    """A state name was asked for with another kind of state, or another TTL setting, than it holds."""


@runtime_checkable
class KeyedStateBackend(Protocol):
    """Keyed state of one operator instance.

    Invariant: the current key is set (``backend.current_key = key`` or ``set_current_key``) before any state
    access for a record or timer; the operator's mailbox thread is the only caller.

    Attributes:
        current_key: the key every handle addresses now. Operators assign it directly on the hot path.
        max_parallelism: the number of key groups (``state.keygroups.key_group_for``).
        clock: processing time in ms, used by TTL.
    """

    current_key: Any
    max_parallelism: int
    clock: Callable[[], int]

    def set_current_key(self, key: Any) -> None:
        """Sets the key every handle addresses."""
        ...

    def get_current_key(self) -> Any:
        """The key every handle addresses."""
        ...

    def table(self, name: str) -> MutableMapping[tuple[Any, Any], Any]:
        """The raw table of state ``name`` (created empty if new): ``(key, namespace) -> value``.

        The same object is returned for the same name for the life of the backend. A caller that changes a value
        in place must assign it back (``table[k] = v``) for the change to be kept.
        """
        ...

    def table_names(self) -> list[str]:
        """The names of all tables, including those restored from disk."""
        ...

    def get_state(self, descriptor: ValueStateDescriptor) -> InternalValueState:
        """The ValueState handle of ``descriptor.name`` (one handle per name).

        Raises:
            IncompatibleStateError: the name holds another kind of state or another TTL setting.
            TypeError: ``descriptor`` is not a ValueStateDescriptor.
        """
        ...

    def get_list_state(self, descriptor: ListStateDescriptor) -> InternalListState:
        """The ListState handle of ``descriptor.name``; errors as ``get_state``."""
        ...

    def get_map_state(self, descriptor: MapStateDescriptor) -> InternalMapState:
        """The MapState handle of ``descriptor.name``; errors as ``get_state``."""
        ...

    def get_reducing_state(self, descriptor: ReducingStateDescriptor) -> InternalReducingState:
        """The ReducingState handle of ``descriptor.name``; errors as ``get_state``."""
        ...

    def get_aggregating_state(self, descriptor: AggregatingStateDescriptor) -> InternalAggregatingState:
        """The AggregatingState handle of ``descriptor.name``; errors as ``get_state``."""
        ...

    def iter_key_group(self, key_group: int) -> Iterator[tuple[str, Any, Any, Any]]:
        """Every entry of one key group, as ``(table name, key, namespace, stored value)``.

        Stored values are as the handles store them (TTL-wrapped where TTL is on; see ``state.handles``).
        """
        ...

    def write_raw_state(self, name: str, blobs: Mapping[int, bytes]) -> None:
        """Replaces raw keyed state ``name`` with ``blobs``: key group -> an opaque value (Flink's raw keyed state).

        Afterwards ``name`` holds exactly the key groups of ``blobs`` (others it held are dropped). Raw keyed state
        is checkpointed, restored and redistributed by key group like table entries, but it is not a table: it
        is not in ``table_names``, ``iter_key_group`` or the handles. The timer service stores its timers there,
        one blob per key group, rewritten at each checkpoint.

        Raises:
            ValueError: a key group is out of range, or a value is not bytes.
        """
        ...

    def write_raw_state_later(self, name: str, produce: Callable[[], Mapping[int, bytes]]) -> None:
        """``write_raw_state(name, produce())``, where the backend may call ``produce`` later and on another thread
        (RocksDB: in the next checkpoint's upload, so that the task's synchronous part stays short), but always
        before it applies anything written after this call. ``produce`` must therefore only read data captured
        when this was called. If ``produce`` raises, the write is lost, the next checkpoint fails naming the
        error, and the caller should write the state again (e.g. when told the checkpoint was aborted).
        """
        ...

    def read_raw_state(self, name: str) -> dict[int, bytes]:
        """Raw keyed state ``name`` (empty if none): key group -> value, e.g. as restored from a checkpoint."""
        ...

    def raw_state_names(self) -> list[str]:
        """The names of the raw keyed states held (written, or restored)."""
        ...

    def flush(self) -> None:
        """Makes every write so far durable in the backend's store (no-op in memory)."""
        ...

    def snapshot(
        self, checkpoint_id: int, key_groups: range, local_dir: str, canonical: bool = False
    ) -> PendingSnapshot:
        """The synchronous part of a checkpoint: captures a consistent view of every table, quickly.

        Called from the mailbox thread between records. The returned snapshot's ``upload`` runs in another thread,
        concurrently with further state changes, which do not leak into it. ``local_dir`` holds temporary files
        (for RocksDB: on the same file system as the database, so the native checkpoint is hard links).
        ``canonical=True`` (savepoints) gives a self-contained ``canonical`` snapshot (no shared files).
        """
        ...

    def restore(
        self, handles: list[KeyedStateHandle], storage: CheckpointStorage, key_groups: range, local_dir: str
    ) -> None:
        """Loads the entries of ``key_groups`` from ``handles`` (any kinds, any mix of key-group ranges).

        Must be called on an empty backend (state handles may be registered already).

        Raises:
            CorruptStateError: a file is missing, truncated or fails its checksum (the message names it);
                the backend is left empty.
            ValueError: the backend is not empty, or the handles do not fit (another max parallelism, overlaps).
            IncompatibleStateError: a registered state handle contradicts a restored state's kind or TTL setting.
        """
        ...

    def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        """Checkpoint ``checkpoint_id`` is complete (every subtask acknowledged, its metadata written)."""
        ...

    def notify_checkpoint_aborted(self, checkpoint_id: int) -> None:
        """Checkpoint ``checkpoint_id`` will never complete."""
        ...

    def close(self) -> None:
        """Flushes and releases resources; the backend must not be used afterwards. Idempotent."""
        ...

    def dispose(self) -> None:
        """Closes and removes the backend's local files, if any."""
        ...


class AbstractKeyedStateBackend(ABC):
    """What both backends share: the current key, the clock, and one handle per state name.

    Subclasses provide the tables and their storage.
    """

    def __init__(self, max_parallelism: int = 128, clock: Callable[[], int] | None = None) -> None:
        """Creates the shared part.

        Args:
            max_parallelism: number of key groups, 1..32768.
            clock: processing time in integer ms, for TTL (default: the wall clock).

        Raises:
            ValueError: ``max_parallelism`` is out of range.
        """
        if not isinstance(max_parallelism, int) or not 1 <= max_parallelism <= MAX_MAX_PARALLELISM:
            raise ValueError(f"max_parallelism must be an int in 1..{MAX_MAX_PARALLELISM}, got {max_parallelism!r}")
        self.current_key: Any = None
        self.max_parallelism = max_parallelism
        self.clock: Callable[[], int] = clock if clock is not None else wall_clock_ms
        self._handles: dict[str, InternalKvState] = {}

    def set_current_key(self, key: Any) -> None:
        """Sets the key every handle addresses."""
        self.current_key = key

    def get_current_key(self) -> Any:
        """The key every handle addresses."""
        return self.current_key

    @abstractmethod
    def table(self, name: str) -> MutableMapping[tuple[Any, Any], Any]:
        """See ``KeyedStateBackend.table``."""

    @abstractmethod
    def table_names(self) -> list[str]:
        """See ``KeyedStateBackend.table_names``."""

    @abstractmethod
    def iter_key_group(self, key_group: int) -> Iterator[tuple[str, Any, Any, Any]]:
        """See ``KeyedStateBackend.iter_key_group``."""

    @abstractmethod
    def write_raw_state(self, name: str, blobs: Mapping[int, bytes]) -> None:
        """See ``KeyedStateBackend.write_raw_state``."""

    def write_raw_state_later(self, name: str, produce: Callable[[], Mapping[int, bytes]]) -> None:
        """See ``KeyedStateBackend.write_raw_state_later`` (by default at once)."""
        self.write_raw_state(name, produce())

    @abstractmethod
    def read_raw_state(self, name: str) -> dict[int, bytes]:
        """See ``KeyedStateBackend.read_raw_state``."""

    @abstractmethod
    def raw_state_names(self) -> list[str]:
        """See ``KeyedStateBackend.raw_state_names``."""

    def _check_raw(self, name: str, blobs: Mapping[int, bytes]) -> None:
        """Refuses a raw state write that ``write_raw_state`` does not allow."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"a raw state name must be a non-empty str, got {name!r}")
        mp = self.max_parallelism
        for kg, v in blobs.items():
            if type(kg) is not int or not 0 <= kg < mp:
                raise ValueError(f"raw state {name!r}: key group {kg!r} is out of range 0..{mp - 1}")
            if not isinstance(v, bytes):
                raise ValueError(f"raw state {name!r}: the value of key group {kg} is a {type(v).__name__}, not bytes")

    @abstractmethod
    def flush(self) -> None:
        """See ``KeyedStateBackend.flush``."""

    @abstractmethod
    def close(self) -> None:
        """See ``KeyedStateBackend.close``."""

    @abstractmethod
    def dispose(self) -> None:
        """See ``KeyedStateBackend.dispose``."""

    @abstractmethod
    def snapshot(
        self, checkpoint_id: int, key_groups: range, local_dir: str, canonical: bool = False
    ) -> PendingSnapshot:
        """See ``KeyedStateBackend.snapshot``."""

    @abstractmethod
    def restore(
        self, handles: list[KeyedStateHandle], storage: CheckpointStorage, key_groups: range, local_dir: str
    ) -> None:
        """See ``KeyedStateBackend.restore``."""

    def notify_checkpoint_complete(self, checkpoint_id: int) -> None:  # noqa: B027 - optional hook
        """See ``KeyedStateBackend.notify_checkpoint_complete`` (nothing to do by default)."""

    def notify_checkpoint_aborted(self, checkpoint_id: int) -> None:  # noqa: B027 - optional hook
        """See ``KeyedStateBackend.notify_checkpoint_aborted`` (nothing to do by default)."""

    def _table_kinds(self) -> dict[str, list[Any]]:
        """state name -> [kind, ttl on] of the states registered through descriptors."""
        return {name: [h.kind, h.ttl_config is not None] for name, h in self._handles.items()}

    def _check_registered(self, kinds: dict[str, list[Any]]) -> None:
        """Refuses restored state kinds that a handle registered before the restore contradicts."""
        for name, (kind, ttl) in kinds.items():
            h = self._handles.get(name)
            if h is not None and (h.kind != kind or (h.ttl_config is not None) != bool(ttl)):
                raise IncompatibleStateError(
                    f"state {name!r} is registered as {h.kind} state {'with' if h.ttl_config else 'without'} TTL; "
                    f"the snapshot holds {kind} state {'with' if ttl else 'without'} TTL"
                )

    def get_state(self, descriptor: ValueStateDescriptor) -> InternalValueState:
        """See ``KeyedStateBackend.get_state``."""
        h = self._handle(descriptor, ValueStateDescriptor, "value")
        assert isinstance(h, InternalValueState)
        return h

    def get_list_state(self, descriptor: ListStateDescriptor) -> InternalListState:
        """See ``KeyedStateBackend.get_list_state``."""
        h = self._handle(descriptor, ListStateDescriptor, "list")
        assert isinstance(h, InternalListState)
        return h

    def get_map_state(self, descriptor: MapStateDescriptor) -> InternalMapState:
        """See ``KeyedStateBackend.get_map_state``."""
        h = self._handle(descriptor, MapStateDescriptor, "map")
        assert isinstance(h, InternalMapState)
        return h

    def get_reducing_state(self, descriptor: ReducingStateDescriptor) -> InternalReducingState:
        """See ``KeyedStateBackend.get_reducing_state``."""
        h = self._handle(descriptor, ReducingStateDescriptor, "reducing")
        assert isinstance(h, InternalReducingState)
        return h

    def get_aggregating_state(self, descriptor: AggregatingStateDescriptor) -> InternalAggregatingState:
        """See ``KeyedStateBackend.get_aggregating_state``."""
        h = self._handle(descriptor, AggregatingStateDescriptor, "aggregating")
        assert isinstance(h, InternalAggregatingState)
        return h

    def _check_kind(self, name: str, kind: str, ttl: bool) -> None:  # noqa: B027 - optional hook
        """Hook: refuse a kind or TTL setting that state stored under ``name`` earlier contradicts."""

    def _handle(self, descriptor: Any, desc_type: type[StateDescriptor], kind: str) -> InternalKvState:
        if not isinstance(descriptor, desc_type):
            raise TypeError(
                f"{kind} state is asked for with a {desc_type.__name__}, got {type(descriptor).__name__}: "
                f"{descriptor!r}"
            )
        name = descriptor.name
        ttl = descriptor.get_ttl_config()
        h = self._handles.get(name)
        if h is None:
            self._check_kind(name, kind, ttl is not None)
            h = create_handle(kind, self, self.table(name), descriptor)
            self._handles[name] = h
        elif h.kind != kind:
            raise IncompatibleStateError(
                f"state {name!r} is already registered as {h.kind} state; it cannot also be {kind} state "
                "(one name holds one kind of state: give this state another name)"
            )
        elif (h.ttl_config is None) != (ttl is None):
            raise IncompatibleStateError(
                f"state {name!r} is already registered {'with' if h.ttl_config else 'without'} TTL; asking for it "
                f"{'with' if ttl else 'without'} TTL is not possible (use the same descriptor settings)"
            )
        return h
