"""Watermark strategies, as in PyFlink's ``pyflink.common.watermark_strategy``.

A :class:`WatermarkStrategy` is an immutable, picklable description of how a stream gets its event timestamps
(an optional :class:`TimestampAssigner`) and its watermarks (bounded out-of-orderness, or none). Every ``with_*``
method returns a new strategy and leaves the one it was called on untouched.

The runtime turns a strategy into one :class:`BoundedOutOfOrdernessGenerator` per subtask with
:meth:`WatermarkStrategy.create_generator`. The generator is a pure state machine (no clock, no I/O): the runtime
feeds it the timestamps it sees and asks it, on every auto-watermark tick, whether a new watermark is due.

Flink's rules (``BoundedOutOfOrdernessWatermarks`` and the watermark emitter of ``TimestampsAndWatermarksOperator``):

* watermark = (max timestamp seen) - B - 1, where B is the maximum out-of-orderness;
* before any element the watermark is ``Long.MIN_VALUE`` (:data:`MIN_WATERMARK`);
* a watermark is emitted only when it is greater than the last emitted one, so watermarks never move backwards.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal

from weir.common.time import Duration, Time, to_millis

__all__ = [
    "MAX_WATERMARK",
    "MIN_WATERMARK",
    "BoundedOutOfOrdernessGenerator",
    "TimestampAssigner",
    "Watermark",
    "WatermarkAlignment",
    "WatermarkGenerator",
    "WatermarkOutput",
    "WatermarkStrategy",
]

MIN_WATERMARK: int = -(2**63)
"""Java's ``Long.MIN_VALUE``: the watermark of a stream that has seen nothing yet."""

MAX_WATERMARK: int = 2**63 - 1
"""Java's ``Long.MAX_VALUE``: the watermark a bounded source emits at its end (every event-time timer fires)."""

WatermarkKind = Literal["bounded", "none"]

_DEFAULT_ALIGNMENT_UPDATE_INTERVAL_MS = 1000


class TimestampAssigner(ABC):
    """Extracts the event timestamp of a record (``pyflink.common.watermark_strategy.TimestampAssigner``)."""

    NO_TIMESTAMP: int = MIN_WATERMARK
    """Flink's ``TimestampAssigner.NO_TIMESTAMP`` (``Long.MIN_VALUE``): the record carried no timestamp."""

    @abstractmethod
    def extract_timestamp(self, value: Any, record_timestamp: int) -> int:
        """Returns the event timestamp of ``value``.

        Args:
            value: The record.
            record_timestamp: The timestamp the record already carries (e.g. one set by the source), or
                :attr:`NO_TIMESTAMP` if it has none.

        Returns:
            The event timestamp in milliseconds since the epoch.
        """


class _CallableTimestampAssigner(TimestampAssigner):
    """Adapts a plain callable ``(value, record_timestamp) -> int`` to :class:`TimestampAssigner`."""

    def __init__(self, fn: Callable[[Any, int], int]) -> None:
        self.fn = fn

    def extract_timestamp(self, value: Any, record_timestamp: int) -> int:
        return self.fn(value, record_timestamp)

    def __repr__(self) -> str:
        return f"TimestampAssigner({self.fn!r})"


@dataclass(frozen=True)
class Watermark:
    """A watermark: the assertion that no more elements with a timestamp <= ``timestamp`` will arrive.

    Attributes:
        timestamp: The watermark's timestamp in milliseconds.
    """

    timestamp: int

    def get_timestamp(self) -> int:
        """Returns the watermark's timestamp in milliseconds."""
        return self.timestamp


class WatermarkOutput(ABC):
    """Where a :class:`WatermarkGenerator` emits its watermarks (Flink's ``WatermarkOutput``)."""

    @abstractmethod
    def emit_watermark(self, watermark: Watermark) -> None:
        """Emits a watermark; this also marks the output active again if it was idle."""

    @abstractmethod
    def mark_idle(self) -> None:
        """Marks the output idle: downstream operators leave it out of their watermark minimum."""

    @abstractmethod
    def mark_active(self) -> None:
        """Marks the output active again."""


class WatermarkGenerator(ABC):
    """Generates watermarks from events or periodically (Flink's ``WatermarkGenerator``).

    Kept for API completeness; weir's runtime drives :class:`BoundedOutOfOrdernessGenerator` directly.
    """

    @abstractmethod
    def on_event(self, event: Any, event_timestamp: int, output: WatermarkOutput) -> None:
        """Called for every event; may remember the timestamp or emit a watermark at once."""

    @abstractmethod
    def on_periodic_emit(self, output: WatermarkOutput) -> None:
        """Called every auto-watermark interval; may emit a watermark."""


