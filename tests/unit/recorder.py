"""An operator's ``out`` for operator tests: it records every buffer emitted."""

from __future__ import annotations

from typing import Any


class Recorder:
    """An operator ``out``: records every emitted buffer."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[Any], list[Any] | None]] = []

    def __call__(self, values: list[Any], timestamps: list[int] | None) -> None:
        if timestamps is not None:
            assert len(timestamps) == len(values)
        self.calls.append((list(values), None if timestamps is None else list(timestamps)))

    @property
    def values(self) -> list[Any]:
        return [v for vals, _ in self.calls for v in vals]

    @property
    def timestamps(self) -> list[Any]:
        out: list[Any] = []
        for vals, ts in self.calls:
            out.extend(ts if ts is not None else [None] * len(vals))
        return out
