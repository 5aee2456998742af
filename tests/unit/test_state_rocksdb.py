"""What only the RocksDB backend has: the DB key layout, the write-back cache, persistence across reopen."""

from __future__ import annotations

import contextlib
import os
import pickle
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from rocksdict import Options, Rdict

from state.backend import IncompatibleStateError
from state.keygroups import key_group_for
from state.rocksdb import DbKeyCodec, RocksDBKeyedStateBackend, RocksDBTable, decode_db_key, encode_db_key
from weir.common.time import Time
from weir.datastream.state import (
    AggregatingStateDescriptor,
    ListStateDescriptor,
    MapStateDescriptor,
    ReducingStateDescriptor,
    StateTtlConfig,
    ValueStateDescriptor,
)


@dataclass(frozen=True)
class Win:
    start: int
    end: int


class Sum:
    def create_accumulator(self) -> int:
        return 0

    def add(self, value: int, acc: int) -> int:
        return acc + value

    def get_result(self, acc: int) -> int:
        return acc

    def merge(self, a: int, b: int) -> int:
        return a + b


def _add(a: int, b: int) -> int:
    return a + b


def _raw_entries(path: Path, table: str) -> dict[bytes, bytes]:
    """Everything in one table's column family, read with a plain rocksdict (backend closed)."""
    o = Options(raw_mode=True)
    names = Rdict.list_cf(str(path))
    db = Rdict(str(path), o, column_families={n: o for n in names if n != "default"})
    cf = db.get_column_family("s." + table)
    out = {bytes(k): bytes(v) for k, v in cf.items()}  # type: ignore[arg-type]
    del cf
    db.close()
    return out


# ------------------------------------------------------------------------------------------------------------
# Layout
# ------------------------------------------------------------------------------------------------------------


def test_db_key_layout() -> None:
    for key, ns in [("user-1", None), (42, Win(0, 10)), (("a", 1), "ns"), (b"raw", (1, 2))]:
        data = encode_db_key((key, ns), 128)
        (kg,) = struct.unpack(">H", data[:2])
        assert kg == key_group_for(key, 128)
        (n,) = struct.unpack(">I", data[2:6])
        assert data[6 : 6 + n][:2] == b"\x80\x05"  # a pickle, protocol 5
        assert pickle.loads(data[6 : 6 + n]) == key
        (m,) = struct.unpack(">I", data[6 + n : 10 + n])
        assert len(data) == 10 + n + m
        assert pickle.loads(data[10 + n :]) == ns
        assert decode_db_key(data) == (kg, key, ns)


def test_equal_keys_encode_equally() -> None:
    codec = DbKeyCodec(128)
    a = "ab"
    b = "".join(["a", "b"])
    assert a == b and a is not b
    # plain pickle.dumps would memoize the shared object in the first tuple and not in the second
    assert pickle.dumps((a, a), 5) != pickle.dumps((a, b), 5)
    assert codec.encode(((a, a), None)) == codec.encode(((a, b), None))
    assert codec.encode(((a, a), (a, a))) == codec.encode(((b, a), (a, b)))
    # keys equal in Python share one entry, as in a dict
    assert codec.encode((1, None)) == codec.encode((True, None)) == codec.encode((1.0, None))
    assert codec.encode(((1, "x"), None)) == codec.encode(((1.0, "x"), None))
    assert codec.encode((1.5, None)) != codec.encode((1, None))
    with pytest.raises(TypeError, match=r"\(key, namespace\)"):
        codec.encode("not a pair")  # type: ignore[arg-type]


def test_key_group_prefix_orders_the_db(tmp_path: Path) -> None:
    b = RocksDBKeyedStateBackend(tmp_path / "db", max_parallelism=16)
    t = b.table("t")
    for i in range(200):
        t[(f"k{i}", None)] = i
    b.close()
    raw = _raw_entries(tmp_path / "db", "t")
    groups = [struct.unpack(">H", k[:2])[0] for k in raw]
    assert groups == sorted(groups) and len(set(groups)) > 8
    assert {decode_db_key(k)[1]: pickle.loads(v) for k, v in raw.items()} == {f"k{i}": i for i in range(200)}


