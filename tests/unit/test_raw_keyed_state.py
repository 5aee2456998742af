"""Raw keyed state (``KeyedStateBackend.write_raw_state``: an opaque value per (name, key group)) in both backends:
checkpoints, savepoints, restore across backends and redistribution by key group when the parallelism changes."""

from __future__ import annotations

import pytest

from state.backend import AbstractKeyedStateBackend
from state.keygroups import key_group_range
from state.rocksdb import RocksDBKeyedStateBackend
from state.snapshot import CorruptStateError
from tests.unit.test_state_snapshot import ALL, BACKENDS, MP, Env, States, dump

KEYS = [f"k{i}" for i in range(40)]



def blobs_for(key_groups: range, tag: str) -> dict[int, bytes]:
    """A distinct value per key group (every third one left out, one empty value)."""
    out = {kg: f"{tag}-{kg}".encode() * (kg % 5 + 1) for kg in key_groups if kg % 3}
    if 2 in key_groups:
        out[2] = b""  # an empty value is a value
    return out


def raw_of(b: AbstractKeyedStateBackend) -> dict[str, dict[int, bytes]]:
    return {name: b.read_raw_state(name) for name in b.raw_state_names() if b.read_raw_state(name)}


@pytest.mark.parametrize("kind", BACKENDS)
def test_write_replaces_and_read_returns_a_copy(env: Env, kind: str) -> None:
    b = env.backend(kind)
    assert b.read_raw_state("t") == {} and b.raw_state_names() == []
    b.write_raw_state("t", {})  # nothing to write: nothing made
    assert b.raw_state_names() == []
    b.write_raw_state("t", {1: b"a", 5: b"b", 127: b"c"})
    b.write_raw_state("u", {1: b"other"})
    assert b.read_raw_state("t") == {1: b"a", 5: b"b", 127: b"c"}
    b.write_raw_state("t", {5: b"B", 9: b"new"})  # 1 and 127 dropped
    assert b.read_raw_state("t") == {5: b"B", 9: b"new"}
    got = b.read_raw_state("t")
    got[5] = b"changed"
    assert b.read_raw_state("t")[5] == b"B"
    assert sorted(b.raw_state_names()) == ["t", "u"] and b.read_raw_state("u") == {1: b"other"}
    b.write_raw_state("t", {})
    assert b.read_raw_state("t") == {}
    assert b.table_names() == []  # raw state is not a table
    assert all(list(b.iter_key_group(g)) == [] for g in (1, 5, 9))


@pytest.mark.parametrize("kind", BACKENDS)
def test_write_refuses_bad_key_groups_and_values(env: Env, kind: str) -> None:
    b = env.backend(kind)
    with pytest.raises(ValueError, match="out of range"):
        b.write_raw_state("t", {MP: b"x"})
    with pytest.raises(ValueError, match="out of range"):
        b.write_raw_state("t", {-1: b"x"})
    with pytest.raises(ValueError, match="not bytes"):
        b.write_raw_state("t", {0: "text"})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="name"):
        b.write_raw_state("", {0: b"x"})
    assert b.read_raw_state("t") == {}


@pytest.mark.parametrize("canonical", [False, True], ids=["checkpoint", "savepoint"])
@pytest.mark.parametrize("dst", BACKENDS)
@pytest.mark.parametrize("src", BACKENDS)
def test_round_trip_with_tables(env: Env, src: str, dst: str, canonical: bool) -> None:
    b = env.backend(src)
    States(b).fill(KEYS)
    b.write_raw_state("timers", blobs_for(ALL, "t"))
    b.write_raw_state("other", {7: b"seven"})
    tables = dump(b)
    h = env.checkpoint(b, 1, canonical=canonical)
    r = env.restored(dst, [h])
    assert raw_of(r) == {"timers": blobs_for(ALL, "t"), "other": {7: b"seven"}}
    assert dump(r) == tables
    # and again from the restored backend (a RocksDB one restored natively holds the column family)
    r2 = env.restored(src, [env.checkpoint(r, 2, canonical=canonical)])
    assert raw_of(r2) == raw_of(r)


