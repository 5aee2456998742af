"""Credit-based flow control, as in Flink's network stack.

The receiver of a channel grants credits, one per buffer it has room for. A sender spends one credit per
buffer and, without credit, waits: a slow consumer stops its producers, and the stall travels upstream to the
sources. The receiver returns a credit each time its task has consumed a buffer, so at most ``initial``
buffers per channel are ever in flight or queued.
"""

from __future__ import annotations

import asyncio
import time


class ChannelClosedError(Exception):
    """The channel's receiver failed or went away; nothing more can be sent on it."""


class SenderCredit:
    """Credits a sender holds for one channel."""

    __slots__ = ("available", "bound", "_waiter", "_error", "waited")

    def __init__(self) -> None:
        self.available = 0
        self.waited = 0.0  # seconds spent without credit: backpressure
        self.bound = False  # the receiver has granted credit at least once: the channel is bound to its consumer
        self._waiter: asyncio.Future[None] | None = None
        self._error: BaseException | None = None

    def grant(self, n: int) -> None:
        if n <= 0:
            raise ValueError(f"a credit grant must be positive, got {n}")
        self.available += n
        self.bound = True
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def fail(self, error: BaseException) -> None:
        """Wake a waiting sender with ``error`` (the receiver or its connection is gone)."""
        self._error = error
        w = self._waiter
        if w is not None and not w.done():
            w.set_exception(error)

    def try_spend(self) -> bool:
        if self._error is not None:
            raise self._error
        if self.available > 0:
            self.available -= 1
            return True
        return False

    async def wait_bound(self) -> None:
        """Wait until the receiver has bound the channel (its first grant). Events and END need no credit,
        but the receiver drops frames of channels it has not bound yet."""
        while not self.bound:
            if self._error is not None:
                raise self._error
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    async def spend(self) -> None:
        """Spend one credit, waiting for a grant when there is none (this is where backpressure bites)."""
        if self.try_spend():
            return
        t0 = time.perf_counter()
        try:
            while not self.try_spend():
                self._waiter = asyncio.get_running_loop().create_future()
                try:
                    await self._waiter
                finally:
                    self._waiter = None
        finally:
            self.waited += time.perf_counter() - t0


class ReceiverCredit:
    """Credits a receiver has outstanding for one channel; decides when to grant more."""

    __slots__ = ("initial", "outstanding", "_to_return")

    def __init__(self, initial: int) -> None:
        if initial < 1:
            raise ValueError(f"initial credit must be >= 1, got {initial}")
        self.initial = initial
        self.outstanding = initial
        self._to_return = 0

    def on_buffer_received(self) -> None:
        if self.outstanding <= 0:
            raise ChannelClosedError("a buffer arrived without credit: the sender broke the protocol")
        self.outstanding -= 1

    def on_buffer_consumed(self) -> int:
        """A buffer was processed; returns how many credits to grant back now (0 or more)."""
        self._to_return += 1
        n, self._to_return = self._to_return, 0
        self.outstanding += n
        return n
