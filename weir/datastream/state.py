"""Keyed state descriptors, state interfaces and state TTL (``pyflink.datastream.state``).

A state handle is bound to its operator; every access reads or writes the entry of the key the operator is
processing now (the current key), so user code never names the key. A function asks for its state by
descriptor, usually in ``open``::

    def open(self, runtime_context):
        ttl = StateTtlConfig.new_builder(Time.minutes(10)).update_ttl_on_read_and_write().build()
        desc = ValueStateDescriptor("last_seen", Types.LONG())
        desc.enable_time_to_live(ttl)
        self.last_seen = runtime_context.get_state(desc)

The same name always gives the same state; one name holds one kind of state.

Values are kept by reference in the ``hashmap`` backend and serialized in the ``rocksdb`` backend, as in
Flink: change a value only through the state's methods (``update``, ``put``, ``add``): an object returned by
``value()`` or ``MapState.get`` and changed in place is not guaranteed to be stored.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from enum import Enum
from typing import Any, Generic, TypeVar

from weir.common.time import Duration, Time, to_millis
from weir.datastream.functions import ReduceFunction, callable_of

__all__ = [
    "AggregatingState",
    "AggregatingStateDescriptor",
    "AppendingState",
    "ListState",
    "ListStateDescriptor",
    "MapState",
    "MapStateDescriptor",
    "MergingState",
    "ReducingState",
    "ReducingStateDescriptor",
    "State",
    "StateDescriptor",
    "StateTtlConfig",
    "ValueState",
    "ValueStateDescriptor",
]

T = TypeVar("T")
K = TypeVar("K")
V = TypeVar("V")
IN = TypeVar("IN")
OUT = TypeVar("OUT")


# ---------------------------------------------------------------------------------------------------------------
# State interfaces
# ---------------------------------------------------------------------------------------------------------------


class State(ABC):
    """Base of every kind of keyed state."""

    @abstractmethod
    def clear(self) -> None:
        """Removes the state of the current key (and current namespace)."""


class ValueState(State, Generic[T]):
    """A single value per key."""

    @abstractmethod
    def value(self) -> T | None:
        """Returns the value of the current key, or None when it has none."""

    @abstractmethod
    def update(self, value: T | None) -> None:
        """Sets the value of the current key; ``update(None)`` clears it."""


class AppendingState(State, Generic[IN, OUT]):
    """State that values are added to, and whose contents are read as a whole."""

    @abstractmethod
    def get(self) -> OUT:
        """Returns the contents of the current key."""

    @abstractmethod
    def add(self, value: IN) -> None:
        """Adds a value to the contents of the current key."""


class MergingState(AppendingState[IN, OUT]):
    """Appending state whose contents of several namespaces (windows) can be merged into one."""


class ReducingState(MergingState[T, T]):
    """One value per key, combined with each added value by a reduce function.

    ``get()`` returns None when nothing was added.
    """


class AggregatingState(MergingState[IN, OUT]):
    """An accumulator per key, fed by an AggregateFunction; ``get()`` returns ``get_result(accumulator)``.

    ``get()`` returns None when nothing was added.
    """


class ListState(MergingState[T, Iterable[T]]):
    """A list of values per key.

    ``get()`` returns a new list (empty when the key has none): changing it does not change the state.
    None is not a valid element.
    """

    @abstractmethod
    def update(self, values: Iterable[T] | None) -> None:
        """Replaces the list of the current key; None or an empty list clears it.

        Raises:
            ValueError: an element is None.
        """

    @abstractmethod
    def add_all(self, values: Iterable[T] | None) -> None:
        """Appends values to the list of the current key; None or an empty list changes nothing.

        Raises:
            ValueError: an element is None.
        """

    def __iter__(self) -> Iterator[T]:
        return iter(self.get())


class MapState(State, Generic[K, V]):
    """A map per key.

    ``items()``, ``keys()`` and ``values()`` return snapshots (lists): the map may be changed while iterating
    over them. ``state[k]`` is ``get(k)`` (None when absent), ``del state[k]`` is ``remove(k)``.
    """

    @abstractmethod
    def get(self, key: K) -> V | None:
        """Returns the value mapped to ``key``, or None."""

    @abstractmethod
    def put(self, key: K, value: V) -> None:
        """Maps ``key`` to ``value``."""

    @abstractmethod
    def put_all(self, dict_value: dict[K, V]) -> None:
        """Copies every mapping of ``dict_value`` into the state."""

    @abstractmethod
    def remove(self, key: K) -> None:
        """Removes the mapping of ``key`` (nothing happens when there is none)."""

    @abstractmethod
    def contains(self, key: K) -> bool:
        """Whether ``key`` is mapped."""

    @abstractmethod
    def items(self) -> Iterable[tuple[K, V]]:
        """All mappings of the current key."""

    @abstractmethod
    def keys(self) -> Iterable[K]:
        """All map keys of the current key."""

    @abstractmethod
    def values(self) -> Iterable[V]:
        """All map values of the current key."""

    @abstractmethod
    def is_empty(self) -> bool:
        """Whether the current key has no mappings."""

    def __getitem__(self, key: K) -> V | None:
        return self.get(key)

    def __setitem__(self, key: K, value: V) -> None:
        self.put(key, value)

    def __delitem__(self, key: K) -> None:
        self.remove(key)

    def __contains__(self, key: K) -> bool:
        return self.contains(key)

    def __iter__(self) -> Iterator[K]:
        return iter(self.keys())


# ---------------------------------------------------------------------------------------------------------------
# Time to live
# ---------------------------------------------------------------------------------------------------------------


class StateTtlConfig:
    """Time-to-live of keyed state (``pyflink.datastream.state.StateTtlConfig``), built with ``new_builder``.

    An entry expires ``ttl`` milliseconds of processing time after its last-access timestamp, which is set when
    the entry is created and written (and read, with ``UpdateType.OnReadAndWrite``). ListState keeps a timestamp
    per element and MapState one per map entry. A read that meets an expired entry removes it, and returns it
    only with ``StateVisibility.ReturnExpiredIfNotCleanedUp``.

    Expired entries are removed when they are read; the background cleanup strategies are recorded here
    for the snapshot and compaction layers.
    """

    class UpdateType(Enum):
        """When the last-access timestamp of an entry is set."""

        Disabled = 0
        """TTL is disabled: state does not expire."""
        OnCreateAndWrite = 1
        """Set when the entry is created and on every write."""
        OnReadAndWrite = 2
        """As OnCreateAndWrite, and also on every read."""

    class StateVisibility(Enum):
        """Whether an expired value that was not cleaned up yet may be returned."""

        ReturnExpiredIfNotCleanedUp = 0
        """Return an expired value if it is still stored (the read then removes it)."""
        NeverReturnExpired = 1
        """Never return an expired value."""

    class TtlTimeCharacteristic(Enum):
        """The time scale of TTL: processing time only, as in Flink."""

        ProcessingTime = 0

    class CleanupStrategies:
        """When expired state is cleaned up, beyond the cleanup on read that always happens."""

        class Strategies(Enum):
            """The kinds of cleanup strategy."""

            FULL_STATE_SCAN_SNAPSHOT = 0
            INCREMENTAL_CLEANUP = 1
            ROCKSDB_COMPACTION_FILTER = 2

        class CleanupStrategy:
            """Base of cleanup strategy configurations."""

            def __eq__(self, other: object) -> bool:
                return type(other) is type(self) and vars(other) == vars(self)

            def __hash__(self) -> int:
                return hash((type(self).__name__, tuple(sorted(vars(self).items()))))

        class EmptyCleanupStrategy(CleanupStrategy):
            """A strategy without parameters."""

        class IncrementalCleanupStrategy(CleanupStrategy):
            """Check ``cleanup_size`` entries for expiry upon state access (and per record if asked)."""

            def __init__(self, cleanup_size: int, run_cleanup_for_every_record: bool) -> None:
                """Configures the strategy.

                Raises:
                    ValueError: ``cleanup_size`` is not positive.
                """
                if cleanup_size <= 0:
                    raise ValueError(f"cleanup_size must be positive, got {cleanup_size}")
                self._cleanup_size = int(cleanup_size)
                self._run_cleanup_for_every_record = bool(run_cleanup_for_every_record)

            def get_cleanup_size(self) -> int:
                """Number of entries checked upon each state access."""
                return self._cleanup_size

            def run_cleanup_for_every_record(self) -> bool:
                """Whether the incremental cleanup also runs for every processed record."""
                return self._run_cleanup_for_every_record

        class RocksdbCompactFilterCleanupStrategy(CleanupStrategy):
            """Drop expired entries while RocksDB compacts."""

            def __init__(
                self, query_time_after_num_entries: int, periodic_compaction_time: Duration | None = None
            ) -> None:
                """Configures the strategy (periodic compaction every 30 days by default).

                Raises:
                    ValueError: ``query_time_after_num_entries`` is negative.
                """
                if query_time_after_num_entries < 0:
                    raise ValueError(
                        f"query_time_after_num_entries must be >= 0, got {query_time_after_num_entries}"
                    )
                self._query_time_after_num_entries = int(query_time_after_num_entries)
                self._periodic_compaction_time = (
                    Duration.of_days(30) if periodic_compaction_time is None else periodic_compaction_time
                )

            def get_query_time_after_num_entries(self) -> int:
                """Entries processed by the compaction filter between two reads of the clock."""
                return self._query_time_after_num_entries

            def get_periodic_compaction_time(self) -> Duration:
                """Files older than this are compacted (so filtered) periodically."""
                return self._periodic_compaction_time

        EMPTY_STRATEGY: StateTtlConfig.CleanupStrategies.EmptyCleanupStrategy

        def __init__(
            self,
            strategies: dict[
                StateTtlConfig.CleanupStrategies.Strategies, StateTtlConfig.CleanupStrategies.CleanupStrategy
            ],
            is_cleanup_in_background: bool,
        ) -> None:
            """The configured strategies; made by ``StateTtlConfig.Builder.build``."""
            self._strategies = dict(strategies)
            self._is_cleanup_in_background = is_cleanup_in_background

        def is_cleanup_in_background(self) -> bool:
            """Whether the backend's default background cleanup is enabled."""
            return self._is_cleanup_in_background

        def in_full_snapshot(self) -> bool:
            """Whether expired entries are left out of full snapshots."""
            return StateTtlConfig.CleanupStrategies.Strategies.FULL_STATE_SCAN_SNAPSHOT in self._strategies

        def get_incremental_cleanup_strategy(
            self,
        ) -> StateTtlConfig.CleanupStrategies.IncrementalCleanupStrategy | None:
            """The incremental cleanup configured, or the default one when cleanup in background is on."""
            s = self._strategies.get(StateTtlConfig.CleanupStrategies.Strategies.INCREMENTAL_CLEANUP)
            if isinstance(s, StateTtlConfig.CleanupStrategies.IncrementalCleanupStrategy):
                return s
            if self._is_cleanup_in_background:
                return StateTtlConfig.CleanupStrategies.IncrementalCleanupStrategy(5, False)
            return None

        def get_rocksdb_compact_filter_cleanup_strategy(
            self,
        ) -> StateTtlConfig.CleanupStrategies.RocksdbCompactFilterCleanupStrategy | None:
            """The compaction-filter cleanup configured, or the default one when cleanup in background is on."""
            s = self._strategies.get(StateTtlConfig.CleanupStrategies.Strategies.ROCKSDB_COMPACTION_FILTER)
            if isinstance(s, StateTtlConfig.CleanupStrategies.RocksdbCompactFilterCleanupStrategy):
                return s
            if self._is_cleanup_in_background:
                return StateTtlConfig.CleanupStrategies.RocksdbCompactFilterCleanupStrategy(1000)
            return None

        def __eq__(self, other: object) -> bool:
            return (
                isinstance(other, StateTtlConfig.CleanupStrategies)
                and other._strategies == self._strategies
                and other._is_cleanup_in_background == self._is_cleanup_in_background
            )

        def __hash__(self) -> int:
            return hash((frozenset(self._strategies.items()), self._is_cleanup_in_background))

    def __init__(
        self,
        update_type: StateTtlConfig.UpdateType,
        state_visibility: StateTtlConfig.StateVisibility,
        ttl_time_characteristic: StateTtlConfig.TtlTimeCharacteristic,
        ttl: Time,
        cleanup_strategies: StateTtlConfig.CleanupStrategies,
    ) -> None:
        """Prefer ``StateTtlConfig.new_builder(ttl)...build()``.

        Raises:
            ValueError: ``ttl`` is not positive.
            TypeError: an argument has the wrong type.
        """
        if not isinstance(update_type, StateTtlConfig.UpdateType):
            raise TypeError(f"update_type must be a StateTtlConfig.UpdateType, got {update_type!r}")
        if not isinstance(state_visibility, StateTtlConfig.StateVisibility):
            raise TypeError(f"state_visibility must be a StateTtlConfig.StateVisibility, got {state_visibility!r}")
        if not isinstance(ttl_time_characteristic, StateTtlConfig.TtlTimeCharacteristic):
            raise TypeError(
                "ttl_time_characteristic must be a StateTtlConfig.TtlTimeCharacteristic, "
                f"got {ttl_time_characteristic!r}"
            )
        self._update_type = update_type
        self._state_visibility = state_visibility
        self._ttl_time_characteristic = ttl_time_characteristic
        self._ttl = _positive_ttl(ttl)
        self._cleanup_strategies = cleanup_strategies

    @staticmethod
    def new_builder(ttl: Time) -> StateTtlConfig.Builder:
        """A builder with Flink's defaults: OnCreateAndWrite, NeverReturnExpired, processing time.

        Args:
            ttl: the time to live, positive (a ``Time``; a ``Duration`` or int milliseconds also work).

        Raises:
            ValueError: ``ttl`` is not positive.
        """
        return StateTtlConfig.Builder(ttl)

    def get_update_type(self) -> StateTtlConfig.UpdateType:
        """When the last-access timestamp is set."""
        return self._update_type

    def get_state_visibility(self) -> StateTtlConfig.StateVisibility:
        """Whether expired values may be returned."""
        return self._state_visibility

    def get_ttl(self) -> Time:
        """The time to live."""
        return self._ttl

    def get_ttl_time_characteristic(self) -> StateTtlConfig.TtlTimeCharacteristic:
        """The time scale (processing time)."""
        return self._ttl_time_characteristic

    def is_enabled(self) -> bool:
        """False when the update type is ``Disabled``: then state never expires."""
        return self._update_type is not StateTtlConfig.UpdateType.Disabled

    def get_cleanup_strategies(self) -> StateTtlConfig.CleanupStrategies:
        """The configured background cleanup."""
        return self._cleanup_strategies

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StateTtlConfig) and (
            other._update_type,
            other._state_visibility,
            other._ttl_time_characteristic,
            other._ttl,
            other._cleanup_strategies,
        ) == (
            self._update_type,
            self._state_visibility,
            self._ttl_time_characteristic,
            self._ttl,
            self._cleanup_strategies,
        )

    def __hash__(self) -> int:
        return hash((self._update_type, self._state_visibility, self._ttl))

    def __repr__(self) -> str:
        return (
            f"StateTtlConfig<update_type={self._update_type.name}, state_visibility={self._state_visibility.name}, "
            f"ttl_time_characteristic={self._ttl_time_characteristic.name}, ttl={self._ttl!r}>"
        )

    class Builder:
        """Builder of StateTtlConfig; every setter returns the builder."""

        def __init__(self, ttl: Time) -> None:
            """Starts from Flink's defaults.

            Raises:
                ValueError: ``ttl`` is not positive.
            """
            self._ttl = _positive_ttl(ttl)
            self._update_type = StateTtlConfig.UpdateType.OnCreateAndWrite
            self._state_visibility = StateTtlConfig.StateVisibility.NeverReturnExpired
            self._ttl_time_characteristic = StateTtlConfig.TtlTimeCharacteristic.ProcessingTime
            self._is_cleanup_in_background = True
            self._strategies: dict[
                StateTtlConfig.CleanupStrategies.Strategies, StateTtlConfig.CleanupStrategies.CleanupStrategy
            ] = {}

        def set_update_type(self, update_type: StateTtlConfig.UpdateType) -> StateTtlConfig.Builder:
            """Sets when the last-access timestamp is set (``Disabled`` turns TTL off)."""
            if not isinstance(update_type, StateTtlConfig.UpdateType):
                raise TypeError(f"expected a StateTtlConfig.UpdateType, got {update_type!r}")
            self._update_type = update_type
            return self

        def update_ttl_on_create_and_write(self) -> StateTtlConfig.Builder:
            """Same as ``set_update_type(UpdateType.OnCreateAndWrite)``."""
            return self.set_update_type(StateTtlConfig.UpdateType.OnCreateAndWrite)

        def update_ttl_on_read_and_write(self) -> StateTtlConfig.Builder:
            """Same as ``set_update_type(UpdateType.OnReadAndWrite)``."""
            return self.set_update_type(StateTtlConfig.UpdateType.OnReadAndWrite)

        def set_state_visibility(self, state_visibility: StateTtlConfig.StateVisibility) -> StateTtlConfig.Builder:
            """Sets whether expired values not cleaned up yet may be returned."""
            if not isinstance(state_visibility, StateTtlConfig.StateVisibility):
                raise TypeError(f"expected a StateTtlConfig.StateVisibility, got {state_visibility!r}")
            self._state_visibility = state_visibility
            return self

        def return_expired_if_not_cleaned_up(self) -> StateTtlConfig.Builder:
            """Same as ``set_state_visibility(StateVisibility.ReturnExpiredIfNotCleanedUp)``."""
            return self.set_state_visibility(StateTtlConfig.StateVisibility.ReturnExpiredIfNotCleanedUp)

        def never_return_expired(self) -> StateTtlConfig.Builder:
            """Same as ``set_state_visibility(StateVisibility.NeverReturnExpired)``."""
            return self.set_state_visibility(StateTtlConfig.StateVisibility.NeverReturnExpired)

        def set_ttl_time_characteristic(
            self, ttl_time_characteristic: StateTtlConfig.TtlTimeCharacteristic
        ) -> StateTtlConfig.Builder:
            """Sets the time scale (only processing time exists)."""
            if not isinstance(ttl_time_characteristic, StateTtlConfig.TtlTimeCharacteristic):
                raise TypeError(f"expected a StateTtlConfig.TtlTimeCharacteristic, got {ttl_time_characteristic!r}")
            self._ttl_time_characteristic = ttl_time_characteristic
            return self

        def use_processing_time(self) -> StateTtlConfig.Builder:
            """Same as ``set_ttl_time_characteristic(TtlTimeCharacteristic.ProcessingTime)``."""
            return self.set_ttl_time_characteristic(StateTtlConfig.TtlTimeCharacteristic.ProcessingTime)

        def cleanup_full_snapshot(self) -> StateTtlConfig.Builder:
            """Leave expired entries out of full snapshots."""
            s = StateTtlConfig.CleanupStrategies
            self._strategies[s.Strategies.FULL_STATE_SCAN_SNAPSHOT] = s.EMPTY_STRATEGY
            return self

        def cleanup_incrementally(
            self, cleanup_size: int, run_cleanup_for_every_record: bool
        ) -> StateTtlConfig.Builder:
            """Check ``cleanup_size`` entries for expiry upon every state access (and per record if asked).

            Raises:
                ValueError: ``cleanup_size`` is not positive.
            """
            s = StateTtlConfig.CleanupStrategies
            self._strategies[s.Strategies.INCREMENTAL_CLEANUP] = s.IncrementalCleanupStrategy(
                cleanup_size, run_cleanup_for_every_record
            )
            return self

        def cleanup_in_rocksdb_compact_filter(
            self, query_time_after_num_entries: int, periodic_compaction_time: Duration | None = None
        ) -> StateTtlConfig.Builder:
            """Drop expired entries while RocksDB compacts.

            Args:
                query_time_after_num_entries: entries the filter processes between two reads of the clock.
                periodic_compaction_time: files older than this are compacted periodically (default 30 days).
            """
            s = StateTtlConfig.CleanupStrategies
            self._strategies[s.Strategies.ROCKSDB_COMPACTION_FILTER] = s.RocksdbCompactFilterCleanupStrategy(
                query_time_after_num_entries, periodic_compaction_time
            )
            return self

        def disable_cleanup_in_background(self) -> StateTtlConfig.Builder:
            """Turn off the default background cleanup (explicitly configured strategies stay)."""
            self._is_cleanup_in_background = False
            return self

        def set_ttl(self, ttl: Time) -> StateTtlConfig.Builder:
            """Sets the time to live.

            Raises:
                ValueError: ``ttl`` is not positive.
            """
            self._ttl = _positive_ttl(ttl)
            return self

        def build(self) -> StateTtlConfig:
            """The configuration."""
            return StateTtlConfig(
                self._update_type,
                self._state_visibility,
                self._ttl_time_characteristic,
                self._ttl,
                StateTtlConfig.CleanupStrategies(self._strategies, self._is_cleanup_in_background),
            )


