"""weir.common.watermark_strategy: the bounded out-of-orderness generator and WatermarkStrategy."""

from __future__ import annotations

import dataclasses
import pickle
import random
from typing import Any

import cloudpickle
import pytest

from weir.common.time import Duration, Time
from weir.common.watermark_strategy import (
    MAX_WATERMARK,
    MIN_WATERMARK,
    BoundedOutOfOrdernessGenerator,
    TimestampAssigner,
    Watermark,
    WatermarkAlignment,
    WatermarkGenerator,
    WatermarkOutput,
    WatermarkStrategy,
)


def test_constants():
    assert MIN_WATERMARK == -(2**63)
    assert MAX_WATERMARK == 2**63 - 1
    assert TimestampAssigner.NO_TIMESTAMP == MIN_WATERMARK


# ---- BoundedOutOfOrdernessGenerator ----


@pytest.mark.parametrize("bound", [0, 1, 5000])
def test_generator_before_any_element(bound: int):
    gen = BoundedOutOfOrdernessGenerator(bound)
    assert gen.max_out_of_orderness_ms == bound
    assert gen.current_watermark() == MIN_WATERMARK
    assert gen.on_periodic_emit() is None
    assert gen.last_emitted_watermark == MIN_WATERMARK


def test_generator_watermark_is_max_minus_bound_minus_one():
    gen = BoundedOutOfOrdernessGenerator(100)
    gen.on_timestamps(1000)
    assert gen.current_watermark() == 899
    assert gen.on_periodic_emit() == 899
    assert gen.last_emitted_watermark == 899
    assert gen.on_periodic_emit() is None  # no advance: nothing to emit
    gen.on_timestamps(500)  # out of order: the max stays 1000
    assert gen.current_watermark() == 899
    assert gen.on_periodic_emit() is None
    gen.on_timestamps(1001)
    assert gen.on_periodic_emit() == 900
    gen.on_timestamps(-(10**12))
    assert gen.current_watermark() == 900 and gen.on_periodic_emit() is None


def test_generator_monotonous_and_negative_timestamps():
    gen = BoundedOutOfOrdernessGenerator(0)
    gen.on_timestamps(-50)
    assert gen.on_periodic_emit() == -51
    gen.on_timestamps(0)
    assert gen.on_periodic_emit() == -1


def test_generator_matches_reference_on_random_batches():
    rng = random.Random(5)
    for _ in range(200):
        bound = rng.randint(0, 1000)
        gen = BoundedOutOfOrdernessGenerator(bound)
        seen: list[int] = []
        emitted: list[int] = []
        for _ in range(rng.randint(1, 30)):
            batch = [rng.randint(-5000, 5000) for _ in range(rng.randint(1, 5))]
            gen.on_timestamps(max(batch))
            seen.extend(batch)
            assert gen.current_watermark() == max(seen) - bound - 1
            if rng.random() < 0.5:
                wm = gen.on_periodic_emit()
                expected_new = max(seen) - bound - 1
                if emitted and expected_new <= emitted[-1]:
                    assert wm is None
                else:
                    assert wm == expected_new
                    emitted.append(wm)
        assert emitted == sorted(set(emitted))  # strictly increasing: never backwards, never repeated


def test_generator_rejects_negative_bound():
    with pytest.raises(ValueError, match="cannot be negative"):
        BoundedOutOfOrdernessGenerator(-1)


# ---- WatermarkStrategy ----


class FieldAssigner(TimestampAssigner):
    def extract_timestamp(self, value: Any, record_timestamp: int) -> int:
        return int(value["ts"])


def test_factories_and_properties():
    bounded = WatermarkStrategy.for_bounded_out_of_orderness(Duration.of_seconds(5))
    assert (bounded.kind, bounded.max_out_of_orderness_ms) == ("bounded", 5000)
    assert bounded.timestamp_assigner is None and bounded.idle_timeout_ms is None
    assert bounded.watermark_alignment is None
    mono = WatermarkStrategy.for_monotonous_timestamps()
    assert (mono.kind, mono.max_out_of_orderness_ms) == ("bounded", 0)
    none = WatermarkStrategy.no_watermarks()
    assert none.kind == "none" and none.create_generator() is None
    assert WatermarkStrategy.for_bounded_out_of_orderness(Time.seconds(2)).max_out_of_orderness_ms == 2000
    assert WatermarkStrategy.for_bounded_out_of_orderness(Duration.zero()).max_out_of_orderness_ms == 0


