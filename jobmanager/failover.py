"""Restart strategies, pure (Flink's names and config keys): given failures and the clock, restart when and whether.

``restart-strategy.type``: ``fixed-delay`` (``restart-strategy.fixed-delay.attempts``, ``.delay``),
``exponential-delay`` (``.initial-backoff``, ``.max-backoff``, ``.backoff-multiplier``,
``.reset-backoff-threshold``, ``.jitter-factor``), ``failure-rate`` (``.max-failures-per-interval``,
``.failure-rate-interval``, ``.delay``), ``none``. Durations are ms ints or strings like ``10 s``, ``500 ms``,
``1 min``.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Protocol

_UNITS = {"ms": 0.001, "milli": 0.001, "millis": 0.001, "millisecond": 0.001, "milliseconds": 0.001,
          "s": 1.0, "sec": 1.0, "secs": 1.0, "second": 1.0, "seconds": 1.0,
          "m": 60.0, "min": 60.0, "mins": 60.0, "minute": 60.0, "minutes": 60.0,
          "h": 3600.0, "hour": 3600.0, "hours": 3600.0, "d": 86400.0, "day": 86400.0, "days": 86400.0}


def parse_duration(value: str | int | float, key: str) -> float:
    """Seconds of '10 s', '500 ms', '1 min' or a number of milliseconds."""
    if isinstance(value, int | float):
        return float(value) / 1000
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-z]*)\s*", value.lower())
    if not m or (m.group(2) and m.group(2) not in _UNITS):
        raise ValueError(f"{key}: {value!r} is not a duration; write e.g. '10 s', '500 ms' or '1 min'")
    n = float(m.group(1))
    return n * _UNITS[m.group(2)] if m.group(2) else n / 1000


class RestartStrategy(Protocol):
    def on_failure(self, now: float) -> float | None:
        """Seconds to wait before restarting, or None: do not restart (the job fails)."""

    def describe(self) -> str: ...


@dataclass
class NoRestart:
    def on_failure(self, now: float) -> float | None:
        return None

    def describe(self) -> str:
        return "none"


@dataclass
class FixedDelay:
    attempts: int = 2**31 - 1
    delay: float = 1.0
    used: int = 0

    def on_failure(self, now: float) -> float | None:
        if self.used >= self.attempts:
            return None
        self.used += 1
        return self.delay

    def describe(self) -> str:
        return f"fixed-delay ({self.used} of {self.attempts} attempts used, delay {self.delay:g} s)"


@dataclass
class ExponentialDelay:
    initial: float = 1.0
    max_backoff: float = 60.0
    multiplier: float = 2.0
    reset_threshold: float = 3600.0
    jitter: float = 0.1
    current: float = 0.0
    last_failure: float | None = None
    rng: random.Random = field(default_factory=random.Random)

    def on_failure(self, now: float) -> float | None:
        if self.last_failure is not None and now - self.last_failure >= self.reset_threshold:
            self.current = 0.0
        self.last_failure = now
        self.current = self.initial if self.current == 0 else min(self.current * self.multiplier, self.max_backoff)
        return self.current * (1 + self.jitter * (2 * self.rng.random() - 1)) if self.jitter else self.current

    def describe(self) -> str:
        return f"exponential-delay (current backoff {self.current:g} s)"


@dataclass
class FailureRate:
    max_failures: int = 1
    interval: float = 60.0
    delay: float = 1.0
    failures: list[float] = field(default_factory=list)

    def on_failure(self, now: float) -> float | None:
        self.failures = [t for t in self.failures if now - t < self.interval] + [now]
        if len(self.failures) > self.max_failures:
            return None
        return self.delay

    def describe(self) -> str:
        return f"failure-rate ({len(self.failures)} failures in the last {self.interval:g} s, max {self.max_failures})"


def restart_strategy_from(config: dict[str, str], checkpointing: bool) -> RestartStrategy:
    """Flink's rule: without a configured strategy, fixed-delay with unlimited attempts when checkpointing is on,
    none otherwise."""
    kind = config.get("restart-strategy.type", config.get("restart-strategy"))
    if kind is None:
        return FixedDelay(delay=1.0) if checkpointing else NoRestart()
    kind = kind.strip().lower().replace("_", "-")
    p = "restart-strategy."
    if kind in ("none", "off", "disable"):
        return NoRestart()
    if kind in ("fixed-delay", "fixeddelay"):
        return FixedDelay(int(config.get(p + "fixed-delay.attempts", "1")),
                          parse_duration(config.get(p + "fixed-delay.delay", "1 s"), p + "fixed-delay.delay"))
    if kind in ("exponential-delay", "exponentialdelay"):
        k = p + "exponential-delay."
        return ExponentialDelay(
            parse_duration(config.get(k + "initial-backoff", "1 s"), k + "initial-backoff"),
            parse_duration(config.get(k + "max-backoff", "1 min"), k + "max-backoff"),
            float(config.get(k + "backoff-multiplier", "2.0")),
            parse_duration(config.get(k + "reset-backoff-threshold", "1 h"), k + "reset-backoff-threshold"),
            float(config.get(k + "jitter-factor", "0.1")),
        )
    if kind in ("failure-rate", "failurerate"):
        k = p + "failure-rate."
        interval = parse_duration(config.get(k + "failure-rate-interval", "1 min"), k + "failure-rate-interval")
        return FailureRate(int(config.get(k + "max-failures-per-interval", "1")), interval,
                           parse_duration(config.get(k + "delay", "1 s"), k + "delay"))
    raise ValueError(
        f"restart-strategy.type: unknown strategy {kind!r}; use fixed-delay, exponential-delay, failure-rate or none"
    )
