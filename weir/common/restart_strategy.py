"""``RestartStrategies`` (``pyflink.common.restart_strategy``): builders of ``restart-strategy.*`` settings."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class RestartStrategyConfiguration:
    config: dict[str, str] = field(default_factory=dict)


class RestartStrategies:
    @staticmethod
    def no_restart() -> RestartStrategyConfiguration:
        return RestartStrategyConfiguration({"restart-strategy.type": "none"})

    @staticmethod
    def fixed_delay_restart(restart_attempts: int, delay_between_attempts: int) -> RestartStrategyConfiguration:
        """``delay_between_attempts`` in ms."""
        return RestartStrategyConfiguration({
            "restart-strategy.type": "fixed-delay",
            "restart-strategy.fixed-delay.attempts": str(restart_attempts),
            "restart-strategy.fixed-delay.delay": f"{int(delay_between_attempts)} ms",
        })

    @staticmethod
    def failure_rate_restart(failure_rate: int, failure_interval: int, delay_interval: int
                             ) -> RestartStrategyConfiguration:
        """Intervals in ms."""
        return RestartStrategyConfiguration({
            "restart-strategy.type": "failure-rate",
            "restart-strategy.failure-rate.max-failures-per-interval": str(failure_rate),
            "restart-strategy.failure-rate.failure-rate-interval": f"{int(failure_interval)} ms",
            "restart-strategy.failure-rate.delay": f"{int(delay_interval)} ms",
        })

    @staticmethod
    def exponential_delay_restart(initial_backoff: int, max_backoff: int, backoff_multiplier: float,
                                  reset_backoff_threshold: int, jitter_factor: float) -> RestartStrategyConfiguration:
        """Durations in ms."""
        return RestartStrategyConfiguration({
            "restart-strategy.type": "exponential-delay",
            "restart-strategy.exponential-delay.initial-backoff": f"{int(initial_backoff)} ms",
            "restart-strategy.exponential-delay.max-backoff": f"{int(max_backoff)} ms",
            "restart-strategy.exponential-delay.backoff-multiplier": str(backoff_multiplier),
            "restart-strategy.exponential-delay.reset-backoff-threshold": f"{int(reset_backoff_threshold)} ms",
            "restart-strategy.exponential-delay.jitter-factor": str(jitter_factor),
        })