class BoundedOutOfOrdernessGenerator:
    """Bounded out-of-orderness watermarks for one subtask: a pure state machine.

    The watermark is ``max_timestamp - B - 1``. The maximum starts at ``Long.MIN_VALUE + B + 1``, so the watermark
    before any element is ``Long.MIN_VALUE``. :meth:`on_periodic_emit` returns a watermark only when it is greater
    than the last one it returned, so the emitted watermarks strictly increase.

    Args:
        max_out_of_orderness_ms: B, the maximum out-of-orderness in milliseconds (>= 0).

    Raises:
        ValueError: If ``max_out_of_orderness_ms`` is negative.
    """

    __slots__ = ("_bound", "_max_timestamp", "_last_emitted")

    def __init__(self, max_out_of_orderness_ms: int) -> None:
        _check_out_of_orderness(max_out_of_orderness_ms)
        self._bound = max_out_of_orderness_ms
        self._max_timestamp = MIN_WATERMARK + max_out_of_orderness_ms + 1
        self._last_emitted = MIN_WATERMARK

    @property
    def max_out_of_orderness_ms(self) -> int:
        """B, the maximum out-of-orderness in milliseconds."""
        return self._bound

    @property
    def last_emitted_watermark(self) -> int:
        """The last watermark :meth:`on_periodic_emit` returned (``MIN_WATERMARK`` if none yet)."""
        return self._last_emitted

    def on_timestamps(self, max_ts_of_batch: int) -> None:
        """Takes in the largest timestamp of a batch of records; the generator keeps the overall maximum.

        Args:
            max_ts_of_batch: The maximum event timestamp of the records just processed.
        """
        if max_ts_of_batch > self._max_timestamp:
            self._max_timestamp = max_ts_of_batch

    def current_watermark(self) -> int:
        """Returns ``max_timestamp - B - 1`` (``MIN_WATERMARK`` before any element), emitted or not."""
        return self._max_timestamp - self._bound - 1

    def on_periodic_emit(self) -> int | None:
        """Called on every auto-watermark tick.

        Returns:
            The watermark to emit if it advanced past the last emitted one (it is then recorded as emitted),
            else None. Never returns a watermark lower than or equal to one returned before.
        """
        watermark = self.current_watermark()
        if watermark > self._last_emitted:
            self._last_emitted = watermark
            return watermark
        return None

    def __repr__(self) -> str:
        return (
            f"BoundedOutOfOrdernessGenerator(max_out_of_orderness_ms={self._bound}, "
            f"current_watermark={self.current_watermark()}, last_emitted={self._last_emitted})"
        )


@dataclass(frozen=True)
class WatermarkAlignment:
    """Watermark alignment parameters (accepted and stored; weir does not align sources).

    Attributes:
        watermark_group: Sources in the same group are aligned with each other.
        max_allowed_watermark_drift_ms: How far a source may run ahead of the group's minimum watermark.
        update_interval_ms: How often the alignment is recomputed.
    """

    watermark_group: str
    max_allowed_watermark_drift_ms: int
    update_interval_ms: int


