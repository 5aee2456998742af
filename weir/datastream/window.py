"""Windows, window assigners and triggers, as in PyFlink's ``pyflink.datastream.window``.

Pure API: nothing here touches the network or the runtime. The WindowOperator drives these objects:

* a :class:`WindowAssigner` maps each element to its windows (:meth:`WindowAssigner.assign_windows`);
  a :class:`MergingWindowAssigner` (sessions) also merges windows that intersect;
* a :class:`Trigger` decides, per (key, window), when the window is evaluated (FIRE) and/or cleared (PURGE).
  It sees the runtime through :class:`Trigger.TriggerContext`, which the runtime implements.

All timestamps are int milliseconds. The semantics are Flink's (see ``/work/shared/SEMANTICS.md``).

Count windows: ``CountTumblingWindowAssigner`` / ``CountSlidingWindowAssigner`` follow Java Flink's
``countWindow(size[, slide])``: every element goes to the :class:`GlobalWindow`; tumbling uses
``PurgingTrigger.of(CountTrigger.of(size))``; sliding uses ``CountTrigger.of(slide)`` together with an evictor that
keeps only the last ``size`` elements (see :attr:`CountSlidingWindowAssigner.count_evictor_size`; the
WindowOperator must apply it).
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from weir.common.time import Duration, Time, to_millis
from weir.datastream.functions import ReduceFunction

__all__ = [
    "MAX_TIMESTAMP",
    "MIN_TIMESTAMP",
    "ContinuousEventTimeTrigger",
    "ContinuousProcessingTimeTrigger",
    "CountSlidingWindowAssigner",
    "CountTrigger",
    "CountTumblingWindowAssigner",
    "CountWindow",
    "DynamicEventTimeSessionWindows",
    "DynamicProcessingTimeSessionWindows",
    "EventTimeSessionWindows",
    "EventTimeTrigger",
    "GlobalWindow",
    "GlobalWindows",
    "MergingWindowAssigner",
    "NeverTrigger",
    "ProcessingTimeSessionWindows",
    "ProcessingTimeTrigger",
    "PurgingTrigger",
    "SessionWindowTimeGapExtractor",
    "SlidingEventTimeWindows",
    "SlidingProcessingTimeWindows",
    "TimeWindow",
    "Trigger",
    "TriggerResult",
    "TumblingEventTimeWindows",
    "TumblingProcessingTimeWindows",
    "Window",
    "WindowAssigner",
]

MIN_TIMESTAMP: int = -(2**63)
"""Java's ``Long.MIN_VALUE``; Flink uses it as the 'record has no timestamp' marker."""

MAX_TIMESTAMP: int = 2**63 - 1
"""Java's ``Long.MAX_VALUE``: the max timestamp of the global window and of count windows."""

TimeLike = Time | Duration | int


# =====================================================================================================================
# Windows
# =====================================================================================================================


class Window(ABC):
    """A grouping of elements into a finite bucket (``pyflink.datastream.window.Window``)."""

    __slots__ = ()

    @abstractmethod
    def max_timestamp(self) -> int:
        """Returns the largest timestamp that still belongs to this window."""


W = TypeVar("W", bound=Window)
T = TypeVar("T")


@dataclass(frozen=True, order=True, slots=True)
class TimeWindow(Window):
    """The time interval ``[start, end)``: ``start`` inclusive, ``end`` exclusive.

    Frozen, hashable, ordered by ``(start, end)`` and picklable.

    Attributes:
        start: The first timestamp in the window.
        end: The first timestamp after the window.
    """

    start: int
    end: int

    def max_timestamp(self) -> int:
        """Returns ``end - 1``, the largest timestamp in the window."""
        return self.end - 1

    def intersects(self, other: TimeWindow) -> bool:
        """Whether the windows intersect, bounds included: ``[0, 5)`` and ``[5, 10)`` intersect (Flink)."""
        return self.start <= other.end and other.start <= self.end

    def cover(self, other: TimeWindow) -> TimeWindow:
        """Returns the smallest window that contains both windows."""
        return TimeWindow(min(self.start, other.start), max(self.end, other.end))

    @staticmethod
    def get_window_start_with_offset(timestamp: int, offset: int, window_size: int) -> int:
        """Returns the start of the window of size ``window_size`` (shifted by ``offset``) containing ``timestamp``.

        ``timestamp - ((timestamp - offset) % window_size)`` with a non-negative modulo, so negative timestamps
        and offsets land in the right window.
        """
        return timestamp - ((timestamp - offset) % window_size)

    @staticmethod
    def merge_windows(
        windows: Iterable[TimeWindow],
        callback: Callable[[list[TimeWindow], TimeWindow], None] | MergingWindowAssigner.MergeCallback,
    ) -> None:
        """Merges intersecting windows (Flink's ``TimeWindow.mergeWindows``).

        The windows are sorted by start; each window that intersects (bounds included) the cover of the current
        group joins it. For every group of two or more distinct windows, ``callback(to_be_merged, merge_result)``
        is called with the group (sorted by start) and its cover.

        Args:
            windows: The windows to merge (duplicates count once).
            callback: A callable ``(to_be_merged, merge_result)`` or a :class:`MergingWindowAssigner.MergeCallback`.
        """
        merge = _merge_callback(callback)
        current: TimeWindow | None = None
        group: list[TimeWindow] = []
        for candidate in sorted(set(windows)):
            if current is not None and current.intersects(candidate):
                current = current.cover(candidate)
                group.append(candidate)
                continue
            if current is not None and len(group) > 1:
                merge(group, current)
            current, group = candidate, [candidate]
        if current is not None and len(group) > 1:
            merge(group, current)

    def __repr__(self) -> str:
        return f"TimeWindow(start={self.start}, end={self.end})"


def _global_window() -> GlobalWindow:
    return GlobalWindow.get()


class GlobalWindow(Window):
    """The single window that holds every element (``GlobalWindow.get()``); max timestamp ``Long.MAX_VALUE``."""

    __slots__ = ()
    _instance: ClassVar[GlobalWindow | None] = None

    def __new__(cls) -> GlobalWindow:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    @staticmethod
    def get() -> GlobalWindow:
        """Returns the singleton global window."""
        return GlobalWindow()

    def max_timestamp(self) -> int:
        """Returns ``Long.MAX_VALUE``."""
        return MAX_TIMESTAMP

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GlobalWindow)

    def __hash__(self) -> int:
        return 0

    def __reduce__(self) -> tuple[Callable[[], GlobalWindow], tuple[()]]:
        return (_global_window, ())

    def __repr__(self) -> str:
        return "GlobalWindow"


