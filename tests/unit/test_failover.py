"""Restart strategies (pure), duration parsing and the strategy chosen from a job's configuration."""

from __future__ import annotations

import random

import pytest

from jobmanager.failover import (
    ExponentialDelay,
    FailureRate,
    FixedDelay,
    NoRestart,
    parse_duration,
    restart_strategy_from,
)

# ---- parse_duration ----


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (1500, 1.5),
        (0, 0.0),
        (250.0, 0.25),
        ("500 ms", 0.5),
        ("500ms", 0.5),
        ("0 ms", 0.0),
        ("10 s", 10.0),
        ("2 sec", 2.0),
        ("1 second", 1.0),
        ("3 seconds", 3.0),
        ("1 min", 60.0),
        ("2 minutes", 120.0),
        ("1 minute", 60.0),
        ("1 h", 3600.0),
        ("2 hours", 7200.0),
        ("1 hour", 3600.0),
        ("0.5 s", 0.5),
        (" 7 s ", 7.0),
        ("1200", 1.2),  # a bare number is milliseconds, as in Flink
    ],
)
def test_parse_duration(value, seconds):
    assert parse_duration(value, "k") == pytest.approx(seconds)


@pytest.mark.parametrize("value", ["ten seconds", "10 parsecs", "", "-1 s", "1 s 2", "s"])
def test_parse_duration_errors_name_the_key_and_value(value):
    with pytest.raises(ValueError) as e:
        parse_duration(value, "restart-strategy.fixed-delay.delay")
    msg = str(e.value)
    assert msg.startswith("restart-strategy.fixed-delay.delay: ")
    assert repr(value) in msg


# ---- strategies ----


def test_no_restart():
    s = NoRestart()
    assert s.on_failure(0.0) is None
    assert s.on_failure(100.0) is None
    assert s.describe() == "none"


def test_fixed_delay_counts_attempts():
    s = FixedDelay(attempts=3, delay=2.5)
    assert [s.on_failure(t) for t in (0.0, 10.0, 20.0)] == [2.5, 2.5, 2.5]
    assert s.on_failure(30.0) is None
    assert s.on_failure(40.0) is None
    assert "3 of 3" in s.describe()


def test_fixed_delay_zero_attempts_never_restarts():
    assert FixedDelay(attempts=0, delay=1.0).on_failure(0.0) is None


def test_exponential_backoff_grows_caps_and_resets():
    s = ExponentialDelay(initial=1.0, max_backoff=10.0, multiplier=3.0, reset_threshold=100.0, jitter=0.0)
    got = [s.on_failure(t) for t in (0.0, 1.0, 2.0, 3.0, 4.0)]
    assert got == [1.0, 3.0, 9.0, 10.0, 10.0]
    # a quiet period shorter than the threshold does not reset
    assert s.on_failure(4.0 + 99.0) == 10.0
    # at least reset_threshold since the previous failure: back to the initial backoff
    assert s.on_failure(103.0 + 100.0) == 1.0
    assert s.on_failure(204.0) == 3.0


def test_exponential_backoff_jitter_stays_within_the_factor():
    s = ExponentialDelay(initial=10.0, max_backoff=10.0, multiplier=2.0, jitter=0.1, rng=random.Random(7))
    delays = [s.on_failure(float(t)) for t in range(50)]
    assert all(9.0 <= d <= 11.0 for d in delays)
    assert len(set(delays)) > 1, "jitter varies the delay"
    assert s.current == 10.0


def test_failure_rate_window():
    s = FailureRate(max_failures=2, interval=60.0, delay=0.5)
    assert s.on_failure(0.0) == 0.5
    assert s.on_failure(30.0) == 0.5
    assert s.on_failure(59.0) is None  # 3 failures within 60 s
    s = FailureRate(max_failures=2, interval=60.0, delay=0.5)
    assert s.on_failure(0.0) == 0.5
    assert s.on_failure(30.0) == 0.5
    assert s.on_failure(60.5) == 0.5  # the failure at 0 s has left the window
    assert s.on_failure(89.0) is None  # 30, 60.5, 89


# ---- restart_strategy_from ----


def test_default_without_a_configured_strategy():
    s = restart_strategy_from({}, checkpointing=True)
    assert isinstance(s, FixedDelay)
    assert s.attempts >= 2**31 - 1  # unlimited
    assert s.delay == 1.0
    assert isinstance(restart_strategy_from({}, checkpointing=False), NoRestart)


def test_fixed_delay_from_config():
    s = restart_strategy_from({"restart-strategy.type": "fixed-delay", "restart-strategy.fixed-delay.attempts": "4",
                               "restart-strategy.fixed-delay.delay": "250 ms"}, checkpointing=False)
    assert isinstance(s, FixedDelay)
    assert (s.attempts, s.delay) == (4, 0.25)
    # the legacy key and other spellings
    s = restart_strategy_from({"restart-strategy": "FIXED_DELAY"}, checkpointing=False)
    assert isinstance(s, FixedDelay)


def test_none_from_config_even_with_checkpointing():
    for v in ("none", "off", "disable", "NONE"):
        assert isinstance(restart_strategy_from({"restart-strategy.type": v}, checkpointing=True), NoRestart)


def test_exponential_delay_from_config():
    k = "restart-strategy.exponential-delay."
    s = restart_strategy_from({"restart-strategy.type": "exponential-delay", k + "initial-backoff": "2 s",
                               k + "max-backoff": "30 s", k + "backoff-multiplier": "1.5",
                               k + "reset-backoff-threshold": "10 min", k + "jitter-factor": "0"}, False)
    assert isinstance(s, ExponentialDelay)
    assert (s.initial, s.max_backoff, s.multiplier, s.reset_threshold, s.jitter) == (2.0, 30.0, 1.5, 600.0, 0.0)
    assert [s.on_failure(t) for t in (0, 1, 2)] == [2.0, 3.0, 4.5]


def test_failure_rate_from_config():
    k = "restart-strategy.failure-rate."
    s = restart_strategy_from({"restart-strategy.type": "failure-rate", k + "max-failures-per-interval": "3",
                               k + "failure-rate-interval": "5 min", k + "delay": "100"}, False)
    assert isinstance(s, FailureRate)
    assert (s.max_failures, s.interval, s.delay) == (3, 300.0, 0.1)


def test_bad_duration_in_config_names_the_key():
    with pytest.raises(ValueError, match=r"restart-strategy\.failure-rate\.failure-rate-interval: 'soon'"):
        restart_strategy_from({"restart-strategy.type": "failure-rate",
                               "restart-strategy.failure-rate.failure-rate-interval": "soon"}, False)


def test_unknown_strategy_type_is_an_error():
    with pytest.raises(ValueError) as e:
        restart_strategy_from({"restart-strategy.type": "sometimes"}, checkpointing=True)
    msg = str(e.value)
    assert "restart-strategy.type" in msg and "'sometimes'" in msg
    assert "fixed-delay" in msg and "none" in msg


@pytest.mark.parametrize(("value", "seconds"), [
    ("1 d", 86400.0), ("2 days", 172800.0), ("10 secs", 10.0), ("500 millis", 0.5),
    ("500 milliseconds", 0.5), ("10 S", 10.0), ("1 MIN", 60.0),
])
def test_parse_duration_accepts_flinks_unit_labels(value, seconds):
    assert parse_duration(value, "k") == pytest.approx(seconds)
