"""RocksDB checkpoints with an overlay (``state/rocksdb.py``: ``RocksDBKeyedStateBackend.snapshot``): the entries
changed since the last checkpoint travel as a pickled file next to the native checkpoint and stay unwritten in the
cache; the entries the last overlay held and nothing changed since are written into the DB by the next checkpoint.

Checked: restore (same key groups, rescaled, into either backend) gives the state at the barrier, deletes and
updates in the overlay included; entries created and deleted between checkpoints never reach the DB; an entry reaches
the DB one checkpoint after it last changed; a damaged overlay is a clear error.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from state.keygroups import key_group_for
from state.rocksdb import RocksDBKeyedStateBackend, RocksDBTable
from state.snapshot import CorruptStateError, KeyedStateHandle
from tests.unit.test_state_rocksdb import counted_reads
from tests.unit.test_state_snapshot import ALL, MP, Env, dump

pytestmark = pytest.mark.timeout(60)

HALVES = [range(0, MP // 2), range(MP // 2, MP)]


def overlay_file(h: KeyedStateHandle) -> Any:
    found = [f for f in h.files if h.meta["local_names"][f.path] == "WEIR-OVERLAY"]
    assert len(found) <= 1
    return found[0] if found else None


def db_entries(t: RocksDBTable) -> int:
    """Entries in the table's column family itself (no flush: what the DB holds now)."""
    return sum(1 for _ in t._cf.keys())  # noqa: SIM118 - an Rdict


def in_groups(d: dict[tuple[Any, Any], Any], key_groups: range) -> dict[tuple[Any, Any], Any]:
    return {k: v for k, v in d.items() if key_group_for(k[0], MP) in key_groups}


def test_restore_applies_the_overlays_updates_deletes_and_new_entries(env: Env) -> None:
    b = env.backend("rocksdb")
    assert isinstance(b, RocksDBKeyedStateBackend)
    t = b.table("t")
    model: dict[tuple[Any, Any], Any] = {}
    for i in range(400):
        t[(f"k{i}", None)] = model[(f"k{i}", None)] = [i]
    b.flush()  # in the DB
    for i in range(0, 400, 3):
        del t[(f"k{i}", None)]  # deletes of entries the DB holds
        del model[(f"k{i}", None)]
    for i in range(1, 400, 3):
        t[(f"k{i}", None)] = model[(f"k{i}", None)] = ["updated", i]
    for i in range(400, 500):
        t.put_new((f"k{i}", None), [i])  # entries the DB never had
        model[(f"k{i}", None)] = [i]
    h = env.checkpoint(b, 1)
    f = overlay_file(h)
    assert f is not None and not f.shared
    for i in range(0, 400, 3):
        t[(f"k{i}", None)] = ["after the barrier"]  # must not reach the checkpoint

    same = env.restored("rocksdb", [h])  # native: the files become the database, the overlay written over it
    assert dump(same)["t"] == model
    assert dump(env.restored("hashmap", [h]))["t"] == model
    for half in HALVES:  # rescaled: the entries of half the key groups, from the DB and from the overlay
        expected = in_groups(model, half)
        assert expected
        for kind in ("rocksdb", "hashmap"):
            assert dump(env.restored(kind, [h], half))["t"] == expected
    # and the restored backends work on: the next checkpoint of the native restore has the same state
    assert dump(env.restored("hashmap", [env.checkpoint(same, 2)]))["t"] == model


def test_entries_created_and_deleted_between_checkpoints_never_reach_the_db(env: Env) -> None:
    b = env.backend("rocksdb")
    assert isinstance(b, RocksDBKeyedStateBackend)
    t = b.table("t")
    for window in range(4):
        for i in range(1000):
            t.put_new((i, window), i)  # a window opens ...
        if window:
            for i in range(1000):
                assert t.pop((i, window - 1)) == i  # ... the last one fires
        h = env.checkpoint(b, window + 1)
        assert db_entries(t) == 0
        assert dump(env.restored("hashmap", [h]))["t"] == {(i, window): i for i in range(1000)}


def test_an_entry_reaches_the_db_one_checkpoint_after_it_last_changed(env: Env) -> None:
    b = env.backend("rocksdb")
    assert isinstance(b, RocksDBKeyedStateBackend)
    t = b.table("t")
    t[("a", None)] = 1
    t[("b", None)] = 1
    h1 = env.checkpoint(b, 1)
    assert overlay_file(h1) is not None and db_entries(t) == 0
    t[("b", None)] = 2  # changed again: stays in the overlay
    h2 = env.checkpoint(b, 2)
    assert db_entries(t) == 1  # "a", written out by checkpoint 2, in its native checkpoint
    h3 = env.checkpoint(b, 3)
    assert db_entries(t) == 2 and overlay_file(h3) is None
    for h, b_value in ((h1, 1), (h2, 2), (h3, 2)):
        assert dump(env.restored("rocksdb", [h]))["t"] == {("a", None): 1, ("b", None): b_value}