@dataclass(frozen=True, order=True, slots=True)
class CountWindow(Window):
    """A window identified by a number (``pyflink.datastream.window.CountWindow``); max timestamp ``Long.MAX``.

    Attributes:
        id: The window's id.
    """

    id: int

    def max_timestamp(self) -> int:
        """Returns ``Long.MAX_VALUE``."""
        return MAX_TIMESTAMP


# =====================================================================================================================
# Triggers
# =====================================================================================================================


class TriggerResult(Enum):
    """What happens to a window after a trigger callback: evaluate it (fire) and/or clear its contents (purge)."""

    CONTINUE = (False, False)
    FIRE_AND_PURGE = (True, True)
    FIRE = (True, False)
    PURGE = (False, True)

    def is_fire(self) -> bool:
        """Whether the window function is evaluated on the window's contents."""
        fire: bool = self.value[0]
        return fire

    def is_purge(self) -> bool:
        """Whether the window's contents are cleared (the window itself, its timers and metadata, remain)."""
        purge: bool = self.value[1]
        return purge


class Trigger(ABC, Generic[T, W]):
    """Decides when a window (of one key) is evaluated and when its contents are purged.

    The runtime calls the callbacks with a :class:`Trigger.TriggerContext` scoped to the current key and window.
    A trigger keeps any state it needs in partitioned state (``ctx.get_partitioned_state``), never in its own
    attributes: one trigger object serves every key and window of a subtask.
    """

    class TriggerContext(Protocol):
        """What a trigger may do; implemented by the runtime, scoped to the current key and window."""

        def get_current_processing_time(self) -> int:
            """Returns the current processing time (ms) of the subtask."""
            ...

        def get_current_watermark(self) -> int:
            """Returns the operator's current event-time watermark (ms)."""
            ...

        def register_processing_time_timer(self, time: int) -> None:
            """Calls ``on_processing_time`` for this key and window when processing time reaches ``time``."""
            ...

        def register_event_time_timer(self, time: int) -> None:
            """Calls ``on_event_time`` for this key and window when the watermark reaches ``time``."""
            ...

        def delete_processing_time_timer(self, time: int) -> None:
            """Deletes the processing-time timer at ``time`` of this key and window, if any."""
            ...

        def delete_event_time_timer(self, time: int) -> None:
            """Deletes the event-time timer at ``time`` of this key and window, if any."""
            ...

        def get_partitioned_state(self, state_descriptor: Any) -> Any:
            """Returns the state handle for ``state_descriptor`` scoped to the current key and window.

            For a ``ReducingStateDescriptor`` the handle is a ReducingState (``get()``, ``add(v)``, ``clear()``).
            """
            ...

    class OnMergeContext(TriggerContext, Protocol):
        """The context of :meth:`Trigger.on_merge`: its window is the merge result."""

        def merge_partitioned_state(self, state_descriptor: Any) -> None:
            """Merges the state of the merged windows into the state of the result window."""
            ...

    @abstractmethod
    def on_element(self, element: T, timestamp: int, window: W, ctx: Trigger.TriggerContext) -> TriggerResult:
        """Called for every element added to a window.

        Args:
            element: The element.
            timestamp: The element's timestamp.
            window: The window the element was added to.
            ctx: The trigger context.
        """

    @abstractmethod
    def on_processing_time(self, time: int, window: W, ctx: Trigger.TriggerContext) -> TriggerResult:
        """Called when a processing-time timer registered by this trigger fires."""

    @abstractmethod
    def on_event_time(self, time: int, window: W, ctx: Trigger.TriggerContext) -> TriggerResult:
        """Called when an event-time timer registered by this trigger fires."""

    def can_merge(self) -> bool:
        """Whether this trigger supports merging windows (required by session windows). Default False."""
        return False

    def on_merge(self, window: W, ctx: Trigger.OnMergeContext) -> None:
        """Called when windows merge into ``window``; merges the trigger's state and re-registers timers.

        Raises:
            NotImplementedError: If the trigger does not support merging (the default).
        """
        raise NotImplementedError(f"{type(self).__name__} does not support merging windows")

    @abstractmethod
    def clear(self, window: W, ctx: Trigger.TriggerContext) -> None:
        """Called when the window is removed: deletes the trigger's timers and state for it."""


class EventTimeTrigger(Trigger[object, TimeWindow]):
    """Fires once the watermark passes the end of the window (Flink's ``EventTimeTrigger``).

    An element for a window whose ``max_timestamp() <= watermark`` (late but within allowed lateness) fires the
    window at once.
    """

    @staticmethod
    def create() -> EventTimeTrigger:
        """Returns an event-time trigger."""
        return EventTimeTrigger()

    def on_element(
        self, element: object, timestamp: int, window: TimeWindow, ctx: Trigger.TriggerContext
    ) -> TriggerResult:
        if window.max_timestamp() <= ctx.get_current_watermark():
            return TriggerResult.FIRE
        ctx.register_event_time_timer(window.max_timestamp())
        return TriggerResult.CONTINUE

    def on_processing_time(self, time: int, window: TimeWindow, ctx: Trigger.TriggerContext) -> TriggerResult:
        return TriggerResult.CONTINUE

    def on_event_time(self, time: int, window: TimeWindow, ctx: Trigger.TriggerContext) -> TriggerResult:
        return TriggerResult.FIRE if time == window.max_timestamp() else TriggerResult.CONTINUE

    def can_merge(self) -> bool:
        return True

    def on_merge(self, window: TimeWindow, ctx: Trigger.OnMergeContext) -> None:
        # Only register a timer if the watermark has not passed the merged window's end yet: a timer in the past
        # would fire the window again, and the operator fires late windows through on_element anyway.
        if window.max_timestamp() > ctx.get_current_watermark():
            ctx.register_event_time_timer(window.max_timestamp())

    def clear(self, window: TimeWindow, ctx: Trigger.TriggerContext) -> None:
        ctx.delete_event_time_timer(window.max_timestamp())

    def __repr__(self) -> str:
        return "EventTimeTrigger()"


