"""Timers: the processing-time service of a task and the timer service of a keyed operator.

Both are driven by the task's mailbox loop, so a timer never fires while a record is being processed.
Timers are grouped by timestamp -- a bucket per timestamp of the (key, namespace) pairs due then, and a heap of
distinct timestamps -- which costs one heap operation per distinct timestamp instead of one per (key, window), the
common case of windows ending together (measured 2.5x faster than a heap entry per timer). A timestamp's first
timer is kept as a 1-tuple and its bucket becomes a dict at the second, so timers alone at their millisecond (a
``KeyedProcessFunction``'s) cost no dict. Checkpoints take the timers as one blob per key group
(``timers_by_key_group``), which the keyed state backend stores as raw keyed state.
"""

from __future__ import annotations

import heapq
import itertools
import pickle
import time
from collections.abc import Callable, Iterable
from heapq import heappop, heappush
from typing import Any

from state.keygroups import key_group_for

MIN_TIME = -(2**63)
MAX_TIME = 2**63 - 1


def now_ms() -> int:
    return int(time.time() * 1000)


class ProcessingTimeService:
    """Callbacks at wall-clock times (ms) for one task; ``run_due`` is called by the mailbox loop."""

    def __init__(self, clock: Callable[[], int] = now_ms) -> None:
        self.clock = clock
        self._heap: list[tuple[int, int, Callable[[int], None]]] = []
        self._seq = itertools.count()

    def get_current_processing_time(self) -> int:
        return self.clock()

    def schedule(self, at_ms: int, callback: Callable[[int], None]) -> None:
        heapq.heappush(self._heap, (at_ms, next(self._seq), callback))

    def next_deadline(self) -> int | None:
        return self._heap[0][0] if self._heap else None

    def run_due(self) -> int:
        """Run every callback whose time has come (each gets its scheduled time); returns how many ran."""
        n = 0
        heap = self._heap
        while heap and heap[0][0] <= self.clock():
            at, _, cb = heapq.heappop(heap)
            cb(at)
            n += 1
        return n


class _TimerQueue:
    """Timers of one time domain, deduplicated per (key, namespace, timestamp), firing in timestamp order.

    Attributes:
        by_ts: timestamp -> its *bucket*, the ``(key, namespace)`` pairs due then, in registration order. A bucket
            is a 1-tuple ``((key, namespace),)`` while it holds one timer and a dict ``{(key, namespace): None}``
            from its second: most timers of a ``KeyedProcessFunction`` are alone at their millisecond, and a tuple
            costs a fraction of a dict to make and to keep. Either supports ``pair in bucket``, ``len`` and
            iteration over the pairs, which is all a reader may use (the window fast path reads ``by_ts``
            directly); only this class changes buckets.
        heap: the distinct timestamps, a heap; an entry whose bucket was emptied by ``remove`` stays until
            popped (then skipped).
        added: timers ever added (not counting duplicates).
        removed: timers ever removed or popped. ``added - removed`` is the number pending, and the pair
            ``(added, removed)`` changes with every change of the queue's content.
    """

    __slots__ = ("added", "by_ts", "heap", "removed")

    def __init__(self) -> None:
        self.by_ts: dict[int, tuple[tuple[Any, Any]] | dict[tuple[Any, Any], None]] = {}
        self.heap: list[int] = []
        self.added = 0
        self.removed = 0

    def add(self, key: Any, ns: Any, ts: int) -> bool:
        """Adds the timer (a no-op if it exists); returns True when ``ts`` is a new timestamp.

        A new timestamp may need scheduling by the caller (processing time).
        """
        by_ts = self.by_ts
        bucket = by_ts.get(ts)
        if bucket is None:
            by_ts[ts] = ((key, ns),)
            heappush(self.heap, ts)
            self.added += 1
            return True
        pair = (key, ns)
        if type(bucket) is tuple:
            first = bucket[0]
            if first != pair:
                by_ts[ts] = {first: None, pair: None}
                self.added += 1
        elif pair not in bucket:
            bucket[pair] = None  # type: ignore[index]
            self.added += 1
        return False

    def remove(self, key: Any, ns: Any, ts: int) -> None:
        """Deletes the timer if it exists."""
        by_ts = self.by_ts
        bucket = by_ts.get(ts)
        if bucket is None:
            return
        pair = (key, ns)
        if type(bucket) is tuple:
            if bucket[0] == pair:
                del by_ts[ts]  # its heap entry is skipped when popped
                self.removed += 1
        elif pair in bucket:
            del bucket[pair]  # type: ignore[union-attr]
            self.removed += 1
            if not bucket:
                del by_ts[ts]

    def pop_due(self, until: int) -> tuple[int, tuple[tuple[Any, Any]] | dict[tuple[Any, Any], None]] | None:
        """Removes and returns the earliest ``(timestamp, bucket)`` with timestamp <= ``until``, or None."""
        heap = self.heap
        while heap and heap[0] <= until:
            ts = heappop(heap)
            bucket = self.by_ts.pop(ts, None)
            if bucket:
                self.removed += len(bucket)
                return ts, bucket
        return None

    def clear(self) -> None:
        """Drops every timer (the counters stay monotonic)."""
        self.by_ts.clear()
        self.heap.clear()
        self.removed = self.added

    def __len__(self) -> int:
        return self.added - self.removed

    @property
    def earliest(self) -> int | None:
        """The earliest pending timestamp (None without timers)."""
        heap = self.heap
        while heap and heap[0] not in self.by_ts:
            heappop(heap)
        return heap[0] if heap else None


