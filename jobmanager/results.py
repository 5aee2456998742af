"""Results of ``execute_and_collect`` on their way from the collect sink to the client.

A bounded queue of pickled buffers: the collect sink's push waits while it is full, so a slow client
backpressures the job instead of filling the JobManager's memory.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator


class ResultsClosedError(Exception):
    pass


class ResultBuffer:
    def __init__(self, capacity: int = 16) -> None:
        self.capacity = capacity
        self.batches: deque[bytes] = deque()
        self.ended = False
        self.failure: str | None = None
        self._changed = asyncio.Condition()

    async def push(self, records: bytes, end: bool) -> None:
        async with self._changed:
            await self._changed.wait_for(
                lambda: len(self.batches) < self.capacity or self.failure is not None
            )
            if self.failure is not None:
                raise ResultsClosedError(self.failure)
            if records:
                self.batches.append(records)
            if end:
                self.ended = True
            self._changed.notify_all()

    async def close(self, failure: str | None) -> None:
        async with self._changed:
            if failure is not None:
                self.failure = failure
            self.ended = True
            self._changed.notify_all()

    async def stream(self) -> AsyncIterator[bytes]:
        """Yield buffers as they arrive; ends after the last one, raises ResultsClosedError on failure."""
        while True:
            async with self._changed:
                await self._changed.wait_for(lambda: bool(self.batches) or self.ended)
                if self.failure is not None:
                    raise ResultsClosedError(self.failure)
                if not self.batches:
                    return
                batch = self.batches.popleft()
                self._changed.notify_all()
            yield batch
