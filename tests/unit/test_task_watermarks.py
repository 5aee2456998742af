"""How a task combines its input channels' watermarks: minimum over channels, idle channels left out."""

from __future__ import annotations

from taskmanager.task import StreamTask
from taskmanager.timers import MIN_TIME


def task_with_channels(n: int) -> StreamTask:
    t = StreamTask.__new__(StreamTask)
    t.channel_wm = [MIN_TIME] * n
    t.channel_idle = [False] * n
    t.input_wm = MIN_TIME
    t.idle_out = False
    t._pending_wm = None
    t._pending_status = None
    t.operators = []
    return t


def forwarded(t: StreamTask) -> tuple[int | None, bool | None]:
    wm, status = t._pending_wm, t._pending_status
    t._pending_wm = t._pending_status = None
    return wm, status


def test_watermark_is_the_minimum_over_channels_and_never_goes_back() -> None:
    t = task_with_channels(3)
    t._on_event(0, ("wm", 100))
    t._on_event(1, ("wm", 50))
    assert forwarded(t) == (None, None)  # channel 2 has sent nothing yet
    t._on_event(2, ("wm", 70))
    assert forwarded(t) == (50, None)
    t._on_event(1, ("wm", 200))
    assert forwarded(t) == (70, None)
    t._on_event(2, ("wm", 60))  # a channel's watermark going back is ignored
    assert forwarded(t) == (None, None)
    assert t.input_wm == 70


def test_idle_channels_do_not_hold_the_watermark_back() -> None:
    t = task_with_channels(2)
    t._on_event(0, ("wm", 1_000))
    assert forwarded(t) == (None, None)
    t._on_event(1, ("idle", True))
    assert forwarded(t) == (1_000, None)
    t._on_event(0, ("wm", 2_000))
    assert forwarded(t) == (2_000, None)
    # the idle channel comes back: it counts again, but the watermark never moves backwards
    t._on_event(1, ("idle", False))
    t._on_event(1, ("wm", 1_500))
    assert forwarded(t) == (None, None)
    t._on_event(1, ("wm", 2_500))
    assert forwarded(t) == (None, None)  # min(2000, 2500) = 2000: already forwarded
    t._on_event(0, ("wm", 3_000))
    assert forwarded(t) == (2_500, None)


def test_all_inputs_idle_makes_the_output_idle_then_active_again() -> None:
    t = task_with_channels(2)
    t._on_event(0, ("idle", True))
    t._on_event(1, ("idle", True))
    assert forwarded(t) == (None, True)
    t._on_event(1, ("idle", False))
    t._on_event(1, ("wm", 10))
    assert forwarded(t) == (10, False)
