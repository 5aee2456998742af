"""Durations as PyFlink spells them: ``Time`` (windows, TTL) and ``Duration`` (watermark strategies)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Time:
    """A span of time in milliseconds (``pyflink.common.time.Time``)."""

    ms: int

    def to_milliseconds(self) -> int:
        return self.ms

    @staticmethod
    def milliseconds(n: int) -> Time:
        return Time(int(n))

    @staticmethod
    def seconds(n: float) -> Time:
        return Time(int(n * 1000))

    @staticmethod
    def minutes(n: float) -> Time:
        return Time(int(n * 60_000))

    @staticmethod
    def hours(n: float) -> Time:
        return Time(int(n * 3_600_000))

    @staticmethod
    def days(n: float) -> Time:
        return Time(int(n * 86_400_000))

    def __repr__(self) -> str:
        return f"Time.milliseconds({self.ms})"


@dataclass(frozen=True, order=True)
class Duration:
    """A span of time (``pyflink.common.time.Duration``), kept in milliseconds."""

    ms: int

    def to_milliseconds(self) -> int:
        return self.ms

    @staticmethod
    def of_millis(n: int) -> Duration:
        return Duration(int(n))

    @staticmethod
    def of_seconds(n: float) -> Duration:
        return Duration(int(n * 1000))

    @staticmethod
    def of_minutes(n: float) -> Duration:
        return Duration(int(n * 60_000))

    @staticmethod
    def of_hours(n: float) -> Duration:
        return Duration(int(n * 3_600_000))

    @staticmethod
    def of_days(n: float) -> Duration:
        return Duration(int(n * 86_400_000))

    @staticmethod
    def of_nanos(n: int) -> Duration:
        return Duration(int(n // 1_000_000))

    @staticmethod
    def zero() -> Duration:
        return Duration(0)

    def __repr__(self) -> str:
        return f"Duration.of_millis({self.ms})"


def to_millis(t: Time | Duration | int) -> int:
    """Milliseconds of a Time, a Duration or a plain int (taken as milliseconds)."""
    if isinstance(t, Time | Duration):
        return t.ms
    if isinstance(t, int) and not isinstance(t, bool):
        return t
    raise TypeError(f"expected a Time, a Duration or milliseconds as int, got {type(t).__name__}: {t!r}")