class InternalTimerService:
    """Event- and processing-time timers of one keyed operator instance.

    ``on_event_timer(key, namespace, ts)`` and ``on_processing_timer(key, namespace, ts)`` are the operator's
    callbacks; the service sets nothing itself -- the operator makes ``key`` current before user code runs.
    """

    def __init__(
        self,
        processing_time: ProcessingTimeService,
        on_event_timer: Callable[[Any, Any, int], None],
        on_processing_timer: Callable[[Any, Any, int], None],
    ) -> None:
        self.pts = processing_time
        self.on_event_timer = on_event_timer
        self.on_processing_timer = on_processing_timer
        self.event = _TimerQueue()
        self.processing = _TimerQueue()
        self.current_watermark = MIN_TIME
        # set by an operator that fires a whole timestamp's event-time timers at once (ts, bucket): the
        # tumbling-window fast path, whose every timer at a timestamp means the same thing (emit and clean up)
        self.on_event_bucket: Callable[[int, Any], None] | None = None

    def register_event_time_timer(self, key: Any, ns: Any, ts: int) -> None:
        self.event.add(key, ns, ts)

    def delete_event_time_timer(self, key: Any, ns: Any, ts: int) -> None:
        self.event.remove(key, ns, ts)

    def register_processing_time_timer(self, key: Any, ns: Any, ts: int) -> None:
        if self.processing.add(key, ns, ts):
            self.pts.schedule(ts, self._fire_processing)

    def delete_processing_time_timer(self, key: Any, ns: Any, ts: int) -> None:
        self.processing.remove(key, ns, ts)

    def advance_watermark(self, watermark: int) -> None:
        """Fire every event-time timer with timestamp <= ``watermark``, in timestamp order.

        Timers registered while firing that are already due fire in the same call; a timer deleted while its
        timestamp's bucket fires still fires (the bucket was taken whole).
        """
        self.current_watermark = watermark
        cb = self.on_event_timer
        bulk = self.on_event_bucket
        q = self.event
        heap, pop = q.heap, q.by_ts.pop
        # pop_due, inlined: with one timer per timestamp (a KeyedProcessFunction's) this loop runs per timer
        while heap and heap[0] <= watermark:
            ts = heappop(heap)
            bucket = pop(ts, None)
            if bucket is None:
                continue  # emptied by remove, or a second heap entry of a timestamp that fired already
            q.removed += len(bucket)
            if bulk is not None:
                bulk(ts, bucket)
                continue
            for key, ns in bucket:
                cb(key, ns, ts)

    def _fire_processing(self, scheduled: int) -> None:
        now = self.pts.get_current_processing_time()
        cb = self.on_processing_timer
        while True:
            due = self.processing.pop_due(now)
            if due is None:
                return
            ts, bucket = due
            for key, ns in bucket:
                cb(key, ns, ts)

    def fire_all_processing_timers(self) -> None:
        """At end of input: processing-time timers do not fire (Flink), so they are dropped."""
        self.processing.clear()  # in place: ``version`` must keep counting up

    @property
    def pending(self) -> int:
        """Timers registered and not yet fired or deleted (both domains); O(1)."""
        return len(self.event) + len(self.processing)

    @property
    def version(self) -> tuple[int, int, int, int]:
        """Changes whenever the set of timers changes (and only goes up): equal versions, equal timers."""
        ev, pr = self.event, self.processing
        return ev.added, ev.removed, pr.added, pr.removed

    def entries(self) -> list[tuple[Any, Any, int, int]]:
        """Every timer as (key, namespace, timestamp, domain) with domain 0 = event time, 1 = processing time."""
        out: list[tuple[Any, Any, int, int]] = []
        for domain, q in ((0, self.event), (1, self.processing)):
            for ts, bucket in q.by_ts.items():
                out.extend((key, ns, ts, domain) for key, ns in bucket)
        return out

    def restore(self, entries: list[tuple[Any, Any, int, int]]) -> None:
        for key, ns, ts, domain in entries:
            if domain == 0:
                self.register_event_time_timer(key, ns, ts)
            else:
                self.register_processing_time_timer(key, ns, ts)


# ---------------------------------------------------------------------------------------------------------------
# Snapshots: one blob per key group
# ---------------------------------------------------------------------------------------------------------------

