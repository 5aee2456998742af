"""RecordWriter: partitions a task's output buffers over the channels of one output edge.

Records are appended to per-channel pending lists a whole buffer at a time; full lists are sent as one
network buffer each. Routing per kind: forward (one channel), broadcast (all channels get the buffer),
rebalance (round robin, by slicing), shuffle (uniformly random), hash (key group of the record's key,
then the key group's owning subtask).

A writer whose edge joins two columnar operators over a keyless partitioner (``columnar=True``, decided by the task
at deployment) also takes whole buffers of columns (``add_columns``): they are routed a buffer at a time --
forward and broadcast as for records, rebalance to the channel sent the fewest rows so far, shuffle to a random
channel -- and sent as one network buffer each (small neighbours concatenated first), never as records.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any, Protocol
from zlib import crc32

from state.keygroups import channel_table, key_bytes
from weir.datastream.functions import KeySelector, callable_of
from weir.graph.transformation import PartitionerSpec


class OutputChannel(Protocol):
    async def send(self, values: list[Any], timestamps: list[int] | None) -> None: ...
    async def send_columns(self, cols: Any, shape: Any, timestamps: list[int] | None) -> None: ...
    async def event(self, ev: tuple[str, Any]) -> None: ...
    async def end(self) -> None: ...


CHANNEL_CACHE_LIMIT = 100_000

COLUMNAR_PARTITIONERS = frozenset({"forward", "rebalance", "shuffle", "broadcast"})
"""Partitioners that route without looking at a record: buffers of columns can cross them as columns."""


def _key_channel(k: Any, table: Sequence[int], max_parallelism: int) -> int:
    """The channel owning key ``k``'s key group (the same function as ``state.keygroups.key_group_for``)."""
    t = type(k)
    if t is str:
        g = crc32(k.encode("utf-8", "surrogatepass")) % max_parallelism
    elif t is int:
        g = crc32(b"i%d" % k) % max_parallelism
    else:
        g = crc32(key_bytes(k)) % max_parallelism
    return table[g]


def hash_partition(
    values: Sequence[Any], key_fn: Callable[[Any], Any], table: Sequence[int], max_parallelism: int, n: int,
    cache: dict[Any, int] | None = None, timestamps: Sequence[int] | None = None,
) -> tuple[list[list[Any]], list[list[int]] | None]:
    """Split ``values`` (and ``timestamps``, aligned with them) by the subtask owning each record's key group
    (stable across processes); order within a channel is kept.

    ``cache`` remembers the channel of recently seen keys: a dict lookup instead of encoding and hashing the key
    again (hot keys repeat); it is bounded by CHANNEL_CACHE_LIMIT entries.
    """
    out: list[list[Any]] = [[] for _ in range(n)]
    appends = [o.append for o in out]
    if cache is None:
        cache = {}
    get = cache.get
    ts_out: list[list[int]] | None = None
    if timestamps is None:
        for v in values:
            k = key_fn(v)
            try:
                ch = get(k)
            except TypeError:  # unhashable: key_bytes raises the error that explains it
                ch = None
            if ch is None:
                ch = _key_channel(k, table, max_parallelism)
                if len(cache) < CHANNEL_CACHE_LIMIT:
                    cache[k] = ch
            appends[ch](v)
        return out, None
    ts_out = [[] for _ in range(n)]
    ts_appends = [o.append for o in ts_out]
    for v, t in zip(values, timestamps, strict=True):
        k = key_fn(v)
        try:
            ch = get(k)
        except TypeError:
            ch = None
        if ch is None:
            ch = _key_channel(k, table, max_parallelism)
            if len(cache) < CHANNEL_CACHE_LIMIT:
                cache[k] = ch
        appends[ch](v)
        ts_appends[ch](t)
    return out, ts_out


