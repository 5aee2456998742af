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

    def snapshot_state(self) -> list[Any]:
        """This reader's splits and their positions (picklable), taken when a checkpoint barrier is emitted.

        Replayable sources return a list of splits; ``Source.restore_reader`` continues from them.
        """
        raise NotImplementedError(
            f"{type(self).__name__} is not replayable, so it cannot be checkpointed: use a replayable source "
            "(collection, NumberSequenceSource, files) or disable checkpointing"
        )


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

    def restore_reader(self, subtask: int, parallelism: int, splits: list[Any]) -> SourceReader:
        """A reader continuing ``splits`` (taken from checkpointed readers, redistributed over the subtasks)."""
        raise NotImplementedError(f"{type(self).__name__} cannot restore from a checkpoint")

    def name(self) -> str:
        return type(self).__name__


class _ListReader(SourceReader):
    def __init__(self, items: Sequence[Any], pos: int = 0) -> None:
        self._items = items
        self._pos = pos

    def poll(self, max_records: int) -> list[Any] | None:
        if self._pos >= len(self._items):
            return None
        batch = list(self._items[self._pos : self._pos + max_records])
        self._pos += len(batch)
        return batch

    def snapshot_state(self) -> list[Any]:
        return [self._pos]


class CollectionSource(Source):
    """The records of a Python collection, in order, from one subtask (``env.from_collection``)."""

    parallelism_one = True

    def __init__(self, collection: Sequence[Any] | Any) -> None:
        self._items = list(collection)

    def create_reader(self, subtask: int, parallelism: int) -> SourceReader:
        return _ListReader(self._items)

    def restore_reader(self, subtask: int, parallelism: int, splits: list[Any]) -> SourceReader:
        return _ListReader(self._items, min(splits) if splits else len(self._items))

    def __len__(self) -> int:
        return len(self._items)


class _RangeReader(SourceReader):
    """Reads its splits (next, end inclusive) one after the other."""

    def __init__(self, splits: list[tuple[int, int]]) -> None:
        self._splits = [list(s) for s in splits if s[0] <= s[1]]

    def poll(self, max_records: int) -> list[Any] | None:
        while self._splits and self._splits[0][0] > self._splits[0][1]:
            self._splits.pop(0)
        if not self._splits:
            return None
        split = self._splits[0]
        stop = min(split[1] + 1, split[0] + max_records)
        batch = list(range(split[0], stop))
        split[0] = stop
        return batch

    def snapshot_state(self) -> list[Any]:
        return [(n, end) for n, end in self._splits if n <= end]


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
        return _RangeReader([(lo, hi)])

    def restore_reader(self, subtask: int, parallelism: int, splits: list[Any]) -> SourceReader:
        return _RangeReader([tuple(s) for s in splits])
