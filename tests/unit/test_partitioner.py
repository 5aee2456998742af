"""taskmanager.network.partitioner: hash_partition and RecordWriter with fake output channels."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from state.keygroups import channel_table, key_group_for, operator_index_for_key_group
from taskmanager.network.partitioner import RecordWriter, hash_partition
from weir.datastream.functions import KeySelector
from weir.graph.transformation import PartitionerSpec


class FakeChannel:
    """Records what a RecordWriter sends, in order ("send" entries and a final "end")."""

    def __init__(self) -> None:
        self.log: list[Any] = []

    async def send(self, values: list[Any], timestamps: list[int] | None) -> None:
        assert values, "a RecordWriter must never send an empty buffer"
        if timestamps is not None:
            assert len(timestamps) == len(values)
        self.log.append(("send", list(values), None if timestamps is None else list(timestamps)))

    async def end(self) -> None:
        self.log.append(("end",))

    @property
    def sends(self) -> list[tuple[list[Any], list[Any] | None]]:
        return [(e[1], e[2]) for e in self.log if e[0] == "send"]

    @property
    def values(self) -> list[Any]:
        return [v for vals, _ in self.sends for v in vals]

    @property
    def pairs(self) -> list[tuple[Any, Any]]:
        """(value, timestamp) of every record received; timestamp None when the buffer had none."""
        out = []
        for vals, ts in self.sends:
            out.extend(zip(vals, ts if ts is not None else [None] * len(vals), strict=True))
        return out


def writer(kind: str, n: int, buffer_records: int = 1000, key=None, max_par: int = 128):
    chans = [FakeChannel() for _ in range(n)]
    spec = PartitionerSpec(kind, key) if kind == "hash" else PartitionerSpec(kind)
    return RecordWriter(spec, chans, max_par, buffer_records), chans


def run(coro) -> None:
    asyncio.run(coro)


def owner(key: Any, max_par: int, n: int) -> int:
    return operator_index_for_key_group(key_group_for(key, max_par), max_par, n)


# ---- hash_partition ----

KEYS = [f"user-{i}" for i in range(50)] + list(range(50)) + [(i, "x") for i in range(20)] + [1.5, None, b"b"]


@pytest.mark.parametrize("n", [1, 2, 3, 8])
def test_hash_partition_agrees_with_keygroups(n):
    max_par = 128
    values = [(k, i) for i, k in enumerate(KEYS)]
    parts, no_ts = hash_partition(values, lambda v: v[0], channel_table(max_par, n), max_par, n)
    assert no_ts is None
    assert len(parts) == n
    assert sorted(v[1] for p in parts for v in p) == list(range(len(values)))
    for c, p in enumerate(parts):
        for v in p:
            assert owner(v[0], max_par, n) == c
        assert [v[1] for v in p] == sorted(v[1] for v in p), "order within a channel is kept"
    # with timestamps (and a warm channel cache the second time): each timestamp stays with its record
    cache: dict[Any, int] = {}
    for _ in range(2):
        parts2, ts_parts = hash_partition(values, lambda v: v[0], channel_table(max_par, n), max_par, n, cache,
                                          [1000 + v[1] for v in values])
        assert parts2 == parts
        assert ts_parts == [[1000 + v[1] for v in p] for p in parts]


def test_hash_partition_same_key_same_channel_across_batches():
    n, max_par = 4, 128
    table = channel_table(max_par, n)
    seen: dict[Any, int] = {}
    rng = random.Random(7)
    for _ in range(5):
        batch = [rng.choice(KEYS) for _ in range(100)]
        for c, part in enumerate(hash_partition(batch, lambda k: k, table, max_par, n)[0]):
            for k in part:
                assert seen.setdefault(k, c) == c


# ---- RecordWriter ----


def test_forward_single_channel_keeps_order():
    w, (ch,) = writer("forward", 1)
    w.add([1, 2, 3], None)
    w.add([4], None)
    run(w.flush(True))
    assert ch.sends == [([1, 2, 3, 4], None)]
    assert w.records_out == 4
    assert w.pending == 0


def test_rebalance_round_robin_continues_across_batches():
    n = 3
    w, chans = writer("rebalance", n)
    sizes = [1, 2, 10, 3, 1, 7]
    nxt = 0
    for s in sizes:
        w.add(list(range(nxt, nxt + s)), None)
        nxt += s
    run(w.flush(True))
    for c in range(n):
        assert chans[c].values == [i for i in range(nxt) if i % n == c]
    counts = [len(ch.values) for ch in chans]
    assert max(counts) - min(counts) <= 1


def test_rebalance_timestamped_round_robin_continues_untimestamped():
    n = 4
    w, chans = writer("rebalance", n)
    w.add([0, 1, 2], [0, 10, 20])
    w.add([3, 4, 5, 6, 7], None)
    w.add([8, 9], [80, 90])
    run(w.flush(True))
    for c in range(n):
        got = chans[c].pairs
        assert [v for v, _ in got] == [i for i in range(10) if i % n == c]
        for v, t in got:
            assert t == (None if 3 <= v <= 7 else v * 10)


def test_broadcast_every_channel_gets_everything():
    n = 3
    w, chans = writer("broadcast", n)
    w.add(["a", "b"], None)
    w.add(["c"], [5])
    assert w.pending == 3 * n
    run(w.flush(True))
    for ch in chans:
        assert ch.pairs == [("a", None), ("b", None), ("c", 5)]
    assert w.pending == 0


def test_shuffle_delivers_each_record_exactly_once():
    rng_state = random.getstate()
    random.seed(12345)
    try:
        n = 4
        w, chans = writer("shuffle", n)
        w.add(list(range(0, 600)), None)
        w.add(list(range(600, 1000)), [t * 2 for t in range(600, 1000)])
        run(w.flush(True))
    finally:
        random.setstate(rng_state)
    got = [v for ch in chans for v in ch.values]
    assert sorted(got) == list(range(1000))
    for ch in chans:
        assert ch.values, "1000 uniform picks over 4 channels leave none empty"
        assert ch.values == sorted(ch.values)
        for v, t in ch.pairs:
            assert t == (None if v < 600 else v * 2)
    assert w.records_out == 1000


@pytest.mark.parametrize("use_function_object", [False, True])
def test_hash_writer_routes_by_key_group(use_function_object):
    n, max_par = 3, 128
    if use_function_object:

        class First(KeySelector):
            def get_key(self, value):
                return value[0]

        key: Any = First()
    else:
        key = lambda v: v[0]  # noqa: E731
    w, chans = writer("hash", n, key=key, max_par=max_par)
    values = [(k, i) for i, k in enumerate(KEYS)]
    w.add(values[:40], None)
    w.add(values[40:80], [i for i in range(40, 80)])
    w.add(values[80:], None)
    run(w.flush(True))
    total = 0
    for c, ch in enumerate(chans):
        for (k, i), t in ch.pairs:
            assert owner(k, max_par, n) == c
            assert t == (i if 40 <= i < 80 else None)
            total += 1
        assert [v[1] for v in ch.values] == sorted(v[1] for v in ch.values)
    assert total == len(values)


def test_flush_without_force_sends_only_full_buffers():
    w, (ch,) = writer("forward", 1, buffer_records=4)
    w.add(list(range(10)), None)
    assert w.has_full()
    run(w.flush(False))
    assert ch.sends == [([0, 1, 2, 3], None), ([4, 5, 6, 7], None)]
    assert w.records_out == 8 and w.pending == 2
    assert not w.has_full()
    w.add([10], None)  # 3 pending: still not a full buffer
    run(w.flush(False))
    assert len(ch.sends) == 2
    w.add([11], None)  # exactly one full buffer
    run(w.flush(False))
    assert ch.sends[2:] == [([8, 9, 10, 11], None)]
    assert w.pending == 0
    w.add([12, 13], None)
    run(w.flush(True))
    assert ch.sends[3:] == [([12, 13], None)]
    assert w.records_out == 14


def test_forced_flush_of_oversized_buffer_splits_by_buffer_records():
    w, (ch,) = writer("forward", 1, buffer_records=4)
    w.add(list(range(9)), [t * 10 for t in range(9)])
    run(w.flush(True))
    assert [len(v) for v, _ in ch.sends] == [4, 4, 1]
    assert ch.pairs == [(i, i * 10) for i in range(9)]


def test_flush_on_multiple_channels_only_full_ones():
    w, chans = writer("rebalance", 2, buffer_records=3)
    w.add(list(range(7)), None)  # ch0: 0 2 4 6 (full + 1), ch1: 1 3 5 (full)
    run(w.flush(False))
    assert chans[0].sends == [([0, 2, 4], None)]
    assert chans[1].sends == [([1, 3, 5], None)]
    assert w.pending == 1
    run(w.flush(True))
    assert chans[0].sends[1:] == [([6], None)]


def test_timestamps_survive_partial_flush_and_mixing():
    w, (ch,) = writer("forward", 1, buffer_records=2)
    w.add([0, 1, 2], [0, 10, 20])
    run(w.flush(False))
    assert ch.sends == [([0, 1], [0, 10])]
    w.add([3], None)  # joins the timestamped tail [2]
    run(w.flush(False))
    assert ch.sends[1:] == [([2, 3], [20, None])]
    # once everything is sent, an untimestamped batch travels without a timestamp list
    w.add([4], None)
    run(w.flush(True))
    assert ch.sends[2:] == [([4], None)]


def test_untimestamped_then_timestamped_on_one_channel():
    w, (ch,) = writer("forward", 1)
    w.add(["a", "b"], None)
    w.add(["c"], [30])
    w.add(["d"], None)
    run(w.flush(True))
    assert ch.sends == [(["a", "b", "c", "d"], [None, None, 30, None])]


def test_flush_with_nothing_pending_sends_nothing():
    w, chans = writer("rebalance", 2)
    run(w.flush(True))
    w.add([], None)
    run(w.flush(True))
    assert all(ch.log == [] for ch in chans)
    assert w.records_out == 0


def test_end_flushes_then_sends_end_on_every_channel():
    n = 3
    w, chans = writer("rebalance", n, buffer_records=100)
    w.add(list(range(5)), None)  # ch0: 0 3, ch1: 1 4, ch2: 2
    run(w.end())
    for c, ch in enumerate(chans):
        assert ch.log[-1] == ("end",)
        assert [e for e in ch.log if e[0] == "end"] == [("end",)]
        assert ch.values == [i for i in range(5) if i % n == c]
        assert all(e[0] == "send" for e in ch.log[:-1])
    assert w.records_out == 5 and w.pending == 0


def test_end_without_data_sends_only_end():
    w, chans = writer("broadcast", 2)
    run(w.end())
    assert [ch.log for ch in chans] == [[("end",)], [("end",)]]