StateTtlConfig.CleanupStrategies.EMPTY_STRATEGY = StateTtlConfig.CleanupStrategies.EmptyCleanupStrategy()


def _positive_ttl(ttl: Any) -> Time:
    try:
        ms = to_millis(ttl)
    except TypeError:
        raise TypeError(
            f"a state TTL must be a Time (e.g. Time.seconds(10)), got {type(ttl).__name__}: {ttl!r}"
        ) from None
    if ms <= 0:
        raise ValueError(f"a state TTL must be positive, got {ms} ms ({ttl!r})")
    return Time(ms)


# ---------------------------------------------------------------------------------------------------------------
# Descriptors
# ---------------------------------------------------------------------------------------------------------------


class StateDescriptor:
    """Names a keyed state and its kind; optional TTL.

    Attributes:
        name: the state's name, unique per operator.
        type_info: the (informational) type of the stored values.
    """

    def __init__(self, name: str, type_info: Any = None) -> None:
        """Creates a descriptor.

        Raises:
            ValueError: ``name`` is empty.
        """
        if not name or not isinstance(name, str):
            raise ValueError(f"a state descriptor needs a non-empty name (a str), got {name!r}")
        self.name = name
        self.type_info = type_info
        self._ttl_config: StateTtlConfig | None = None

    def get_name(self) -> str:
        """The state's name."""
        return self.name

    def enable_time_to_live(self, ttl_config: StateTtlConfig) -> None:
        """Makes entries of this state expire as ``ttl_config`` says.

        Raises:
            TypeError: ``ttl_config`` is not a StateTtlConfig.
        """
        if not isinstance(ttl_config, StateTtlConfig):
            raise TypeError(
                "enable_time_to_live expects a StateTtlConfig (StateTtlConfig.new_builder(ttl)...build()), "
                f"got {type(ttl_config).__name__}"
            )
        self._ttl_config = ttl_config

    def get_ttl_config(self) -> StateTtlConfig | None:
        """The TTL configuration, or None when TTL is not enabled."""
        ttl = getattr(self, "_ttl_config", None)
        return ttl if ttl is not None and ttl.is_enabled() else None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class ValueStateDescriptor(StateDescriptor):
    """Describes a ValueState (``get_state``)."""

    def __init__(self, name: str, value_type_info: Any = None) -> None:
        """Creates a descriptor.

        Args:
            name: the state's name.
            value_type_info: the type of the value (informational).
        """
        super().__init__(name, value_type_info)