def test_create_generator_gives_fresh_independent_generators():
    strategy = WatermarkStrategy.for_bounded_out_of_orderness(Duration.of_millis(10))
    g1, g2 = strategy.create_generator(), strategy.create_generator()
    assert isinstance(g1, BoundedOutOfOrdernessGenerator) and isinstance(g2, BoundedOutOfOrdernessGenerator)
    assert g1 is not g2
    g1.on_timestamps(100)
    assert g1.current_watermark() == 89 and g2.current_watermark() == MIN_WATERMARK
    mono = WatermarkStrategy.for_monotonous_timestamps().create_generator()
    assert mono is not None
    mono.on_timestamps(100)
    assert mono.current_watermark() == 99


def test_with_methods_return_new_strategies_and_leave_the_original():
    base = WatermarkStrategy.for_bounded_out_of_orderness(Duration.of_seconds(1))
    with_assigner = base.with_timestamp_assigner(lambda v, ts: v[0])
    with_idle = with_assigner.with_idleness(Duration.of_seconds(30))
    aligned = with_idle.with_watermark_alignment("group-a", Duration.of_seconds(20))
    assert base.timestamp_assigner is None and base.idle_timeout_ms is None
    assert with_assigner is not base and with_assigner.idle_timeout_ms is None
    assert with_assigner.timestamp_assigner is not None
    assert with_idle.idle_timeout_ms == 30_000 and with_idle.timestamp_assigner is with_assigner.timestamp_assigner
    assert with_idle.watermark_alignment is None
    assert aligned.watermark_alignment == WatermarkAlignment("group-a", 20_000, 1000)
    assert (aligned.kind, aligned.max_out_of_orderness_ms, aligned.idle_timeout_ms) == ("bounded", 1000, 30_000)
    explicit = base.with_watermark_alignment("g", Duration.of_seconds(1), Duration.of_millis(250))
    assert explicit.watermark_alignment == WatermarkAlignment("g", 1000, 250)
    for strategy in (base, with_assigner, with_idle, aligned):
        with pytest.raises(dataclasses.FrozenInstanceError):
            strategy.kind = "none"  # type: ignore[misc]
        with pytest.raises(dataclasses.FrozenInstanceError):
            strategy.max_out_of_orderness_ms = 7  # type: ignore[misc]
    assert base.max_out_of_orderness_ms == 1000


def test_timestamp_assigner_forms():
    callable_form = WatermarkStrategy.no_watermarks().with_timestamp_assigner(lambda v, ts: v * 10 + ts)
    assigner = callable_form.timestamp_assigner
    assert isinstance(assigner, TimestampAssigner)
    assert assigner.extract_timestamp(4, 2) == 42
    class_form = WatermarkStrategy.for_monotonous_timestamps().with_timestamp_assigner(FieldAssigner())
    assert isinstance(class_form.timestamp_assigner, FieldAssigner)
    assert class_form.timestamp_assigner.extract_timestamp({"ts": "17"}, MIN_WATERMARK) == 17
    with pytest.raises(TypeError, match="TimestampAssigner or a callable"):
        WatermarkStrategy.no_watermarks().with_timestamp_assigner(42)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (lambda: WatermarkStrategy.for_bounded_out_of_orderness(Duration.of_millis(-1)), ValueError, "negative"),
        (lambda: WatermarkStrategy.for_monotonous_timestamps().with_idleness(Duration.zero()), ValueError, "zero"),
        (lambda: WatermarkStrategy.no_watermarks().with_idleness(Duration.of_millis(-5)), ValueError, "zero"),
        (
            lambda: WatermarkStrategy.no_watermarks().with_watermark_alignment("", Duration.of_seconds(1)),
            ValueError,
            "group",
        ),
        (
            lambda: WatermarkStrategy.no_watermarks().with_watermark_alignment("g", Duration.zero()),
            ValueError,
            "drift",
        ),
        (
            lambda: WatermarkStrategy.no_watermarks().with_watermark_alignment(
                "g", Duration.of_seconds(1), Duration.zero()
            ),
            ValueError,
            "update_interval",
        ),
        (lambda: WatermarkStrategy.for_bounded_out_of_orderness("5s"), TypeError, "Duration"),  # type: ignore[arg-type]
        (lambda: WatermarkStrategy(kind="periodic"), ValueError, "kind"),  # type: ignore[arg-type]
        (lambda: WatermarkStrategy(max_out_of_orderness_ms=-3), ValueError, "negative"),
    ],
)
def test_invalid_arguments(build: Any, error: type[Exception], message: str):
    with pytest.raises(error, match=message):
        build()