# ------------------------------------------------------------------------------------------------------------
# Write-back cache
# ------------------------------------------------------------------------------------------------------------


def test_writes_stay_in_cache_until_flush(tmp_path: Path) -> None:
    b = RocksDBKeyedStateBackend(tmp_path / "db", cache_entries=1000)
    t = b.table("t")
    for i in range(10):
        t[(i, None)] = i
    assert b.dirty_entries() == 10 and b.cached_entries() == 10
    b.flush()
    assert b.dirty_entries() == 0 and b.cached_entries() == 10  # flushed entries stay cached, clean
    del t[(3, None)]
    assert b.dirty_entries() == 1
    b.close()
    assert {decode_db_key(k)[1] for k in _raw_entries(tmp_path / "db", "t")} == set(range(10)) - {3}


def test_small_cache_flushes_and_evicts(tmp_path: Path) -> None:
    b = RocksDBKeyedStateBackend(tmp_path / "db", cache_entries=3)
    t1, t2 = b.table("t1"), b.table("t2")
    for i in range(50):
        t1[(i, None)] = [i]
        t2[(i, "ns")] = {"i": i}
        assert b.cached_entries() <= 3  # the budget holds over all tables, after every operation
    assert b.dirty_entries() <= 3
    for i in range(50):  # reads of evicted entries come back from the DB
        assert t1[(i, None)] == [i]
        assert t2.get((i, "ns")) == {"i": i}
        assert b.cached_entries() <= 3
    for i in range(0, 50, 2):
        t1.discard((i, None))  # deletes reach the DB too
    assert [t1.get((i, None)) for i in range(6)] == [None, [1], None, [3], None, [5]]
    assert len(t1) == 25 and len(t2) == 50


@contextlib.contextmanager
def counted_reads(t: RocksDBTable) -> Iterator[list[int]]:
    """Counts the point reads ``t`` asks its column family for while the block runs: ``[n]``, filled at the end."""
    count = [0]
    real_cf, real_get = t._cf, t._cf.get

    class CountingCF:
        def get(self, key: bytes) -> Any:
            count[0] += 1
            return real_get(key)

    t._cf = CountingCF()  # type: ignore[assignment]
    try:
        yield count
    finally:
        t._cf = real_cf


@pytest.mark.parametrize("db_empty", [True, False], ids=["new-table", "table-in-db"])
def test_absence_is_cached(tmp_path: Path, db_empty: bool) -> None:
    b = RocksDBKeyedStateBackend(tmp_path / "db")
    t = b.table("t")
    assert t.db_empty
    if not db_empty:
        t[("other", None)] = 1
        b.flush()
        assert not t.db_empty
    with counted_reads(t) as reads:
        for _ in range(5):
            assert t.get(("never", None)) is None
            assert ("never", None) not in t
    assert reads == [0 if db_empty else 1]  # a table the DB holds nothing of is never read
    b.close()


def test_a_table_restored_or_written_out_is_read_from_the_db(tmp_path: Path) -> None:
    b = RocksDBKeyedStateBackend(tmp_path / "db")
    t = b.table("t")
    t.put_new(("a", None), 1)
    assert t.db_empty
    assert t.pop(("a", None)) == 1 and b.dirty_entries() == 0  # forgotten: nothing to delete in the DB
    t[("b", None)] = 2
    t[("c", None)] = 3
    b.flush()
    assert not t.db_empty
    t._cache.clear()  # (evicted)
    assert t.get(("b", None)) == 2
    del t[("b", None)]
    assert b.dirty_entries() == 1  # a delete for the DB
    b.close()
    again = RocksDBKeyedStateBackend(tmp_path / "db")  # the table exists on disk: not empty
    assert not again.table("t").db_empty and again.table("t").get(("c", None)) == 3
    again.close()


def test_write_back_in_place_changes(tmp_path: Path) -> None:
    b = RocksDBKeyedStateBackend(tmp_path / "db", cache_entries=1)
    t = b.table("t")
    t[("k", None)] = [1]
    lst = t[("k", None)]
    lst.append(2)
    t[("k", None)] = lst  # assignment marks the change dirty
    t[("other", None)] = 0  # evicts "k"
    assert t[("k", None)] == [1, 2]
    b.close()
    b = RocksDBKeyedStateBackend(tmp_path / "db", cache_entries=1)
    assert b.table("t")[("k", None)] == [1, 2]
    b.close()