class ProcessingTimeTrigger(Trigger[object, TimeWindow]):
    """Fires once processing time passes the end of the window (Flink's ``ProcessingTimeTrigger``).

    As in Flink, ``on_element`` only registers a processing-time timer at ``window.max_timestamp()`` (it never
    fires at once) and every processing-time timer fires the window.
    """

    @staticmethod
    def create() -> ProcessingTimeTrigger:
        """Returns a processing-time trigger."""
        return ProcessingTimeTrigger()

    def on_element(
        self, element: object, timestamp: int, window: TimeWindow, ctx: Trigger.TriggerContext
    ) -> TriggerResult:
        ctx.register_processing_time_timer(window.max_timestamp())
        return TriggerResult.CONTINUE

    def on_processing_time(self, time: int, window: TimeWindow, ctx: Trigger.TriggerContext) -> TriggerResult:
        return TriggerResult.FIRE

    def on_event_time(self, time: int, window: TimeWindow, ctx: Trigger.TriggerContext) -> TriggerResult:
        return TriggerResult.CONTINUE

    def can_merge(self) -> bool:
        return True

    def on_merge(self, window: TimeWindow, ctx: Trigger.OnMergeContext) -> None:
        if window.max_timestamp() > ctx.get_current_processing_time():
            ctx.register_processing_time_timer(window.max_timestamp())

    def clear(self, window: TimeWindow, ctx: Trigger.TriggerContext) -> None:
        ctx.delete_processing_time_timer(window.max_timestamp())

    def __repr__(self) -> str:
        return "ProcessingTimeTrigger()"


class _Sum(ReduceFunction):
    """Sum of two counts; usable as a ReduceFunction or as a plain callable."""

    def reduce(self, value1: Any, value2: Any) -> Any:
        return value1 + value2

    def __call__(self, value1: Any, value2: Any) -> Any:
        return self.reduce(value1, value2)


class _Min(ReduceFunction):
    """Minimum of two timestamps; usable as a ReduceFunction or as a plain callable."""

    def reduce(self, value1: Any, value2: Any) -> Any:
        return min(value1, value2)

    def __call__(self, value1: Any, value2: Any) -> Any:
        return self.reduce(value1, value2)


def _reducing_state_descriptor(name: str, reduce_function: ReduceFunction) -> Any:
    """Builds ``ReducingStateDescriptor(name, reduce_function, Types.LONG())`` from ``weir.datastream.state``.

    Imported when first needed, so this module does not depend on the state module at import time.
    """
    state_module = importlib.import_module("weir.datastream.state")
    descriptor_class = getattr(state_module, "ReducingStateDescriptor", None)
    if descriptor_class is None:
        raise RuntimeError("weir.datastream.state has no ReducingStateDescriptor; triggers with state need it")
    from weir.common.typeinfo import Types

    return descriptor_class(name, reduce_function, Types.LONG())


class _StatefulTrigger(Trigger[T, W]):
    """A trigger with one reducing state, whose descriptor is built on first use (and kept)."""

    _state_name: ClassVar[str]

    def __init__(self) -> None:
        self._state_desc: Any = None

    def _make_reduce_function(self) -> ReduceFunction:
        raise NotImplementedError

    @property
    def state_descriptor(self) -> Any:
        """The ReducingStateDescriptor this trigger keeps its per-window state in."""
        if self._state_desc is None:
            self._state_desc = _reducing_state_descriptor(self._state_name, self._make_reduce_function())
        return self._state_desc


class CountTrigger(_StatefulTrigger[object, W]):
    """Fires once the window holds ``count`` elements, then counts again from zero (Flink's ``CountTrigger``).

    The count is a ReducingState (sum) named ``"count"``, per key and window.
    """

    _state_name = "count"

    def __init__(self, count: int) -> None:
        super().__init__()
        if not isinstance(count, int) or isinstance(count, bool):
            raise TypeError(f"CountTrigger needs an int count, got {type(count).__name__}")
        self._count = count

    @staticmethod
    def of(count: int) -> CountTrigger[Any]:
        """Returns a trigger that fires every ``count`` elements."""
        return CountTrigger(count)

    def get_count(self) -> int:
        """Returns the number of elements that fires the window."""
        return self._count

    def _make_reduce_function(self) -> ReduceFunction:
        return _Sum()

    def on_element(self, element: object, timestamp: int, window: W, ctx: Trigger.TriggerContext) -> TriggerResult:
        count = ctx.get_partitioned_state(self.state_descriptor)
        count.add(1)
        if count.get() >= self._count:
            count.clear()
            return TriggerResult.FIRE
        return TriggerResult.CONTINUE

    def on_processing_time(self, time: int, window: W, ctx: Trigger.TriggerContext) -> TriggerResult:
        return TriggerResult.CONTINUE

    def on_event_time(self, time: int, window: W, ctx: Trigger.TriggerContext) -> TriggerResult:
        return TriggerResult.CONTINUE

    def can_merge(self) -> bool:
        return True

    def on_merge(self, window: W, ctx: Trigger.OnMergeContext) -> None:
        ctx.merge_partitioned_state(self.state_descriptor)

    def clear(self, window: W, ctx: Trigger.TriggerContext) -> None:
        ctx.get_partitioned_state(self.state_descriptor).clear()

    def __repr__(self) -> str:
        return f"CountTrigger({self._count})"


