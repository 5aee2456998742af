"""RocksDB backend fast paths: the cache keeps live entries only, and the key codec's memo encodes as without it."""

from __future__ import annotations

from typing import Any

from state.rocksdb import DbKeyCodec, RocksDBKeyedStateBackend, encode_db_key


def db_items(backend: RocksDBKeyedStateBackend, name: str = "t") -> list[Any]:
    backend.flush()
    return list(backend.table(name).items())


def test_entries_created_and_deleted_between_flushes_leave_the_cache(tmp_path: Any) -> None:
    b = RocksDBKeyedStateBackend(str(tmp_path / "db"), cache_entries=1_000)
    t = b.table("t")
    for i in range(5_000):  # five times the cache budget, but never more than 10 live at once
        t.put_new((i, 0), i)
        if i >= 10:
            assert t.pop((i - 10, 0)) == i - 10
    assert b.cached_entries() == 10
    assert b.dirty_entries() == 10
    assert sorted(v for _, v in db_items(b)) == list(range(4_990, 5_000))
    b.close()


def test_a_flush_drops_the_deletes_it_wrote_from_the_cache(tmp_path: Any) -> None:
    b = RocksDBKeyedStateBackend(str(tmp_path / "db"), cache_entries=1_000)
    t = b.table("t")
    t[("a", 1)] = "x"
    t[("b", 1)] = "y"
    b.flush()
    del t[("a", 1)]
    b.flush()
    assert b.cached_entries() == 1  # ("b", 1): live, clean
    assert t.get(("a", 1)) is None  # read from the DB
    assert ("a", 1) not in t
    assert db_items(b) == [(("b", 1), "y")]
    b.close()


def test_put_new_over_a_pending_delete_still_deletes_in_the_db(tmp_path: Any) -> None:
    b = RocksDBKeyedStateBackend(str(tmp_path / "db"), cache_entries=1_000)
    t = b.table("t")
    t[("a", 1)] = "x"
    b.flush()  # in the DB now
    t.pop(("a", 1))  # a delete, pending
    t.put_new(("a", 1), "y")  # the caller thinks it is new; the pending delete says the DB holds it
    t.pop(("a", 1))
    assert db_items(b) == []
    b.close()
    b2 = RocksDBKeyedStateBackend(str(tmp_path / "db"), cache_entries=1_000)
    assert b2.table("t").get(("a", 1)) is None
    b2.close()


def test_overflow_keeps_the_newest_entries_and_loses_nothing(tmp_path: Any) -> None:
    b = RocksDBKeyedStateBackend(str(tmp_path / "db"), cache_entries=100)
    t = b.table("t")
    for i in range(1_000):
        t[(i, None)] = i
        if i % 3 == 0:
            t.pop((i, None))
    assert b.cached_entries() <= 100
    assert {k[0]: v for k, v in db_items(b)} == {i: i for i in range(1_000) if i % 3}
    b.close()


def test_the_memo_encodes_as_the_codec_without_it() -> None:
    codec = DbKeyCodec(128, memo_entries=3)  # a small memo: cleared again and again
    entries: list[tuple[Any, Any]] = [
        (1, None), (1, 60_000), ("k", 0), ("k", "ns"), (True, None), (1.0, 60_000), (2**70, -5), ((1, "a"), 3),
        (None, None), (b"x", ("t", 1)), ("é", 1), (-1, 0),
    ]
    for _ in range(3):
        for e in entries:
            assert codec.encode(e) == encode_db_key(e, 128) == DbKeyCodec(128).encode(e)
    assert codec.encode((True, None)) == codec.encode((1, None)) == codec.encode((1.0, None))


def test_pop_many_equals_pop_one_by_one(tmp_path: Any) -> None:
    results = []
    for many in (False, True):
        b = RocksDBKeyedStateBackend(str(tmp_path / f"db{many}"), cache_entries=4)
        t = b.table("t")
        for i in range(6):  # some written out and evicted by the small cache, some new, one in the DB then deleted
            t.put_new((i, 0), i)
        b.flush()
        t.pop((5, 0))
        t.put_new((6, 0), 6)
        keys = [(i, 0) for i in range(8)]
        miss = object()
        got = t.pop_many(keys, miss) if many else [t.pop(k, miss) for k in keys]
        results.append(([None if v is miss else v for v in got], db_items(b)))
        b.close()
    assert results[0] == results[1] == ([0, 1, 2, 3, 4, None, 6, None], [])


def test_hot_path_replacement_reaches_the_db(tmp_path: Any) -> None:
    b = RocksDBKeyedStateBackend(str(tmp_path / "db"), cache_entries=1_000)
    t = b.table("t")
    t.put_new(("a", 0), 1)
    b.flush()
    cache, dirty, _, absent = t.hot_path()
    assert cache.get(("a", 0), absent) == 1
    assert cache.get(("b", 0), absent) is absent
    cache[("a", 0)] = 2
    dirty.add(("a", 0))
    assert db_items(b) == [(("a", 0), 2)]
    b.close()