def test_iteration_sees_cache_and_db(tmp_path: Path) -> None:
    b = RocksDBKeyedStateBackend(tmp_path / "db", cache_entries=4)
    t = b.table("t")
    for i in range(20):
        t[(i, Win(i, i + 1))] = i * i
    t[(0, Win(0, 1))] = "changed"
    del t[(19, Win(19, 20))]
    expected: dict[tuple[int, Win], Any] = {(i, Win(i, i + 1)): i * i for i in range(19)}
    expected[(0, Win(0, 1))] = "changed"
    assert dict(t.items()) == expected
    assert len(t) == 19 and set(t) == set(expected)
    # assigning while iterating is allowed (the iteration reads a snapshot)
    for k, v in t.items():
        if isinstance(v, int):
            t[k] = v + 1
    assert t[(3, Win(3, 4))] == 10


def test_unpicklable_value_fails_at_flush_with_its_key(tmp_path: Path) -> None:
    b = RocksDBKeyedStateBackend(tmp_path / "db")
    t = b.table("funcs")
    t[("k", None)] = lambda: 1
    with pytest.raises(TypeError, match="'funcs'.*'k'.*cannot be pickled"):
        b.flush()
    assert b.dirty_entries() == 1  # still there, not lost
    t[("k", None)] = 1
    b.flush()
    assert b.dirty_entries() == 0


def test_cache_entries_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cache_entries"):
        RocksDBKeyedStateBackend(tmp_path / "db", cache_entries=0)


# ------------------------------------------------------------------------------------------------------------
# Persistence
# ------------------------------------------------------------------------------------------------------------


def _descriptors() -> dict[str, Any]:
    d = ValueStateDescriptor("ttl")
    d.enable_time_to_live(StateTtlConfig.new_builder(Time.hours(1)).build())
    return {
        "value": ValueStateDescriptor("value"),
        "list": ListStateDescriptor("list"),
        "map": MapStateDescriptor("map"),
        "reducing": ReducingStateDescriptor("reducing", _add),
        "aggregating": AggregatingStateDescriptor("aggregating", Sum()),
        "ttl": d,
    }


def _handles(b: RocksDBKeyedStateBackend) -> dict[str, Any]:
    d = _descriptors()
    return {
        "value": b.get_state(d["value"]),
        "list": b.get_list_state(d["list"]),
        "map": b.get_map_state(d["map"]),
        "reducing": b.get_reducing_state(d["reducing"]),
        "aggregating": b.get_aggregating_state(d["aggregating"]),
        "ttl": b.get_state(d["ttl"]),
    }


@pytest.mark.parametrize("cache_entries", [3, 100_000])
def test_close_and_reopen_keeps_everything(tmp_path: Path, cache_entries: int) -> None:
    path = tmp_path / "db"
    clock = [1_000]
    b = RocksDBKeyedStateBackend(path, cache_entries=cache_entries, clock=lambda: clock[0])
    h = _handles(b)
    raw = b.table("window-contents")
    for k in range(30):
        b.current_key = k
        h["value"].update(f"v{k}")
        h["list"].add_all([k, k + 1])
        h["map"].put_all({"a": k, "b": -k})
        h["reducing"].add(k)
        h["reducing"].add(1)
        h["aggregating"].add(k)
        h["ttl"].update(k)
        raw[(k, Win(0, 10))] = [k]
    b.flush()
    b.close()
    b.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        raw.get((1, Win(0, 10)))

    b = RocksDBKeyedStateBackend(path, cache_entries=cache_entries, clock=lambda: clock[0])
    assert sorted(b.table_names()) == sorted(["value", "list", "map", "reducing", "aggregating", "ttl",
                                              "window-contents"])
    h = _handles(b)
    raw = b.table("window-contents")
    for k in range(30):
        b.current_key = k
        assert h["value"].value() == f"v{k}"
        assert h["list"].get() == [k, k + 1]
        assert sorted(h["map"].items()) == [("a", k), ("b", -k)]
        assert h["reducing"].get() == k + 1
        assert h["aggregating"].get() == k
        assert h["ttl"].value() == k
        assert raw[(k, Win(0, 10))] == [k]
    clock[0] += 3_600_000  # the timestamps were persisted with the values
    b.current_key = 5
    assert h["ttl"].value() is None
    b.dispose()
    assert not os.path.exists(path)