class PurgingTrigger(Trigger[T, W]):
    """Turns every FIRE of a nested trigger into FIRE_AND_PURGE (Flink's ``PurgingTrigger``)."""

    def __init__(self, nested_trigger: Trigger[T, W]) -> None:
        if not isinstance(nested_trigger, Trigger):
            raise TypeError(f"PurgingTrigger needs a Trigger, got {type(nested_trigger).__name__}")
        self._nested = nested_trigger

    @staticmethod
    def of(nested_trigger: Trigger[Any, Any]) -> PurgingTrigger[Any, Any]:
        """Returns a purging version of ``nested_trigger``."""
        return PurgingTrigger(nested_trigger)

    def get_nested_trigger(self) -> Trigger[T, W]:
        """Returns the wrapped trigger."""
        return self._nested

    @staticmethod
    def _purging(result: TriggerResult) -> TriggerResult:
        return TriggerResult.FIRE_AND_PURGE if result.is_fire() else result

    def on_element(self, element: T, timestamp: int, window: W, ctx: Trigger.TriggerContext) -> TriggerResult:
        return self._purging(self._nested.on_element(element, timestamp, window, ctx))

    def on_processing_time(self, time: int, window: W, ctx: Trigger.TriggerContext) -> TriggerResult:
        return self._purging(self._nested.on_processing_time(time, window, ctx))

    def on_event_time(self, time: int, window: W, ctx: Trigger.TriggerContext) -> TriggerResult:
        return self._purging(self._nested.on_event_time(time, window, ctx))

    def can_merge(self) -> bool:
        return self._nested.can_merge()

    def on_merge(self, window: W, ctx: Trigger.OnMergeContext) -> None:
        self._nested.on_merge(window, ctx)

    def clear(self, window: W, ctx: Trigger.TriggerContext) -> None:
        self._nested.clear(window, ctx)

    def __repr__(self) -> str:
        return f"PurgingTrigger({self._nested!r})"


def _java_remainder(a: int, b: int) -> int:
    """``a % b`` with Java's sign rule (the result has the sign of ``a``), for b > 0."""
    r = abs(a) % b
    return -r if a < 0 else r


def _check_interval(name: str, interval: TimeLike) -> int:
    ms = to_millis(interval)
    if ms <= 0:
        raise ValueError(f"{name} needs a positive interval, got {ms} ms")
    return ms


class _ContinuousTrigger(_StatefulTrigger[object, W]):
    """What the event- and processing-time continuous triggers share: the interval and the next fire time,
    kept in a ReducingState (min) named ``"fire-time"``; ``_register`` sets a timer in the trigger's time domain."""

    _state_name = "fire-time"

    def __init__(self, interval_ms: int) -> None:
        super().__init__()
        self._interval = interval_ms

    def get_interval(self) -> int:
        """Returns the interval in milliseconds."""
        return self._interval

    def _make_reduce_function(self) -> ReduceFunction:
        return _Min()

    def _register(self, ctx: Trigger.TriggerContext, time: int) -> None:
        raise NotImplementedError

    def _register_next_fire_timestamp(self, time: int, window: W, ctx: Trigger.TriggerContext, state: Any) -> None:
        next_fire = min(time + self._interval, window.max_timestamp())
        state.add(next_fire)
        self._register(ctx, next_fire)


class ContinuousEventTimeTrigger(_ContinuousTrigger[W]):
    """Fires every ``interval`` of event time, and at the end of the window (Flink's ``ContinuousEventTimeTrigger``).

    The next fire time is kept in a ReducingState (min) named ``"fire-time"``, per key and window:

    * ``on_element``: if the watermark has passed ``window.max_timestamp()``, FIRE at once. Otherwise register an
      event-time timer at ``window.max_timestamp()`` and, if no fire time is pending, register one at
      ``min(ts - ts % interval + interval, window.max_timestamp())`` (``%`` with Java's sign rule, as in Flink).
    * ``on_event_time(time)``: FIRE if ``time == window.max_timestamp()``; FIRE if ``time`` is the pending fire
      time, and register the next one at ``min(time + interval, window.max_timestamp())``; else CONTINUE.
    * ``on_merge``: merge the fire times (min) and register a timer at the result.
    * ``clear``: delete the pending fire timer and clear the state.
    """

    @staticmethod
    def of(interval: TimeLike) -> ContinuousEventTimeTrigger[Any]:
        """Returns a trigger that fires every ``interval`` (Time, Duration or int ms > 0) of event time.

        Raises:
            ValueError: If the interval is not positive.
        """
        return ContinuousEventTimeTrigger(_check_interval("ContinuousEventTimeTrigger", interval))

    def _register(self, ctx: Trigger.TriggerContext, time: int) -> None:
        ctx.register_event_time_timer(time)

    def on_element(self, element: object, timestamp: int, window: W, ctx: Trigger.TriggerContext) -> TriggerResult:
        if window.max_timestamp() <= ctx.get_current_watermark():
            return TriggerResult.FIRE
        ctx.register_event_time_timer(window.max_timestamp())
        fire_time = ctx.get_partitioned_state(self.state_descriptor)
        if fire_time.get() is None:
            start = timestamp - _java_remainder(timestamp, self._interval)
            self._register_next_fire_timestamp(start, window, ctx, fire_time)
        return TriggerResult.CONTINUE

    def on_event_time(self, time: int, window: W, ctx: Trigger.TriggerContext) -> TriggerResult:
        if time == window.max_timestamp():
            return TriggerResult.FIRE
        fire_time = ctx.get_partitioned_state(self.state_descriptor)
        pending = fire_time.get()
        if pending is not None and pending == time:
            fire_time.clear()
            self._register_next_fire_timestamp(time, window, ctx, fire_time)
            return TriggerResult.FIRE
        return TriggerResult.CONTINUE

    def on_processing_time(self, time: int, window: W, ctx: Trigger.TriggerContext) -> TriggerResult:
        return TriggerResult.CONTINUE

    def can_merge(self) -> bool:
        return True

    def on_merge(self, window: W, ctx: Trigger.OnMergeContext) -> None:
        ctx.merge_partitioned_state(self.state_descriptor)
        next_fire = ctx.get_partitioned_state(self.state_descriptor).get()
        if next_fire is not None:
            ctx.register_event_time_timer(next_fire)

    def clear(self, window: W, ctx: Trigger.TriggerContext) -> None:
        fire_time = ctx.get_partitioned_state(self.state_descriptor)
        pending = fire_time.get()
        if pending is not None:
            ctx.delete_event_time_timer(pending)
            fire_time.clear()

    def __repr__(self) -> str:
        return f"ContinuousEventTimeTrigger({self._interval})"