@dataclass(frozen=True)
class WatermarkStrategy:
    """How a stream gets event timestamps and watermarks (``pyflink.common.WatermarkStrategy``).

    Build one with :meth:`for_bounded_out_of_orderness`, :meth:`for_monotonous_timestamps` or
    :meth:`no_watermarks`, then refine it with the ``with_*`` methods, each of which returns a new strategy.
    Instances are immutable and picklable (with cloudpickle when the timestamp assigner is a lambda).

    Attributes:
        kind: ``"bounded"`` (bounded out-of-orderness watermarks) or ``"none"`` (no watermarks).
        max_out_of_orderness_ms: B for ``"bounded"``; 0 for ``"none"``.
        timestamp_assigner: The timestamp assigner (plain callables are wrapped), or None to keep the
            timestamps the records already carry.
        idle_timeout_ms: After this long without records a subtask's output is marked idle; None: never.
        watermark_alignment: Alignment parameters from :meth:`with_watermark_alignment`, or None. Stored only.
    """

    kind: WatermarkKind = "none"
    max_out_of_orderness_ms: int = 0
    timestamp_assigner: TimestampAssigner | None = None
    idle_timeout_ms: int | None = None
    watermark_alignment: WatermarkAlignment | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("bounded", "none"):
            raise ValueError(f"WatermarkStrategy kind must be 'bounded' or 'none', got {self.kind!r}")
        _check_out_of_orderness(self.max_out_of_orderness_ms)
        if self.timestamp_assigner is not None and not isinstance(self.timestamp_assigner, TimestampAssigner):
            raise TypeError("timestamp_assigner must be a TimestampAssigner (use with_timestamp_assigner)")
        if self.idle_timeout_ms is not None:
            _check_idle_timeout(self.idle_timeout_ms)

    # ---- factories ----

    @staticmethod
    def for_bounded_out_of_orderness(max_out_of_orderness: Duration | Time | int) -> WatermarkStrategy:
        """Watermarks that trail the highest timestamp seen by ``max_out_of_orderness``.

        Args:
            max_out_of_orderness: B, how late (in event time) an element may arrive relative to the highest
                timestamp seen so far and still not be late. A Duration (or Time, or int milliseconds).

        Returns:
            A strategy whose watermark is ``max_timestamp - B - 1``.

        Raises:
            ValueError: If ``max_out_of_orderness`` is negative.
        """
        return WatermarkStrategy(kind="bounded", max_out_of_orderness_ms=to_millis(max_out_of_orderness))

    @staticmethod
    def for_monotonous_timestamps() -> WatermarkStrategy:
        """Watermarks for ascending timestamps: bounded out-of-orderness with B = 0 (watermark = max - 1)."""
        return WatermarkStrategy(kind="bounded", max_out_of_orderness_ms=0)

    @staticmethod
    def no_watermarks() -> WatermarkStrategy:
        """A strategy that generates no watermarks (timestamps may still be assigned)."""
        return WatermarkStrategy(kind="none")

    # ---- refinements (each returns a new strategy) ----

    def with_timestamp_assigner(
        self, timestamp_assigner: TimestampAssigner | Callable[[Any, int], int]
    ) -> WatermarkStrategy:
        """Returns a copy of this strategy that extracts timestamps with ``timestamp_assigner``.

        Args:
            timestamp_assigner: A :class:`TimestampAssigner`, or a plain callable
                ``(value, record_timestamp) -> int``.

        Raises:
            TypeError: If ``timestamp_assigner`` is neither.
        """
        if isinstance(timestamp_assigner, TimestampAssigner):
            assigner: TimestampAssigner = timestamp_assigner
        elif callable(timestamp_assigner):
            assigner = _CallableTimestampAssigner(timestamp_assigner)
        else:
            raise TypeError(
                "with_timestamp_assigner() needs a TimestampAssigner or a callable (value, record_timestamp) -> int, "
                f"got {type(timestamp_assigner).__name__}"
            )
        return replace(self, timestamp_assigner=assigner)

    def with_idleness(self, idle_timeout: Duration | Time | int) -> WatermarkStrategy:
        """Returns a copy of this strategy that marks a subtask idle after ``idle_timeout`` without records.

        Args:
            idle_timeout: A Duration (or Time, or int milliseconds) > 0.

        Raises:
            ValueError: If ``idle_timeout`` is zero or negative.
        """
        return replace(self, idle_timeout_ms=_check_idle_timeout(to_millis(idle_timeout)))

    def with_watermark_alignment(
        self,
        watermark_group: str,
        max_allowed_watermark_drift: Duration | Time | int,
        update_interval: Duration | Time | int | None = None,
    ) -> WatermarkStrategy:
        """Returns a copy of this strategy with watermark alignment parameters (stored; no effect in weir).

        Args:
            watermark_group: The alignment group.
            max_allowed_watermark_drift: The maximum drift from the group's minimum watermark (> 0).
            update_interval: How often alignment is recomputed (> 0); default 1 second, as in Flink.

        Raises:
            ValueError: If the group is empty or a duration is not positive.
        """
        if not isinstance(watermark_group, str) or not watermark_group:
            raise ValueError("with_watermark_alignment() needs a non-empty watermark group name")
        drift = to_millis(max_allowed_watermark_drift)
        if drift <= 0:
            raise ValueError(f"max_allowed_watermark_drift must be positive, got {drift} ms")
        interval = _DEFAULT_ALIGNMENT_UPDATE_INTERVAL_MS if update_interval is None else to_millis(update_interval)
        if interval <= 0:
            raise ValueError(f"update_interval must be positive, got {interval} ms")
        return replace(self, watermark_alignment=WatermarkAlignment(watermark_group, drift, interval))

    # ---- for the runtime ----

    def create_generator(self) -> BoundedOutOfOrdernessGenerator | None:
        """Returns a fresh watermark generator for one subtask, or None if this strategy has no watermarks."""
        if self.kind == "none":
            return None
        return BoundedOutOfOrdernessGenerator(self.max_out_of_orderness_ms)


def _check_out_of_orderness(ms: int) -> int:
    if not isinstance(ms, int) or isinstance(ms, bool):
        raise TypeError(f"max out-of-orderness must be milliseconds as int, got {type(ms).__name__}")
    if ms < 0:
        raise ValueError(f"max out-of-orderness cannot be negative, got {ms} ms")
    return ms


def _check_idle_timeout(ms: int) -> int:
    if not isinstance(ms, int) or isinstance(ms, bool):
        raise TypeError(f"idle timeout must be milliseconds as int, got {type(ms).__name__}")
    if ms <= 0:
        raise ValueError(f"idle timeout must be greater than zero, got {ms} ms")
    return ms