@pytest.mark.parametrize("canonical", [False, True], ids=["checkpoint", "savepoint"])
@pytest.mark.parametrize("kind", BACKENDS)
def test_no_raw_state_leaves_the_file_as_before(env: Env, kind: str, canonical: bool) -> None:
    b = env.backend(kind)
    States(b).fill(KEYS)
    h = env.checkpoint(b, 1, canonical=canonical)
    assert "raw_index" not in h.meta
    for dst in BACKENDS:
        assert raw_of(env.restored(dst, [h])) == {}


@pytest.mark.parametrize("canonical", [False, True], ids=["checkpoint", "savepoint"])
@pytest.mark.parametrize("dst", BACKENDS)
@pytest.mark.parametrize("src", BACKENDS)
def test_rescale_splits_and_merges_by_key_group(env: Env, src: str, dst: str, canonical: bool) -> None:
    # p=2: each subtask holds the values of its own key groups
    olds = []
    for i in range(2):
        kgs = key_group_range(MP, 2, i)
        b = env.backend(src)
        b.write_raw_state("timers", blobs_for(kgs, "t"))
        olds.append(env.checkpoint(b, 1 + i, kgs, canonical))
    # 2 -> 1: merged
    one = env.restored(dst, olds)
    assert raw_of(one) == {"timers": blobs_for(ALL, "t")}
    # 1 -> 2 and 2 -> 3: split, each new subtask exactly its key groups
    h1 = env.checkpoint(one, 10, ALL, canonical)
    for p, handles in ((2, [h1]), (3, olds)):
        seen: dict[int, bytes] = {}
        for i in range(p):
            kgs = key_group_range(MP, p, i)
            r = env.restored(dst, handles, kgs)
            got = r.read_raw_state("timers")
            assert got == {kg: v for kg, v in blobs_for(ALL, "t").items() if kg in kgs}, (p, i)
            seen.update(got)
        assert seen == blobs_for(ALL, "t")


@pytest.mark.parametrize("src", BACKENDS)
def test_writes_after_the_synchronous_part_do_not_leak(env: Env, src: str) -> None:
    b = env.backend(src)
    b.write_raw_state("timers", {1: b"before", 2: b"gone later"})
    pending = b.snapshot(1, ALL, env.local)
    b.write_raw_state("timers", {1: b"after", 3: b"new"})
    b.flush()
    h = pending.upload(env.storage, "chk-1/op", "shared")
    for dst in BACKENDS:
        assert env.restored(dst, [h]).read_raw_state("timers") == {1: b"before", 2: b"gone later"}