class ContinuousProcessingTimeTrigger(_ContinuousTrigger[W]):
    """Fires every ``interval`` of processing time (Flink's ``ContinuousProcessingTimeTrigger``).

    * ``on_element``: with ``now = ctx.get_current_processing_time()``, if no fire time is pending, register a
      processing-time timer at ``min(now - now % interval + interval, window.max_timestamp())``.
    * ``on_processing_time(time)``: if ``time`` is the pending fire time, FIRE and register the next one at
      ``min(time + interval, window.max_timestamp())``; else CONTINUE. The last fire is therefore at the window's
      max timestamp.
    * ``on_merge`` / ``clear``: as :class:`ContinuousEventTimeTrigger`, with processing-time timers.
    """

    @staticmethod
    def of(interval: TimeLike) -> ContinuousProcessingTimeTrigger[Any]:
        """Returns a trigger that fires every ``interval`` (Time, Duration or int ms > 0) of processing time.

        Raises:
            ValueError: If the interval is not positive.
        """
        return ContinuousProcessingTimeTrigger(_check_interval("ContinuousProcessingTimeTrigger", interval))

    def _register(self, ctx: Trigger.TriggerContext, time: int) -> None:
        ctx.register_processing_time_timer(time)

    def on_element(self, element: object, timestamp: int, window: W, ctx: Trigger.TriggerContext) -> TriggerResult:
        fire_time = ctx.get_partitioned_state(self.state_descriptor)
        now = ctx.get_current_processing_time()
        if fire_time.get() is None:
            start = now - _java_remainder(now, self._interval)
            self._register_next_fire_timestamp(start, window, ctx, fire_time)
        return TriggerResult.CONTINUE

    def on_event_time(self, time: int, window: W, ctx: Trigger.TriggerContext) -> TriggerResult:
        return TriggerResult.CONTINUE

    def on_processing_time(self, time: int, window: W, ctx: Trigger.TriggerContext) -> TriggerResult:
        fire_time = ctx.get_partitioned_state(self.state_descriptor)
        pending = fire_time.get()
        if pending is not None and pending == time:
            fire_time.clear()
            self._register_next_fire_timestamp(time, window, ctx, fire_time)
            return TriggerResult.FIRE
        return TriggerResult.CONTINUE

    def can_merge(self) -> bool:
        return True

    def on_merge(self, window: W, ctx: Trigger.OnMergeContext) -> None:
        ctx.merge_partitioned_state(self.state_descriptor)
        next_fire = ctx.get_partitioned_state(self.state_descriptor).get()
        if next_fire is not None:
            ctx.register_processing_time_timer(next_fire)

    def clear(self, window: W, ctx: Trigger.TriggerContext) -> None:
        fire_time = ctx.get_partitioned_state(self.state_descriptor)
        pending = fire_time.get()
        if pending is not None:
            ctx.delete_processing_time_timer(pending)
            fire_time.clear()

    def __repr__(self) -> str:
        return f"ContinuousProcessingTimeTrigger({self._interval})"


class NeverTrigger(Trigger[object, GlobalWindow]):
    """A trigger that never fires: the default of :class:`GlobalWindows` (Flink's ``GlobalWindows.NeverTrigger``).

    ``on_merge`` is a no-op, as in Flink, but ``can_merge()`` stays False.
    """

    def on_element(
        self, element: object, timestamp: int, window: GlobalWindow, ctx: Trigger.TriggerContext
    ) -> TriggerResult:
        return TriggerResult.CONTINUE

    def on_processing_time(self, time: int, window: GlobalWindow, ctx: Trigger.TriggerContext) -> TriggerResult:
        return TriggerResult.CONTINUE

    def on_event_time(self, time: int, window: GlobalWindow, ctx: Trigger.TriggerContext) -> TriggerResult:
        return TriggerResult.CONTINUE

    def on_merge(self, window: GlobalWindow, ctx: Trigger.OnMergeContext) -> None:
        return None

    def clear(self, window: GlobalWindow, ctx: Trigger.TriggerContext) -> None:
        return None

    def __repr__(self) -> str:
        return "NeverTrigger()"


# =====================================================================================================================
# Window assigners
# =====================================================================================================================


class WindowAssigner(ABC, Generic[T, W]):
    """Assigns each element to zero or more windows (``pyflink.datastream.window.WindowAssigner``)."""

    class WindowAssignerContext(Protocol):
        """What an assigner may ask the runtime; implemented by the runtime."""

        def get_current_processing_time(self) -> int:
            """Returns the current processing time (ms) of the subtask."""
            ...

    @abstractmethod
    def assign_windows(
        self, element: T, timestamp: int | None, context: WindowAssigner.WindowAssignerContext
    ) -> list[W]:
        """Returns the windows ``element`` belongs to.

        Args:
            element: The element.
            timestamp: The element's event timestamp, or None if it has none.
            context: Gives the current processing time.

        Raises:
            ValueError: For an event-time assigner, if the element has no timestamp.
        """

    @abstractmethod
    def get_default_trigger(self, env: Any = None) -> Trigger[T, W]:
        """Returns the trigger used when the user sets none."""

    @abstractmethod
    def is_event_time(self) -> bool:
        """Whether the assigner works in event time (element timestamps) rather than processing time."""


class MergingWindowAssigner(WindowAssigner[T, W]):
    """A window assigner whose windows can merge (sessions)."""

    class MergeCallback(ABC):
        """Receives each merge: Flink's ``MergingWindowAssigner.MergeCallback``. A plain callable works too."""

        @abstractmethod
        def merge(self, to_be_merged: list[Any], merge_result: Any) -> None:
            """Called once per group of two or more windows that merge into ``merge_result``."""

    @abstractmethod
    def merge_windows(self, windows: Iterable[W], callback: Callable[[list[W], W], None] | MergeCallback) -> None:
        """Merges the windows that intersect; calls ``callback(to_be_merged, merge_result)`` for each group.

        Args:
            windows: The windows of one key, in any order.
            callback: A callable ``(to_be_merged, merge_result)``, or a :class:`MergeCallback`.
        """


def _merge_callback(callback: Any) -> Callable[[list[Any], Any], None]:
    if isinstance(callback, MergingWindowAssigner.MergeCallback):
        return callback.merge
    if callable(callback):
        return callback  # type: ignore[no-any-return]
    raise TypeError(f"merge callback must be a callable or a MergeCallback, got {type(callback).__name__}")


def _require_timestamp(assigner: object, timestamp: int | None) -> int:
    if timestamp is None or timestamp == MIN_TIMESTAMP:
        raise ValueError(
            f"{type(assigner).__name__} is an event-time window assigner, but a record has no timestamp. Assign "
            "event timestamps first: ds.assign_timestamps_and_watermarks(WatermarkStrategy.for_bounded_out_of_"
            "orderness(...).with_timestamp_assigner(...)) (or a source whose WatermarkStrategy has a timestamp "
            "assigner), or use a processing-time window assigner."
        )
    return timestamp


