"""The source role: a Source splits its input over subtasks; each subtask polls its reader for batches."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any


class SourceReader(ABC):
    """Reads one subtask's share of a source. Called only from that subtask's mailbox thread."""

    @abstractmethod
    def poll(self, max_records: int) -> list[Any] | None:
        """Up to ``max_records`` records; an empty list when none is available now; None at end of input."""

    def close(self) -> None:  # noqa: B027 - optional hook
        pass


class Source(ABC):
    """A (possibly parallel) source of records.

    Sources with ``parallelism_one = True`` always run with one subtask, like Flink's collection source.
    """

    parallelism_one: bool = False

    @property
    def is_bounded_parallelism_one(self) -> bool:
        return self.parallelism_one

    @abstractmethod
    def create_reader(self, subtask: int, parallelism: int) -> SourceReader: ...

    def name(self) -> str:
        return type(self).__name__


class _ListReader(SourceReader):
    def __init__(self, items: Sequence[Any]) -> None:
        self._items = items
        self._pos = 0

    def poll(self, max_records: int) -> list[Any] | None:
        if self._pos >= len(self._items):
            return None
        batch = list(self._items[self._pos : self._pos + max_records])
        self._pos += len(batch)
        return batch


class CollectionSource(Source):
    """The records of a Python collection, in order, from one subtask (``env.from_collection``)."""

    parallelism_one = True

    def __init__(self, collection: Sequence[Any] | Any) -> None:
        self._items = list(collection)

    def create_reader(self, subtask: int, parallelism: int) -> SourceReader:
        return _ListReader(self._items)

    def __len__(self) -> int:
        return len(self._items)


class _RangeReader(SourceReader):
    def __init__(self, start: int, end_inclusive: int) -> None:
        self._next = start
        self._end = end_inclusive

    def poll(self, max_records: int) -> list[Any] | None:
        if self._next > self._end:
            return None
        stop = min(self._end + 1, self._next + max_records)
        batch = list(range(self._next, stop))
        self._next = stop
        return batch


class NumberSequenceSource(Source):
    """The integers ``start`` .. ``end`` (both inclusive), split into contiguous ranges over subtasks."""

    def __init__(self, start: int, end: int) -> None:
        if end < start:
            raise ValueError(f"NumberSequenceSource: end ({end}) must be >= start ({start})")
        self.start = start
        self.end = end

    def create_reader(self, subtask: int, parallelism: int) -> SourceReader:
        total = self.end - self.start + 1
        lo = self.start + total * subtask // parallelism
        hi = self.start + total * (subtask + 1) // parallelism - 1
        return _RangeReader(lo, hi)