@pytest.mark.parametrize("dst", BACKENDS)
@pytest.mark.parametrize("src", BACKENDS)
def test_corrupt_raw_value_fails_its_checksum_and_leaves_the_backend_empty(env: Env, src: str, dst: str) -> None:
    b = env.backend(src)
    States(b).fill(KEYS)
    b.write_raw_state("timers", blobs_for(ALL, "t"))
    h = env.checkpoint(b, 1, canonical=True)
    name, kg, offset, length, _ = h.meta["raw_index"][-1]
    p = env.storage.root / h.files[0].path
    data = bytearray(p.read_bytes())
    data[offset + length // 2] ^= 0xFF
    p.write_bytes(bytes(data))
    r = env.backend(dst)
    with pytest.raises(CorruptStateError, match=f"raw state '{name}' of key group {kg} fails its checksum"):
        r.restore([h], env.storage, ALL, env.local)
    assert dump(r) == {} and raw_of(r) == {}
    # other key groups still restore
    ok = env.restored(dst, [h], range(0, kg))
    assert ok.read_raw_state("timers") == {g: v for g, v in blobs_for(ALL, "t").items() if g < kg}


@pytest.mark.parametrize("kind", BACKENDS)
def test_restore_needs_a_backend_without_raw_state(env: Env, kind: str) -> None:
    b = env.backend(kind)
    b.write_raw_state("timers", {1: b"x"})
    h = env.checkpoint(b, 1)
    r = env.backend(kind)
    r.write_raw_state("timers", {2: b"y"})
    with pytest.raises(ValueError, match="empty backend"):
        r.restore([h], env.storage, ALL, env.local)


def test_rocksdb_raw_state_survives_reopening(env: Env) -> None:
    b = env.backend("rocksdb")
    b.write_raw_state("timers", {3: b"three"})
    assert isinstance(b, RocksDBKeyedStateBackend)
    path = b.path
    b.close()
    again = RocksDBKeyedStateBackend(path, MP, clock=env.clock)
    env.made.append(again)
    assert again.raw_state_names() == ["timers"] and again.read_raw_state("timers") == {3: b"three"}


def test_hashmap_dispose_drops_raw_state(env: Env) -> None:
    b = env.backend("hashmap")
    b.write_raw_state("timers", {3: b"three"})
    b.dispose()
    assert b.read_raw_state("timers") == {}


# ---------------------------------------------------------------------------------------------------------------
# write_raw_state_later: produced off the task's thread (RocksDB: by the checkpoint's upload)
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("canonical", [False, True], ids=["checkpoint", "savepoint"])
@pytest.mark.parametrize("kind", BACKENDS)
def test_a_later_write_is_produced_by_the_upload_and_is_the_state_at_the_barrier(
    env: Env, kind: str, canonical: bool
) -> None:
    import threading

    b = env.backend(kind)
    t = b.table("t")
    t[("a", None)] = 1
    b.write_raw_state("r", {1: b"old", 2: b"gone"})
    if isinstance(b, RocksDBKeyedStateBackend):
        b.flush()
        b.advance_write_out()  # (the mailbox thread advances write-outs: it must leave the producer alone)
    threads: list[int] = []
    captured = {1: b"one", 3: b"three"}  # what a producer reads: captured at the call

    def produce() -> dict[int, bytes]:
        threads.append(threading.get_ident())
        return dict(captured)

    b.write_raw_state_later("r", produce)
    p = b.snapshot(1, ALL, env.local, canonical=canonical)
    b.write_raw_state("r", {9: b"after the barrier"})  # queued behind: not in the checkpoint
    if isinstance(b, RocksDBKeyedStateBackend):
        b.advance_write_out()
        assert threads == []  # neither the synchronous part nor the mailbox's slices produced it
    h: list[object] = []
    up = threading.Thread(target=lambda: h.append(p.upload(env.storage, "chk-1", "shared")))
    up.start()
    up.join(30)
    assert h, "the upload failed"
    if isinstance(b, RocksDBKeyedStateBackend):
        assert threads == [up.ident]  # produced once, by the upload thread
    else:
        assert threads == [threading.get_ident()]  # in memory: at once
    restored = env.restored(kind, [h[0]])  # type: ignore[list-item]
    assert restored.read_raw_state("r") == {1: b"one", 3: b"three"}
    assert b.read_raw_state("r") == {9: b"after the barrier"}


def test_a_producer_that_raises_fails_the_checkpoint_until_the_state_is_written_again(env: Env) -> None:
    b = env.backend("rocksdb")
    assert isinstance(b, RocksDBKeyedStateBackend)
    b.write_raw_state("r", {1: b"old"})

    def broken() -> dict[int, bytes]:
        raise TypeError("cannot pickle '_thread.lock' object")

    b.write_raw_state_later("r", broken)
    with pytest.raises(RuntimeError, match="raw keyed state could not be written: 'r': TypeError: cannot pickle"):
        env.checkpoint(b, 1)
    with pytest.raises(RuntimeError, match="'r': TypeError"):  # the DB holds the old value: no checkpoint of it
        env.checkpoint(b, 2)
    b.write_raw_state_later("r", lambda: {4: b"four"})
    h = env.checkpoint(b, 3)
    assert env.restored("rocksdb", [h]).read_raw_state("r") == {4: b"four"}
