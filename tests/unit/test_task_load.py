"""Busy and backpressured time ratios from the cumulative seconds in TaskManager heartbeats."""

from __future__ import annotations

from jobmanager.dispatcher import TaskLoad


def test_ratios_over_the_time_between_samples() -> None:
    load = TaskLoad()
    load.update(10.0, 1.0, 0.0)
    assert load.busy_ratio is None and load.backpressured_ratio is None  # one sample says nothing
    load.update(12.0, 2.5, 0.4)
    assert load.busy_ratio == 0.75 and load.backpressured_ratio == 0.2


def test_samples_too_close_wait_for_a_longer_window() -> None:
    load = TaskLoad()
    load.update(0.0, 0.0, 0.0)
    load.update(0.3, 0.3, 0.0)  # under MIN_WINDOW: kept for later
    assert load.busy_ratio is None
    load.update(1.0, 0.5, 0.5)
    assert load.busy_ratio == 0.5 and load.backpressured_ratio == 0.5


def test_a_restarted_task_starts_a_new_baseline() -> None:
    load = TaskLoad()
    load.update(0.0, 5.0, 5.0)
    load.update(1.0, 6.0, 5.0)
    assert load.busy_ratio == 1.0
    load.update(2.0, 0.1, 0.0)  # counters went back: a new attempt
    assert load.busy_ratio == 1.0  # unchanged until two samples of the new attempt
    load.update(3.0, 0.6, 0.2)
    assert load.busy_ratio == 0.5 and load.backpressured_ratio == 0.2


def test_ratios_are_capped_at_one() -> None:
    load = TaskLoad()
    load.update(0.0, 0.0, 0.0)
    load.update(1.0, 1.5, 0.0)  # metrics of a long buffer arrive late
    assert load.busy_ratio == 1.0
