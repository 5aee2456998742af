"""Timestamps and watermarks: assigns record timestamps and emits watermarks periodically.

Watermarks are generated per buffer: the generator is told the largest timestamp of each buffer, and every
auto-watermark interval (``pipeline.auto-watermark-interval``, default 200 ms of processing time) the operator
emits ``max timestamp - out-of-orderness - 1`` if it advanced. Upstream watermarks are ignored, as in Flink,
except the final one. With ``with_idleness``, an input without records for the idle timeout marks this task's
output idle so downstream watermarks do not wait for it; its next record makes it active again.
"""

from __future__ import annotations

from typing import Any

from taskmanager.operators.base import Emit, Operator
from taskmanager.timers import MAX_TIME
from weir.datastream.functions import RuntimeContext

INVALID_TIMESTAMP_POLICY = "pipeline.invalid-timestamp-policy"  # fail (default) | side-output
INVALID_TIMESTAMP_TAG = "invalid-timestamps"


class InvalidTimestampError(ValueError):
    """A timestamp assigner raised or returned something that is not an integer timestamp."""


class TimestampsAndWatermarksOperator(Operator):
    name = "timestamps"

    def __init__(self, out: Emit, strategy: Any) -> None:
        super().__init__(out)
        self.strategy = strategy
        assigner = strategy.timestamp_assigner
        if assigner is None:
            self.extract = None
        elif type(assigner).__name__ == "_CallableTimestampAssigner":
            self.extract = assigner.fn  # a plain callable wrapped by the strategy: skip the wrapper's call
        elif hasattr(assigner, "extract_timestamp"):
            self.extract = assigner.extract_timestamp
        else:
            self.extract = assigner
        self.fn = assigner
        self.generator = strategy.create_generator()
        self.idle_ms: int | None = strategy.idle_timeout_ms
        self.idle = False
        self.last_record_at = 0
        self.invalid = 0
        self.interval = 200

    def open(self, ctx: RuntimeContext) -> None:
        super().open(ctx)
        self.interval = int(self.runtime.config.get("pipeline.auto-watermark-interval", "200"))
        self.side_invalid = self.runtime.config.get(INVALID_TIMESTAMP_POLICY, "fail") == "side-output"
        pts = self.runtime.processing_time
        self.last_record_at = pts.get_current_processing_time()
        if self.interval > 0 and (self.generator is not None or self.idle_ms):
            pts.schedule(self.last_record_at + self.interval, self._periodic)

    def _periodic(self, at: int) -> None:
        pts = self.runtime.processing_time
        now = pts.get_current_processing_time()
        if self.generator is not None and not self.idle:
            wm = self.generator.on_periodic_emit()
            if wm is not None:
                self.current_watermark = wm
                self.emit_watermark(wm)
        if self.idle_ms and not self.idle and now - self.last_record_at >= self.idle_ms:
            self.idle = True
            self.runtime.emit_status(True)
        pts.schedule(max(at + self.interval, now), self._periodic)

    def process_batch(self, values: list[Any], timestamps: list[int] | None) -> None:
        if not values:
            return
        if self.extract is not None:
            ex = self.extract
            try:
                if timestamps is None:
                    ts = [ex(v, -(2**63)) for v in values]
                else:
                    ts = [ex(v, t) for v, t in zip(values, timestamps, strict=True)]
            except Exception:
                values, ts = self._one_by_one(values, timestamps)
            else:
                for t in ts:
                    if type(t) is not int:
                        values, ts = self._one_by_one(values, timestamps)
                        break
            timestamps = ts
        if self.idle_ms:
            self.last_record_at = self.runtime.processing_time.get_current_processing_time()
            if self.idle:
                self.idle = False
                self.runtime.emit_status(False)
        if self.generator is not None and timestamps:
            try:
                self.generator.on_timestamps(max(timestamps))
            except TypeError:
                raise InvalidTimestampError(
                    "records reached the watermark generator without timestamps: give the WatermarkStrategy a "
                    "timestamp assigner (with_timestamp_assigner) or use a source that sets timestamps"
                ) from None
        if values:
            self.out(values, timestamps)

    def _one_by_one(self, values: list[Any], timestamps: list[int] | None) -> tuple[list[Any], list[int]]:
        """The slow path after a failure: find the bad records; fail with the record shown, or divert them."""
        assert self.extract is not None
        good_v: list[Any] = []
        good_t: list[int] = []
        bad: list[Any] = []
        for i, v in enumerate(values):
            prev = -(2**63) if timestamps is None else timestamps[i]
            try:
                t = self.extract(v, prev)
                if type(t) is not int:
                    if isinstance(t, float) and t.is_integer():
                        t = int(t)
                    else:
                        raise TypeError(f"it returned {type(t).__name__} {t!r:.60}, not an int of milliseconds")
            except Exception as e:
                if not self.side_invalid:
                    raise InvalidTimestampError(
                        f"the timestamp assigner failed on record {v!r:.200}: {e}. Fix the assigner, or set "
                        f"{INVALID_TIMESTAMP_POLICY}=side-output to route such records to the side output "
                        f"OutputTag({INVALID_TIMESTAMP_TAG!r})"
                    ) from e
                bad.append(v)
                continue
            good_v.append(v)
            good_t.append(t)
        if bad:
            self.invalid += len(bad)
            self.runtime.side_output(INVALID_TIMESTAMP_TAG)(bad, None)
        return good_v, good_t

    def process_watermark(self, watermark: int) -> None:
        if watermark == MAX_TIME:  # end of input passes through; other upstream watermarks are replaced
            self.current_watermark = watermark
            self.emit_watermark(watermark)