def _check_size_and_offset(name: str, size: int, offset: int) -> None:
    if size <= 0:
        raise ValueError(f"{name} needs size > 0, got size={size} ms")
    if abs(offset) >= size:
        raise ValueError(f"{name} needs abs(offset) < size, got size={size} ms, offset={offset} ms")


def _check_sliding(name: str, size: int, slide: int, offset: int) -> None:
    if size <= 0:
        raise ValueError(f"{name} needs size > 0, got size={size} ms")
    if slide <= 0:
        raise ValueError(f"{name} needs slide > 0, got slide={slide} ms")
    if abs(offset) >= slide:
        raise ValueError(f"{name} needs abs(offset) < slide, got slide={slide} ms, offset={offset} ms")


def _sliding_windows(timestamp: int, size: int, slide: int, offset: int) -> list[TimeWindow]:
    windows = []
    start = TimeWindow.get_window_start_with_offset(timestamp, offset, slide)
    while start > timestamp - size:
        windows.append(TimeWindow(start, start + size))
        start -= slide
    return windows


def _offset_ms(offset: TimeLike | None) -> int:
    return 0 if offset is None else to_millis(offset)


class _TimeWindows(WindowAssigner[object, TimeWindow]):
    """What tumbling and sliding assigners share: size and offset, and the time an element is placed by --
    its timestamp (event time) or the subtask's clock (processing time)."""

    _event_time = True

    def __init__(self, size: int, offset: int = 0) -> None:
        self._size = size
        self._offset = offset

    @property
    def size(self) -> int:
        """The window size in milliseconds."""
        return self._size

    def get_size(self) -> int:
        """Returns the window size in milliseconds."""
        return self._size

    @property
    def offset(self) -> int:
        """The window offset in milliseconds."""
        return self._offset

    def get_offset(self) -> int:
        """Returns the window offset in milliseconds."""
        return self._offset

    def _time(self, timestamp: int | None, context: WindowAssigner.WindowAssignerContext) -> int:
        if self._event_time:
            return _require_timestamp(self, timestamp)
        return context.get_current_processing_time()

    def get_default_trigger(self, env: Any = None) -> Trigger[object, TimeWindow]:
        return EventTimeTrigger.create() if self._event_time else ProcessingTimeTrigger.create()

    def is_event_time(self) -> bool:
        return self._event_time


class _TumblingWindows(_TimeWindows):
    def __init__(self, size: int, offset: int = 0) -> None:
        _check_size_and_offset(type(self).__name__, size, offset)
        super().__init__(size, offset)

    def assign_windows(
        self, element: object, timestamp: int | None, context: WindowAssigner.WindowAssignerContext
    ) -> list[TimeWindow]:
        start = TimeWindow.get_window_start_with_offset(self._time(timestamp, context), self._offset, self._size)
        return [TimeWindow(start, start + self._size)]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._size})"


class TumblingEventTimeWindows(_TumblingWindows):
    """Fixed-size, non-overlapping event-time windows ``[start, start + size)``.

    ``start = ts - ((ts - offset) % size)``. Default trigger: :class:`EventTimeTrigger`.
    """

    @staticmethod
    def of(size: TimeLike, offset: TimeLike | None = None) -> TumblingEventTimeWindows:
        """Returns tumbling event-time windows of ``size``, shifted by ``offset``.

        Args:
            size: The window size (Time, Duration or int ms), > 0.
            offset: The window offset (e.g. ``Time.hours(-8)`` for days in UTC+8); abs(offset) < size.

        Raises:
            ValueError: If size <= 0 or abs(offset) >= size.
        """
        return TumblingEventTimeWindows(to_millis(size), _offset_ms(offset))


class TumblingProcessingTimeWindows(_TumblingWindows):
    """Fixed-size, non-overlapping windows over the subtask's processing time (the element timestamp is ignored).

    Default trigger: :class:`ProcessingTimeTrigger`.
    """

    _event_time = False

    @staticmethod
    def of(size: TimeLike, offset: TimeLike | None = None) -> TumblingProcessingTimeWindows:
        """Returns tumbling processing-time windows of ``size``, shifted by ``offset``.

        Raises:
            ValueError: If size <= 0 or abs(offset) >= size.
        """
        return TumblingProcessingTimeWindows(to_millis(size), _offset_ms(offset))


class _SlidingWindows(_TimeWindows):
    def __init__(self, size: int, slide: int, offset: int = 0) -> None:
        _check_sliding(type(self).__name__, size, slide, offset)
        super().__init__(size, offset)
        self._slide = slide

    @property
    def slide(self) -> int:
        """The slide in milliseconds."""
        return self._slide

    def get_slide(self) -> int:
        """Returns the slide in milliseconds."""
        return self._slide

    def assign_windows(
        self, element: object, timestamp: int | None, context: WindowAssigner.WindowAssignerContext
    ) -> list[TimeWindow]:
        return _sliding_windows(self._time(timestamp, context), self._size, self._slide, self._offset)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._size}, {self._slide})"


class SlidingEventTimeWindows(_SlidingWindows):
    """Event-time windows of ``size`` starting every ``slide``; they overlap when slide < size.

    An element with timestamp ts is in ``[s, s + size)`` for ``s = last_start, last_start - slide, ...`` while
    ``s > ts - size``, where ``last_start = ts - ((ts - offset) % slide)``; the windows are returned in that order
    (latest start first). Default trigger: :class:`EventTimeTrigger`.
    """

    @staticmethod
    def of(size: TimeLike, slide: TimeLike, offset: TimeLike | None = None) -> SlidingEventTimeWindows:
        """Returns sliding event-time windows.

        Args:
            size: The window size (Time, Duration or int ms), > 0.
            slide: How far apart window starts are, > 0.
            offset: The window offset; abs(offset) < slide (as in Flink).

        Raises:
            ValueError: If size <= 0, slide <= 0 or abs(offset) >= slide.
        """
        return SlidingEventTimeWindows(to_millis(size), to_millis(slide), _offset_ms(offset))