class ListStateDescriptor(StateDescriptor):
    """Describes a ListState (``get_list_state``)."""

    def __init__(self, name: str, elem_type_info: Any = None) -> None:
        """Creates a descriptor.

        Args:
            name: the state's name.
            elem_type_info: the type of the elements (informational).
        """
        super().__init__(name, elem_type_info)
        self.elem_type_info = elem_type_info


class MapStateDescriptor(StateDescriptor):
    """Describes a MapState (``get_map_state``)."""

    def __init__(self, name: str, key_type_info: Any = None, value_type_info: Any = None) -> None:
        """Creates a descriptor.

        Args:
            name: the state's name.
            key_type_info: the type of the map keys (informational).
            value_type_info: the type of the map values (informational).
        """
        super().__init__(name, (key_type_info, value_type_info))
        self.key_type_info = key_type_info
        self.value_type_info = value_type_info


class ReducingStateDescriptor(StateDescriptor):
    """Describes a ReducingState (``get_reducing_state``)."""

    def __init__(self, name: str, reduce_function: Any, type_info: Any = None) -> None:
        """Creates a descriptor.

        Args:
            name: the state's name.
            reduce_function: a ReduceFunction or a callable ``(a, b) -> c``.
            type_info: the type of the values (informational).

        Raises:
            TypeError: ``reduce_function`` is neither a ReduceFunction nor callable.
        """
        super().__init__(name, type_info)
        callable_of(reduce_function, ReduceFunction, "reduce")  # validates now, not on the first record
        self._reduce_function = reduce_function

    def get_reduce_function(self) -> Any:
        """The reduce function as given."""
        return self._reduce_function

    def reducer(self) -> Callable[[Any, Any], Any]:
        """The callable that combines two values."""
        return callable_of(self._reduce_function, ReduceFunction, "reduce")


_AGG_METHODS = ("create_accumulator", "add", "get_result")


class AggregatingStateDescriptor(StateDescriptor):
    """Describes an AggregatingState (``get_aggregating_state``)."""

    def __init__(self, name: str, agg_function: Any, state_type_info: Any = None) -> None:
        """Creates a descriptor.

        Args:
            name: the state's name.
            agg_function: an AggregateFunction: any object with ``create_accumulator()``,
                ``add(value, accumulator) -> accumulator``, ``get_result(accumulator)`` and, to merge windows,
                ``merge(acc_a, acc_b) -> accumulator``.
            state_type_info: the type of the accumulator (informational).

        Raises:
            TypeError: ``agg_function`` lacks one of the methods.
        """
        super().__init__(name, state_type_info)
        missing = [m for m in _AGG_METHODS if not callable(getattr(agg_function, m, None))]
        if missing:
            raise TypeError(
                "AggregatingStateDescriptor needs an AggregateFunction with create_accumulator(), "
                f"add(value, accumulator) and get_result(accumulator); {type(agg_function).__name__} "
                f"has no {', '.join(missing)}"
            )
        self._agg_function = agg_function

    def get_agg_function(self) -> Any:
        """The AggregateFunction."""
        return self._agg_function