TIMER_BLOB_FORMAT = 1
"""The version of the per-key-group timer blob (first element of the pickled tuple)."""


_KG_MEMO_ENTRIES = 1 << 16


CapturedTimers = list[tuple[int, int, tuple[tuple[Any, Any], ...]]]
"""The timers of a service at one moment: ``(domain, timestamp, (key, namespace) pairs)`` per timestamp."""


def capture_timers(service: InternalTimerService) -> CapturedTimers:
    """The timers of ``service`` now, cheaply: one C-level copy per timestamp (a lone timer's bucket is an immutable
    tuple, shared). What ``timers_by_key_group`` needs, so that the grouping and pickling can run later, on
    another thread (a checkpoint's synchronous part only captures)."""
    out: CapturedTimers = []
    append = out.append
    for domain, q in ((0, service.event), (1, service.processing)):
        for ts, bucket in q.by_ts.items():
            append((domain, ts, bucket if type(bucket) is tuple else tuple(bucket)))
    return out


def timers_by_key_group(
    service: InternalTimerService | CapturedTimers, max_parallelism: int, memo: dict[Any, int] | None = None
) -> dict[int, bytes]:
    """The timers of ``service`` (or captured from one by ``capture_timers``) as one blob per key group that has
    any: ``key group -> blob``.

    A blob is ``pickle((TIMER_BLOB_FORMAT, [(domain, timestamp, pairs), ...]))`` with domain 0 = event time,
    1 = processing time, and ``pairs`` a tuple or list of the ``(key, namespace)`` pairs of that key group due at
    that timestamp. Taken whole at every checkpoint (the synchronous part): a pickle per key group instead of an
    entry per key in a state table, which RocksDB would encode and pickle one by one.

    ``memo`` (key -> key group, kept by the caller across checkpoints; emptied when it reaches 65,536 keys) saves
    hashing the same keys at every checkpoint. Keyed by the key itself: keys that compare equal share a key group
    whatever their types (``state.keygroups``), so a memo entry is right for every equal key.

    Raises:
        TypeError: a key or namespace cannot be pickled (names the timer).
    """
    if memo is None:
        memo = {}
    elif len(memo) >= _KG_MEMO_ENTRIES:
        memo.clear()
    known = memo.get
    kgf = key_group_for
    groups: dict[int, list[tuple[int, int, Any]]] = {}
    captured = capture_timers(service) if isinstance(service, InternalTimerService) else service
    for domain, ts, bucket in captured:
        if len(bucket) == 1:  # one timer at ts: the bucket is immutable, the blob may share it
            key = bucket[0][0]
            kg = known(key)
            if kg is None:
                kg = memo[key] = kgf(key, max_parallelism)
            g = groups.get(kg)
            if g is None:
                groups[kg] = [(domain, ts, bucket)]
            else:
                g.append((domain, ts, bucket))
            continue
        split: dict[int, list[tuple[Any, Any]]] = {}
        for pair in bucket:
            key = pair[0]
            kg = known(key)
            if kg is None:
                kg = memo[key] = kgf(key, max_parallelism)
            lst = split.get(kg)
            if lst is None:
                split[kg] = [pair]
            else:
                lst.append(pair)
        for kg, pairs in split.items():
            g = groups.get(kg)
            if g is None:
                groups[kg] = [(domain, ts, pairs)]
            else:
                g.append((domain, ts, pairs))
    dumps = pickle.dumps
    out: dict[int, bytes] = {}
    for kg, entries in groups.items():
        try:
            out[kg] = dumps((TIMER_BLOB_FORMAT, entries), 5)
        except Exception as e:
            raise TypeError(f"the timers cannot be snapshotted: {_unpicklable_timer(entries) or e}") from e
    return out


def _unpicklable_timer(entries: list[tuple[int, int, Any]]) -> str | None:
    for domain, ts, pairs in entries:
        for key, ns in pairs:
            try:
                pickle.dumps((key, ns), 5)
            except Exception as e:
                kind = "event" if domain == 0 else "processing"
                return f"the {kind}-time timer of key {key!r:.60} at {ts} (namespace {ns!r:.60}) cannot be pickled: {e}"
    return None


def restore_timers_from_blobs(service: InternalTimerService, blobs: Iterable[bytes]) -> None:
    """Registers every timer of ``blobs`` (made by ``timers_by_key_group``) with ``service``.

    Raises:
        ValueError: a blob is of an unknown format.
    """
    ev_add, pr_add = service.register_event_time_timer, service.register_processing_time_timer
    for blob in blobs:
        data = pickle.loads(blob)
        if type(data) is not tuple or len(data) != 2 or data[0] != TIMER_BLOB_FORMAT:
            raise ValueError(f"a timer snapshot of an unknown format: {data!r:.80}")
        for domain, ts, pairs in data[1]:
            add = ev_add if domain == 0 else pr_add
            for key, ns in pairs:
                add(key, ns, ts)
