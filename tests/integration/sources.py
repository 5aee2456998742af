"""Test sources with deterministic watermarks.

``SegmentedSource`` emits its records segment by segment and pauses after each one long enough for the periodic
watermark emission (set the auto-watermark interval well below the pause) to run: every watermark a segment
makes due is then emitted downstream before the next segment's records, on the same channel, so which elements
are late is decided by the data alone, not by timing. ``watermarks_after_segments`` computes those watermarks.
"""

from __future__ import annotations

import time
from typing import Any

from weir.datastream.connectors import Source, SourceReader


class _SegmentReader(SourceReader):
    def __init__(self, segments: list[list[Any]], pause_s: float) -> None:
        self.segments = segments
        self.pause_s = pause_s
        self.i = 0
        self.resume_at = 0.0

    def poll(self, max_records: int) -> list[Any] | None:
        if time.monotonic() < self.resume_at:
            return []
        if self.i >= len(self.segments):
            return None
        seg = self.segments[self.i]
        self.i += 1
        self.resume_at = time.monotonic() + self.pause_s
        return list(seg)


class SegmentedSource(Source):
    parallelism_one = True

    def __init__(self, segments: list[list[Any]], pause_ms: int = 60) -> None:
        self.segments = segments
        self.pause_s = pause_ms / 1000

    def create_reader(self, subtask: int, parallelism: int) -> SourceReader:
        return _SegmentReader(self.segments, self.pause_s)


def watermarks_after_segments(segments: list[list[Any]], ts_of: Any, out_of_orderness: int) -> list[int]:
    """The watermark in force after each segment (bounded out-of-orderness: max timestamp - B - 1)."""
    wms = []
    max_ts = None
    wm = -(2**63)
    for seg in segments:
        for r in seg:
            t = ts_of(r)
            max_ts = t if max_ts is None else max(max_ts, t)
        if max_ts is not None:
            wm = max(wm, max_ts - out_of_orderness - 1)
        wms.append(wm)
    return wms