class RecordWriter:
    """Output of a task on one edge: pending buffers per channel, sent when full or on flush."""

    def __init__(
        self,
        spec: PartitionerSpec,
        channels: Sequence[OutputChannel],
        max_parallelism: int,
        buffer_records: int,
        columnar: bool = False,
    ) -> None:
        """Args:
            spec: the edge's partitioner.
            channels: one output channel per consumer subtask this producer sends to.
            max_parallelism: the consumer's, whose key groups a hash partitioner routes by.
            buffer_records: records (rows) per network buffer.
            columnar: the writer takes buffers of columns (``add_columns``) and sends them as columns; only for
                partitioners in ``COLUMNAR_PARTITIONERS``.
        """
        if columnar and spec.kind not in COLUMNAR_PARTITIONERS:
            raise ValueError(f"a {spec.kind} partitioner needs records' keys: it cannot route columns")
        self.kind = spec.kind
        self.columnar = columnar
        self.channels = channels
        self.n = len(channels)
        self.buffer_records = buffer_records
        self.max_parallelism = max_parallelism
        self.key_fn = callable_of(spec.key_selector, KeySelector, "get_key") if spec.kind == "hash" else None
        self.table = channel_table(max_parallelism, self.n) if spec.kind == "hash" else []
        self.values: list[list[Any]] = [[] for _ in range(self.n)]
        self.timestamps: list[list[int] | None] = [None] * self.n
        self._rr = 0
        self._channels: dict[Any, int] = {}  # key -> channel, for keys seen recently
        self.records_out = 0
        self.pending = 0  # records added and not yet sent
        # columnar mode: per channel, buffers of columns (cols, shape, timestamps) waiting, and their rows
        self.pieces: list[list[tuple[Any, Any, list[int] | None]]] = [[] for _ in range(self.n)]
        self.piece_rows = [0] * self.n
        self._rows_sent = [0] * self.n  # rows routed to each channel by rebalance
        self.columnar_buffers_out = 0

    def add(self, values: list[Any], timestamps: list[int] | None) -> None:
        if not values:
            return
        n = self.n
        self.pending += len(values) * (n if self.kind == "broadcast" else 1)
        if timestamps is None and any(t is not None for t in self.timestamps):
            timestamps = [None] * len(values)  # type: ignore[list-item] # keep the lists aligned
        if timestamps is not None:
            self._add_timestamped(values, timestamps)
            return
        if n == 1:
            self.values[0].extend(values)
        elif self.kind == "hash":
            assert self.key_fn is not None
            parts, _ = hash_partition(values, self.key_fn, self.table, self.max_parallelism, n, self._channels)
            for i, part in enumerate(parts):
                if part:
                    self.values[i].extend(part)
        elif self.kind == "rebalance":
            rr = self._rr
            for k in range(min(n, len(values))):
                self.values[(rr + k) % n].extend(values[k::n])
            self._rr = (rr + len(values)) % n
        elif self.kind == "broadcast":
            for lst in self.values:
                lst.extend(values)
        else:  # shuffle
            r = random.randrange
            vs = self.values
            for v in values:
                vs[r(n)].append(v)

    def _add_timestamped(self, values: list[Any], timestamps: list[int]) -> None:
        n = self.n
        for i in range(n):
            if self.timestamps[i] is None:
                # timestamps run parallel to values; earlier untimestamped records get None
                self.timestamps[i] = [None] * len(self.values[i])  # type: ignore[list-item]
        if n == 1 or self.kind == "broadcast":
            for i in range(n):
                self.values[i].extend(values)
                self.timestamps[i].extend(timestamps)  # type: ignore[union-attr]
            return
        if self.kind == "hash":
            assert self.key_fn is not None
            parts, ts_parts = hash_partition(values, self.key_fn, self.table, self.max_parallelism, n,
                                             self._channels, timestamps)
            assert ts_parts is not None
            for i, part in enumerate(parts):
                if part:
                    self.values[i].extend(part)
                    self.timestamps[i].extend(ts_parts[i])  # type: ignore[union-attr]
            return
        if self.kind == "rebalance":
            rr = self._rr
            idx = [(rr + k) % n for k in range(len(values))]
            self._rr = (rr + len(values)) % n
        else:
            idx = [random.randrange(n) for _ in values]
        vs, ts = self.values, self.timestamps
        for c, v, t in zip(idx, values, timestamps, strict=True):
            vs[c].append(v)
            ts[c].append(t)  # type: ignore[union-attr]

    def add_columns(self, cols: Any, shape: Any, timestamps: list[int] | None) -> None:
        """A buffer of columns (``weir.common.columnar.Columns`` of records of ``shape``), routed whole.

        Only a ``columnar`` writer takes columns, and the task then hands it nothing but columns, so the order of
        a channel's buffers is the order they were added in.
        """
        rows = cols.num_rows
        if not rows:
            return
        n = self.n
        if n == 1:
            c = 0
        elif self.kind == "broadcast":
            from weir.common.columnar import share

            self.pending += rows * n
            for i in range(n):
                self.pieces[i].append((cols if i == 0 else share(cols), shape, timestamps))
                self.piece_rows[i] += rows
            return
        elif self.kind == "rebalance":
            # whole buffers cannot go round robin record by record: the channel with the fewest rows so far
            sent = self._rows_sent
            c = sent.index(min(sent))
            sent[c] += rows
        else:  # shuffle
            c = random.randrange(n)
        self.pending += rows
        self.pieces[c].append((cols, shape, timestamps))
        self.piece_rows[c] += rows

    def has_full(self) -> bool:
        if self.columnar:
            size = self.buffer_records
            return any(r >= size for r in self.piece_rows)
        return any(len(v) >= self.buffer_records for v in self.values)

    async def flush(self, force: bool) -> None:
        """Send full buffers (and, with ``force``, partly filled ones too). Waits for credit."""
        if self.pending == 0:
            return
        size = self.buffer_records
        if self.columnar:
            await self._flush_columns(force)
        for i, vals in enumerate(self.values):
            if not vals or (len(vals) < size and not force):
                continue
            ts = self.timestamps[i]
            ch = self.channels[i]
            if len(vals) <= size:
                self.values[i] = []
                self.timestamps[i] = None
                await ch.send(vals, ts)
                self.records_out += len(vals)
                self.pending -= len(vals)
                continue
            # send whole buffers; keep a partial tail unless forced
            end = len(vals) if force else len(vals) - len(vals) % size
            for s in range(0, end, size):
                chunk = vals[s : s + size]
                await ch.send(chunk, ts[s : s + size] if ts is not None else None)
                self.records_out += len(chunk)
                self.pending -= len(chunk)
            self.values[i] = vals[end:]
            self.timestamps[i] = ts[end:] if ts is not None and end < len(vals) else None

    async def _flush_columns(self, force: bool) -> None:
        """Send each channel's waiting columns once they make a buffer's worth of rows (or with ``force``):
        neighbours of one shape and schema concatenated, so a filter's small outputs still travel as few buffers."""
        size = self.buffer_records
        for i, pieces in enumerate(self.pieces):
            if not pieces or (self.piece_rows[i] < size and not force):
                continue
            self.pieces[i] = []
            self.piece_rows[i] = 0
            if len(pieces) > 1:
                from weir.common.columnar import concat_pieces

                pieces = concat_pieces(pieces)
            ch = self.channels[i]
            for cols, shape, ts in pieces:
                rows = cols.num_rows
                await ch.send_columns(cols, shape, ts)
                self.records_out += rows
                self.pending -= rows
                self.columnar_buffers_out += 1

    async def broadcast_event(self, ev: tuple[str, Any]) -> None:
        """Send ``ev`` on every channel, after everything added before it (watermarks, idleness)."""
        await self.flush(force=True)
        for ch in self.channels:
            await ch.event(ev)

    async def end(self) -> None:
        await self.flush(force=True)
        for ch in self.channels:
            await ch.end()