def test_an_entry_held_in_an_overlay_then_deleted_is_gone(env: Env) -> None:
    b = env.backend("rocksdb")
    assert isinstance(b, RocksDBKeyedStateBackend)
    t = b.table("t")
    t.put_new(("new", 0), "x")
    t[("old", 0)] = "y"
    b.flush()
    t.put_new(("new", 1), "x")
    h1 = env.checkpoint(b, 1)  # its overlay holds ("new", 1), the DB does not
    t.pop(("new", 1))  # never in the DB: forgotten, nothing to write out or delete
    t.pop(("old", 0))  # in the DB: a delete in the next overlay
    h2 = env.checkpoint(b, 2)
    h3 = env.checkpoint(b, 3)  # writes the delete out
    assert dump(env.restored("hashmap", [h1]))["t"] == {("new", 0): "x", ("old", 0): "y", ("new", 1): "x"}
    for h in (h2, h3):
        assert dump(env.restored("rocksdb", [h]))["t"] == {("new", 0): "x"}
    assert db_entries(t) == 1 and b.dirty_entries() == 0
    assert t.get(("old", 0)) is None and t.get(("new", 1)) is None


def test_a_damaged_overlay_is_a_clear_error(env: Env) -> None:
    b = env.backend("rocksdb")
    t = b.table("t")
    for i in range(100):
        t[(i, None)] = i
    h = env.checkpoint(b, 1)
    f = overlay_file(h)
    path = os.path.join(env.storage.root, f.path)
    with open(path, "r+b") as fh:  # same size, other bytes: the size check passes, the pickle does not
        fh.seek(max(0, f.size // 2))
        fh.write(b"\xff" * 8)
    for kind, groups in (("rocksdb", ALL), ("rocksdb", HALVES[0]), ("hashmap", ALL)):
        with pytest.raises(CorruptStateError, match="WEIR-OVERLAY"):
            env.restored(kind, [h], groups)


def test_a_table_whose_written_entries_are_all_deleted_again_reads_nothing_from_the_db(env: Env) -> None:
    b = env.backend("rocksdb", cache_entries=10)
    assert isinstance(b, RocksDBKeyedStateBackend)
    t = b.table("t")
    for i in range(8):
        t[(i, None)] = i
    b.flush()
    assert not t.db_empty and db_entries(t) == 8
    for i in range(8):
        del t[(i, None)]
    b.flush()  # the deletes are written: the DB holds nothing of the table again
    assert t.db_empty and db_entries(t) == 0
    with counted_reads(t) as reads:
        assert t.get((5, None)) is None
    assert reads == [0]


def test_a_delete_still_queued_is_applied_before_the_table_reads_the_db_again(env: Env) -> None:
    b = env.backend("rocksdb")
    assert isinstance(b, RocksDBKeyedStateBackend)
    t = b.table("t")
    t[("x", None)] = 1
    b.flush()  # "x" in the DB
    t.pop(("x", None))
    p1 = b.snapshot(1, ALL, env.local)  # its overlay holds the delete
    p2 = b.snapshot(2, ALL, env.local)  # its write-out holds it (not applied: no upload ran)
    assert t.db_empty  # every entry written is deleted, once the queue is applied
    t.put_new(("x", None), 5)
    assert t.pop(("x", None)) == 5  # forgotten: nothing marks "x" as deleted in the cache now
    t[("y", None)] = 1
    p3 = b.snapshot(3, ALL, env.local)  # "y" in its overlay
    # its write-out holds "y": the DB is read again from now on, so the queued delete of "x" must be applied first
    p4 = b.snapshot(4, ALL, env.local)
    assert not t.db_empty
    assert t.get(("x", None)) is None and t.get(("y", None)) == 1
    for p in (p1, p2, p3, p4):
        p.discard()


@pytest.mark.parametrize("key_groups", [ALL, HALVES[1]], ids=["same-key-groups", "rescaled"])
def test_a_restored_table_knows_its_keys_and_is_empty_again_once_they_are_gone(
    env: Env, key_groups: range
) -> None:
    b = env.backend("rocksdb")
    t = b.table("t")
    for i in range(50):
        t.put_new((f"k{i}", 0), i)  # windows open at the checkpoint
    h = env.checkpoint(b, 1)
    r = env.restored("rocksdb", [h], key_groups)
    assert isinstance(r, RocksDBKeyedStateBackend)
    rt = r.table("t")
    restored = {k for k in ((f"k{i}", 0) for i in range(50)) if key_group_for(k[0], MP) in key_groups}
    assert rt._in_db == restored and not rt.db_empty
    for k in restored:
        rt.pop(k)  # the restored windows fire
    env.checkpoint(r, 2)  # (the deletes in its overlay)
    env.checkpoint(r, 3)  # (written out)
    assert rt.db_empty and db_entries(rt) == 0
    assert rt.get(("k1", 0)) is None


def test_a_restored_table_larger_than_the_cache_budget_does_not_know(env: Env) -> None:
    b = env.backend("rocksdb")
    t = b.table("t")
    for i in range(30):
        t[(i, None)] = i
    r = env.restored("rocksdb", [env.checkpoint(b, 1)], ALL, cache_entries=10)
    assert isinstance(r, RocksDBKeyedStateBackend)
    assert r.table("t")._in_db is None and not r.table("t").db_empty
    assert dump(r)["t"] == {(i, None): i for i in range(30)}