def test_strategies_with_lambdas_survive_cloudpickle():
    strategy = (
        WatermarkStrategy.for_bounded_out_of_orderness(Duration.of_seconds(3))
        .with_timestamp_assigner(lambda value, ts: value["t"] + 1)
        .with_idleness(Duration.of_minutes(1))
    )
    clone = pickle.loads(cloudpickle.dumps(strategy))
    assert (clone.kind, clone.max_out_of_orderness_ms, clone.idle_timeout_ms) == ("bounded", 3000, 60_000)
    assert clone.timestamp_assigner is not None
    assert clone.timestamp_assigner.extract_timestamp({"t": 41}, MIN_WATERMARK) == 42
    gen = clone.create_generator()
    assert gen is not None
    gen.on_timestamps(10_000)
    assert gen.on_periodic_emit() == 6999


def test_strategies_pickle_with_plain_pickle():
    strategy = WatermarkStrategy.for_monotonous_timestamps().with_timestamp_assigner(FieldAssigner())
    clone = pickle.loads(pickle.dumps(strategy))
    assert clone.kind == "bounded" and isinstance(clone.timestamp_assigner, FieldAssigner)
    none = pickle.loads(pickle.dumps(WatermarkStrategy.no_watermarks().with_idleness(5)))
    assert (none.kind, none.idle_timeout_ms) == ("none", 5)
    gen = BoundedOutOfOrdernessGenerator(3)
    gen.on_timestamps(10)
    gen.on_periodic_emit()
    gen_clone = pickle.loads(pickle.dumps(gen))
    assert (gen_clone.current_watermark(), gen_clone.last_emitted_watermark) == (6, 6)


# ---- Watermark / WatermarkGenerator / WatermarkOutput ----


def test_watermark_and_generator_interfaces():
    wm = Watermark(123)
    assert wm.timestamp == 123 and wm.get_timestamp() == 123 and wm == Watermark(123)
    with pytest.raises(TypeError):
        WatermarkGenerator()  # type: ignore[abstract]
    with pytest.raises(TypeError):
        WatermarkOutput()  # type: ignore[abstract]

    class Collect(WatermarkOutput):
        def __init__(self) -> None:
            self.seen: list[Any] = []

        def emit_watermark(self, watermark: Watermark) -> None:
            self.seen.append(watermark.get_timestamp())

        def mark_idle(self) -> None:
            self.seen.append("idle")

        def mark_active(self) -> None:
            self.seen.append("active")

    class Punctuated(WatermarkGenerator):
        def on_event(self, event: Any, event_timestamp: int, output: WatermarkOutput) -> None:
            if event == "mark":
                output.emit_watermark(Watermark(event_timestamp))

        def on_periodic_emit(self, output: WatermarkOutput) -> None:
            output.mark_idle()

    out = Collect()
    gen = Punctuated()
    gen.on_event("x", 1, out)
    gen.on_event("mark", 5, out)
    gen.on_periodic_emit(out)
    assert out.seen == [5, "idle"]