class SlidingProcessingTimeWindows(_SlidingWindows):
    """Sliding windows over the subtask's processing time; same windows as :class:`SlidingEventTimeWindows`.

    Default trigger: :class:`ProcessingTimeTrigger`.
    """

    _event_time = False

    @staticmethod
    def of(size: TimeLike, slide: TimeLike, offset: TimeLike | None = None) -> SlidingProcessingTimeWindows:
        """Returns sliding processing-time windows.

        Raises:
            ValueError: If size <= 0, slide <= 0 or abs(offset) >= slide.
        """
        return SlidingProcessingTimeWindows(to_millis(size), to_millis(slide), _offset_ms(offset))


class SessionWindowTimeGapExtractor(ABC):
    """Gives the session gap for an element (dynamic session windows)."""

    @abstractmethod
    def extract(self, element: Any) -> int:
        """Returns the session gap for ``element`` in milliseconds (> 0)."""


def _check_gap(name: str, gap: int) -> int:
    if gap <= 0:
        raise ValueError(f"{name} needs a session gap > 0, got {gap} ms")
    return gap


def _check_extractor(extractor: Any) -> Any:
    if isinstance(extractor, SessionWindowTimeGapExtractor) or callable(extractor):
        return extractor
    raise TypeError(
        "with_dynamic_gap() needs a SessionWindowTimeGapExtractor or a callable element -> gap in ms, "
        f"got {type(extractor).__name__}"
    )


def _extract_gap(extractor: Any, element: Any) -> int:
    gap = extractor.extract(element) if isinstance(extractor, SessionWindowTimeGapExtractor) else extractor(element)
    ms = to_millis(gap)
    if ms <= 0:
        raise ValueError(f"Dynamic session time gap must satisfy 0 < gap, got {ms} ms for element {element!r}")
    return ms


class _SessionWindows(MergingWindowAssigner[object, TimeWindow]):
    """Common merging behaviour of the session assigners."""

    def merge_windows(
        self,
        windows: Iterable[TimeWindow],
        callback: Callable[[list[TimeWindow], TimeWindow], None] | MergingWindowAssigner.MergeCallback,
    ) -> None:
        TimeWindow.merge_windows(windows, callback)


class EventTimeSessionWindows(_SessionWindows):
    """Event-time sessions: an element opens ``[ts, ts + gap)``; intersecting windows merge (bounds included).

    Default trigger: :class:`EventTimeTrigger`.
    """

    def __init__(self, gap: int) -> None:
        self._gap = _check_gap("EventTimeSessionWindows", gap)

    @staticmethod
    def with_gap(size: TimeLike) -> EventTimeSessionWindows:
        """Returns event-time session windows with a fixed gap.

        Args:
            size: The session gap (Time, Duration or int ms), > 0.

        Raises:
            ValueError: If the gap is not positive.
        """
        return EventTimeSessionWindows(to_millis(size))

    @staticmethod
    def with_dynamic_gap(
        extractor: SessionWindowTimeGapExtractor | Callable[[Any], int],
    ) -> DynamicEventTimeSessionWindows:
        """Returns event-time session windows whose gap is given per element by ``extractor``.

        Args:
            extractor: A :class:`SessionWindowTimeGapExtractor` or a callable ``element -> gap in ms``.
        """
        return DynamicEventTimeSessionWindows(extractor)

    @property
    def gap(self) -> int:
        """The session gap in milliseconds."""
        return self._gap

    def get_gap(self) -> int:
        """Returns the session gap in milliseconds."""
        return self._gap

    def assign_windows(
        self, element: object, timestamp: int | None, context: WindowAssigner.WindowAssignerContext
    ) -> list[TimeWindow]:
        ts = _require_timestamp(self, timestamp)
        return [TimeWindow(ts, ts + self._gap)]

    def get_default_trigger(self, env: Any = None) -> Trigger[object, TimeWindow]:
        return EventTimeTrigger.create()

    def is_event_time(self) -> bool:
        return True

    def __repr__(self) -> str:
        return f"EventTimeSessionWindows({self._gap})"


class DynamicEventTimeSessionWindows(_SessionWindows):
    """Event-time sessions whose gap comes from each element (``EventTimeSessionWindows.with_dynamic_gap``).

    An element opens ``[ts, ts + extract(element))``; a non-positive gap raises ValueError when assigned.
    """

    def __init__(self, extractor: SessionWindowTimeGapExtractor | Callable[[Any], int]) -> None:
        self._extractor = _check_extractor(extractor)

    def assign_windows(
        self, element: object, timestamp: int | None, context: WindowAssigner.WindowAssignerContext
    ) -> list[TimeWindow]:
        ts = _require_timestamp(self, timestamp)
        return [TimeWindow(ts, ts + _extract_gap(self._extractor, element))]

    def get_default_trigger(self, env: Any = None) -> Trigger[object, TimeWindow]:
        return EventTimeTrigger.create()

    def is_event_time(self) -> bool:
        return True

    def __repr__(self) -> str:
        return "DynamicEventTimeSessionWindows()"


class ProcessingTimeSessionWindows(_SessionWindows):
    """Processing-time sessions: an element opens ``[now, now + gap)``. Default trigger: ProcessingTimeTrigger."""

    def __init__(self, gap: int) -> None:
        self._gap = _check_gap("ProcessingTimeSessionWindows", gap)

    @staticmethod
    def with_gap(size: TimeLike) -> ProcessingTimeSessionWindows:
        """Returns processing-time session windows with a fixed gap.

        Raises:
            ValueError: If the gap is not positive.
        """
        return ProcessingTimeSessionWindows(to_millis(size))

    @staticmethod
    def with_dynamic_gap(
        extractor: SessionWindowTimeGapExtractor | Callable[[Any], int],
    ) -> DynamicProcessingTimeSessionWindows:
        """Returns processing-time session windows whose gap is given per element by ``extractor``."""
        return DynamicProcessingTimeSessionWindows(extractor)

    @property
    def gap(self) -> int:
        """The session gap in milliseconds."""
        return self._gap

    def get_gap(self) -> int:
        """Returns the session gap in milliseconds."""
        return self._gap

    def assign_windows(
        self, element: object, timestamp: int | None, context: WindowAssigner.WindowAssignerContext
    ) -> list[TimeWindow]:
        now = context.get_current_processing_time()
        return [TimeWindow(now, now + self._gap)]

    def get_default_trigger(self, env: Any = None) -> Trigger[object, TimeWindow]:
        return ProcessingTimeTrigger.create()

    def is_event_time(self) -> bool:
        return False

    def __repr__(self) -> str:
        return f"ProcessingTimeSessionWindows({self._gap})"


