"""Collecting what user functions yield: main-output records, and ``(OutputTag, value)`` pairs (PyFlink's way of
emitting to a side output) routed to the operator's side outputs."""

from __future__ import annotations

from types import GeneratorType
from typing import Any

from taskmanager.operators.base import OperatorRuntime
from weir.datastream.output_tag import OutputTag

_TEXT = (str, bytes)  # iterable, but not an iterable of records


class Collector:
    """Buffers one batch of output (values and timestamps) of a process-style operator."""

    __slots__ = ("values", "timestamps", "runtime")

    def __init__(self, runtime: OperatorRuntime) -> None:
        self.values: list[Any] = []
        self.timestamps: list[int | None] = []
        self.runtime = runtime

    def collect(self, results: Any, ts: int | None, what: str) -> None:
        if results is None:
            return
        tr = type(results)
        if tr is not GeneratorType and tr is not list and tr is not tuple and (
                isinstance(results, _TEXT) or not hasattr(results, "__iter__")):
            raise TypeError(
                f"{what} must yield or return an iterable of records, got {type(results).__name__}: {results!r:.60}"
            )
        values, timestamps = self.values, self.timestamps
        for r in results:
            if type(r) is tuple and len(r) == 2 and type(r[0]) is OutputTag:
                self.side(r[0], r[1], ts)
            else:
                values.append(r)
                timestamps.append(ts)

    def side(self, tag: Any, value: Any, ts: int | None) -> None:
        if not isinstance(tag, OutputTag):
            raise TypeError(f"output() takes an OutputTag, got {type(tag).__name__}")
        self.runtime.side_output(tag.tag_id)([value], [ts] if ts is not None else None)  # type: ignore[list-item]

    def take(self) -> tuple[list[Any], list[int] | None]:
        values, ts = self.values, self.timestamps
        self.values, self.timestamps = [], []
        if all(t is None for t in ts):
            return values, None
        return values, ts  # type: ignore[return-value]
