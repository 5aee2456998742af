"""RocksDBTable.put_new: entries created without a read, and deleted before a flush, never reach the DB."""

from __future__ import annotations

from typing import Any

from state.rocksdb import RocksDBKeyedStateBackend


def db_entries(backend: RocksDBKeyedStateBackend) -> list[Any]:
    backend.flush()
    return list(backend.table("t").items())


def test_put_new_then_pop_before_a_flush_leaves_nothing(tmp_path: Any) -> None:
    b = RocksDBKeyedStateBackend(str(tmp_path / "db"), cache_entries=1_000)
    t = b.table("t")
    t.put_new(("a", 1), "x")
    t.put_new(("b", 1), "y")
    assert t.get(("a", 1)) == "x"
    assert t.pop(("a", 1)) == "x"
    assert ("a", 1) not in t
    assert not t._dirty - {("b", 1)}  # no delete is pending for an entry the DB never had
    assert db_entries(b) == [(("b", 1), "y")]
    b.close()


def test_put_new_flushed_then_deleted_is_deleted_in_the_db(tmp_path: Any) -> None:
    b = RocksDBKeyedStateBackend(str(tmp_path / "db"), cache_entries=1_000)
    t = b.table("t")
    t.put_new(("a", 1), "x")
    b.flush()  # now in the DB: a later delete must reach it
    t.pop(("a", 1))
    assert db_entries(b) == []
    b.close()
    b2 = RocksDBKeyedStateBackend(str(tmp_path / "db"), cache_entries=1_000)
    assert b2.table("t").get(("a", 1)) is None
    b2.close()