class DynamicProcessingTimeSessionWindows(_SessionWindows):
    """Processing-time sessions whose gap comes from each element: ``[now, now + extract(element))``."""

    def __init__(self, extractor: SessionWindowTimeGapExtractor | Callable[[Any], int]) -> None:
        self._extractor = _check_extractor(extractor)

    def assign_windows(
        self, element: object, timestamp: int | None, context: WindowAssigner.WindowAssignerContext
    ) -> list[TimeWindow]:
        now = context.get_current_processing_time()
        return [TimeWindow(now, now + _extract_gap(self._extractor, element))]

    def get_default_trigger(self, env: Any = None) -> Trigger[object, TimeWindow]:
        return ProcessingTimeTrigger.create()

    def is_event_time(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "DynamicProcessingTimeSessionWindows()"


class GlobalWindows(WindowAssigner[object, GlobalWindow]):
    """Assigns every element to the :class:`GlobalWindow`. The default trigger (:class:`NeverTrigger`) never fires,
    so a custom trigger is needed for any output."""

    @staticmethod
    def create() -> GlobalWindows:
        """Returns the global window assigner."""
        return GlobalWindows()

    def assign_windows(
        self, element: object, timestamp: int | None, context: WindowAssigner.WindowAssignerContext
    ) -> list[GlobalWindow]:
        return [GlobalWindow.get()]

    def get_default_trigger(self, env: Any = None) -> Trigger[object, GlobalWindow]:
        return NeverTrigger()

    def is_event_time(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "GlobalWindows()"


def _check_count(name: str, what: str, n: int) -> int:
    if not isinstance(n, int) or isinstance(n, bool):
        raise TypeError(f"{name} needs an int {what}, got {type(n).__name__}")
    if n <= 0:
        raise ValueError(f"{name} needs {what} > 0, got {n}")
    return n


class CountTumblingWindowAssigner(WindowAssigner[object, GlobalWindow]):
    """Tumbling count windows: groups of ``window_size`` elements per key (``key_by(...).count_window(size)``).

    As Flink's ``countWindow(size)``: elements go to the :class:`GlobalWindow` and the default trigger is
    ``PurgingTrigger.of(CountTrigger.of(window_size))``: every ``window_size`` elements the window fires and is
    purged. No evictor (:attr:`count_evictor_size` is None).
    """

    def __init__(self, window_size: int) -> None:
        self._window_size = _check_count("CountTumblingWindowAssigner", "window_size", window_size)

    @staticmethod
    def of(window_size: int) -> CountTumblingWindowAssigner:
        """Returns tumbling count windows of ``window_size`` elements.

        Raises:
            ValueError: If window_size <= 0.
        """
        return CountTumblingWindowAssigner(window_size)

    @property
    def window_size(self) -> int:
        """The number of elements per window."""
        return self._window_size

    @property
    def count_evictor_size(self) -> int | None:
        """None: tumbling count windows need no evictor (the trigger purges)."""
        return None

    def assign_windows(
        self, element: object, timestamp: int | None, context: WindowAssigner.WindowAssignerContext
    ) -> list[GlobalWindow]:
        return [GlobalWindow.get()]

    def get_default_trigger(self, env: Any = None) -> Trigger[object, GlobalWindow]:
        return PurgingTrigger.of(CountTrigger.of(self._window_size))

    def is_event_time(self) -> bool:
        return False

    def __repr__(self) -> str:
        return f"CountTumblingWindowAssigner({self._window_size})"


class CountSlidingWindowAssigner(WindowAssigner[object, GlobalWindow]):
    """Sliding count windows: every ``window_slide`` elements, the last ``window_size`` elements of the key.

    As Flink's ``countWindow(size, slide)``: elements go to the :class:`GlobalWindow`, the default trigger is
    ``CountTrigger.of(window_slide)`` (fires every ``window_slide`` elements, never purges), and an evictor keeps
    only the last ``window_size`` elements: Flink's ``CountEvictor.of(window_size)``. The WindowOperator must
    apply that eviction (see :attr:`count_evictor_size`): when the window fires, before the window function runs,
    it drops the oldest elements (in arrival order) until at most ``window_size`` remain, and those elements are
    removed from the window's state for good. So the first firings may see fewer than ``window_size`` elements
    (after ``slide``, ``2 * slide``, ... elements), as in Java Flink.

    Note: PyFlink's own Python implementation instead numbers ``CountWindow`` ids in keyed state and fires each
    window only when it is full; weir follows Java Flink (SEMANTICS.md: count windows are GlobalWindows +
    CountTrigger).
    """

    def __init__(self, window_size: int, window_slide: int) -> None:
        self._window_size = _check_count("CountSlidingWindowAssigner", "window_size", window_size)
        self._window_slide = _check_count("CountSlidingWindowAssigner", "window_slide", window_slide)

    @staticmethod
    def of(window_size: int, window_slide: int) -> CountSlidingWindowAssigner:
        """Returns sliding count windows.

        Raises:
            ValueError: If window_size <= 0 or window_slide <= 0.
        """
        return CountSlidingWindowAssigner(window_size, window_slide)

    @property
    def window_size(self) -> int:
        """The number of (most recent) elements each firing sees at most."""
        return self._window_size

    @property
    def window_slide(self) -> int:
        """The number of elements between firings."""
        return self._window_slide

    @property
    def count_evictor_size(self) -> int | None:
        """``window_size``: before each evaluation keep only the last this many elements (``CountEvictor``)."""
        return self._window_size

    def assign_windows(
        self, element: object, timestamp: int | None, context: WindowAssigner.WindowAssignerContext
    ) -> list[GlobalWindow]:
        return [GlobalWindow.get()]

    def get_default_trigger(self, env: Any = None) -> Trigger[object, GlobalWindow]:
        return CountTrigger.of(self._window_slide)

    def is_event_time(self) -> bool:
        return False

    def __repr__(self) -> str:
        return f"CountSlidingWindowAssigner({self._window_size}, {self._window_slide})"