def test_close_without_explicit_flush_keeps_writes(tmp_path: Path) -> None:
    b = RocksDBKeyedStateBackend(tmp_path / "db")
    b.table("t")[("k", None)] = "v"
    b.close()  # close writes the cache and the memtables (the WAL is off)
    b = RocksDBKeyedStateBackend(tmp_path / "db")
    assert b.table("t")[("k", None)] == "v"
    b.close()


def test_reopen_refuses_another_kind_or_ttl(tmp_path: Path) -> None:
    b = RocksDBKeyedStateBackend(tmp_path / "db")
    b.get_state(ValueStateDescriptor("s"))
    b.close()
    b = RocksDBKeyedStateBackend(tmp_path / "db")
    with pytest.raises(IncompatibleStateError, match="holds value state without TTL"):
        b.get_list_state(ListStateDescriptor("s"))
    d = ValueStateDescriptor("s")
    d.enable_time_to_live(StateTtlConfig.new_builder(Time.seconds(1)).build())
    with pytest.raises(IncompatibleStateError, match="TTL"):
        b.get_state(d)
    assert b.get_state(ValueStateDescriptor("s")) is not None
    b.close()


def test_iter_key_group_reads_one_range(tmp_path: Path) -> None:
    mp = 32
    b = RocksDBKeyedStateBackend(tmp_path / "db", max_parallelism=mp, cache_entries=5)
    v = b.get_state(ValueStateDescriptor("v"))
    m = b.get_map_state(MapStateDescriptor("m"))
    for i in range(300):
        b.current_key = f"key-{i}"
        v.update(i)
        if i % 3 == 0:
            m.set_current_namespace(Win(i, i + 1))
            m.put("x", i)
    by_group: dict[int, set[tuple[str, Any, Any, Any]]] = {}
    for i in range(300):
        g = key_group_for(f"key-{i}", mp)
        by_group.setdefault(g, set()).add(("v", f"key-{i}", None, i))
        if i % 3 == 0:
            by_group[g].add(("m", f"key-{i}", Win(i, i + 1), (("x", i),)))
    for g in range(mp):
        got = {
            (n, k, ns, tuple(val.items()) if isinstance(val, dict) else val) for n, k, ns, val in b.iter_key_group(g)
        }
        assert got == by_group.get(g, set()), g
    with pytest.raises(ValueError, match="out of range"):
        list(b.iter_key_group(mp))
    b.dispose()


def test_dispose_removes_the_directory(tmp_path: Path) -> None:
    b = RocksDBKeyedStateBackend(tmp_path / "db")
    b.table("t")[(1, None)] = 1
    assert os.path.isdir(tmp_path / "db")
    b.dispose()
    assert not os.path.exists(tmp_path / "db")
    b.dispose()  # idempotent


def test_reopen_with_other_max_parallelism_is_refused(tmp_path: Path) -> None:
    b = RocksDBKeyedStateBackend(tmp_path / "db", max_parallelism=64)
    b.table("t")[("k", None)] = 1
    b.close()
    with pytest.raises(ValueError, match="max_parallelism 64"):
        RocksDBKeyedStateBackend(tmp_path / "db", max_parallelism=128)
    b = RocksDBKeyedStateBackend(tmp_path / "db", max_parallelism=64)  # the refused open released the DB
    assert b.table("t")[("k", None)] == 1
    b.close()


def test_one_database_one_backend(tmp_path: Path) -> None:
    b = RocksDBKeyedStateBackend(tmp_path / "db")
    with pytest.raises(RuntimeError, match="another backend"):
        RocksDBKeyedStateBackend(tmp_path / "db")
    b.close()
