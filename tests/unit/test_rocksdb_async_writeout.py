"""RocksDB checkpoints whose write-out runs in the upload thread (``state/rocksdb.py``: ``snapshot`` only captures
the changed entries -- into its overlay, or, when the last checkpoint's overlay held them and nothing changed since,
into a write-out; ``upload`` applies the queued write-outs in order and takes the native checkpoint).

Invariants checked: the checkpoint holds exactly the state at the barrier (later writes, in-place changes, raw
state writes and cache overflows do not reach it); reads while a write-out is queued or being applied see the latest
values; discarded and aborted snapshots still get their writes into the DB; close and dispose while an upload runs;
savepoints. ``Gate`` holds an upload inside its native checkpoint (after its writes, holding the write lock), so a
test can act at exactly that moment without sleeping.
"""

from __future__ import annotations

import copy
import os
import random
import threading
from pathlib import Path
from typing import Any

import pytest

import state.rocksdb as rocksdb_module
from state.rocksdb import RocksDBKeyedStateBackend
from tests.unit.test_state_snapshot import ALL, Env, dump

pytestmark = pytest.mark.timeout(60)



class Gate:
    """Replaces rocksdict's ``Checkpoint`` in ``state.rocksdb``: ``create_checkpoint`` signals ``entered`` and waits
    for ``release`` before making the checkpoint."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        real = rocksdb_module.Checkpoint
        gate = self

        class Held:
            def __init__(self, db: Any) -> None:
                self._real = real(db)

            def create_checkpoint(self, path: str) -> None:
                gate.entered.set()
                assert gate.release.wait(30), "the test never released the gate"
                self._real.create_checkpoint(path)

        monkeypatch.setattr(rocksdb_module, "Checkpoint", Held)


class Upload(threading.Thread):
    """``pending.upload`` in a thread, as the task runs it (``asyncio.to_thread``)."""

    def __init__(self, env: Env, pending: Any, cid: int) -> None:
        super().__init__(daemon=True)
        self.env, self.pending, self.cid = env, pending, cid
        self.handle: Any = None
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            self.handle = self.pending.upload(self.env.storage, f"chk-{self.cid}", "shared")
        except BaseException as e:  # noqa: BLE001 - the test looks at it
            self.error = e

    def result(self) -> Any:
        self.join(30)
        assert not self.is_alive()
        if self.error is not None:
            raise self.error
        return self.handle


def restored(env: Env, handle: Any, kind: str = "hashmap") -> tuple[dict[Any, Any], dict[int, bytes]]:
    """The table "t" and the raw state "r" a backend restored from ``handle`` holds."""
    b = env.restored(kind, [handle])
    return dump(b).get("t", {}), b.read_raw_state("r")


class Model:
    """Table "t" of a backend next to a dict of what it should hold; values are lists, changed in place and
    assigned back as the state handles do."""

    def __init__(self, b: RocksDBKeyedStateBackend) -> None:
        self.b, self.t = b, b.table("t")
        self.d: dict[Any, Any] = {}

    def put(self, i: int, v: Any) -> None:
        self.t[(i, None)] = [v]
        self.d[(i, None)] = [v]

    def put_new(self, i: int, v: Any) -> None:
        self.t.put_new((i, None), [v])
        self.d[(i, None)] = [v]

    def append(self, i: int, v: Any) -> None:
        lst = self.t[(i, None)]
        lst.append(v)  # in place, after the barrier: the checkpoint must not see it
        self.t[(i, None)] = lst
        self.d[(i, None)].append(v)

    def pop(self, i: int) -> None:
        assert self.t.pop((i, None)) == self.d.pop((i, None))

    def random_change(self, rng: random.Random, keys: int, tag: Any) -> int:
        """One random change of a key below ``keys``: a present entry is popped (30 %) or appended ``tag`` to, an
        absent one is put; the key."""
        i = rng.randrange(keys)
        if (i, None) in self.d:
            self.pop(i) if rng.random() < 0.3 else self.append(i, tag)
        else:
            self.put(i, tag)
        return i

    def barrier(self) -> dict[Any, Any]:
        return copy.deepcopy(self.d)

    def check_reads(self, keys: range) -> None:
        """Every key of ``keys`` reads as the model says (a point read: no flush)."""
        for i in keys:
            assert self.t.get((i, None)) == self.d.get((i, None)), i


def busy_state(b: RocksDBKeyedStateBackend, held_in: str | None = None) -> Model:
    """Entries in the DB and in the cache, clean and dirty, pending deletes, new ones, raw state. With ``held_in``
    (a local dir), a checkpoint (discarded) then holds those changes in its overlay, and some change again after
    it: the next checkpoint writes the others out and puts these in its overlay."""
    m = Model(b)
    for i in range(50):
        m.put(i, i)
    b.write_raw_state("r", {1: b"one", 3: b"three"})
    b.flush()  # in the DB now
    for i in range(10):
        m.pop(i)  # pending deletes of written entries
    for i in range(10, 20):
        m.append(i, "x")
    for i in range(100, 110):
        m.put_new(i, i)
    if held_in is not None:
        b.snapshot(0, ALL, held_in).discard()
        for i in range(15, 18):
            m.append(i, "y")
        for i in range(2, 4):
            m.put_new(i, -2 * i)
        for i in range(45, 49):
            m.pop(i)
        for i in range(110, 115):
            m.put_new(i, i)
    return m


def change_after_barrier(b: RocksDBKeyedStateBackend, m: Model) -> None:
    for i in range(10, 15):
        m.append(i, "after")  # values captured at the barrier: in-place changes must not reach the checkpoint
    for i in range(20, 30):
        m.pop(i)
    for i in range(0, 5):
        m.put_new(i, -i)  # over a delete that is captured but maybe not applied yet
    for i in range(5, 8):
        m.put_new(i, -i)  # the same, deleted again: the DB may still hold the value from before the barrier
        m.pop(i)
    for i in range(100, 105):
        m.pop(i)  # created before the barrier (captured as a put), deleted after
    for i in range(200, 210):
        m.put_new(i, i)
        m.pop(i)  # created and deleted after the barrier: never reaches the DB
    b.write_raw_state("r", {1: b"uno", 2: b"two"})


# ---------------------------------------------------------------------------------------------------------------
# The checkpoint is the state at the barrier; reads see the latest values
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("held", [False, True], ids=["overlay", "write-out"])
def test_checkpoint_holds_the_state_at_the_barrier_and_reads_the_latest(
    env: Env, monkeypatch: Any, held: bool
) -> None:
    b = env.backend("rocksdb")
    assert isinstance(b, RocksDBKeyedStateBackend)
    m = busy_state(b, env.local if held else None)
    at_barrier = m.barrier()
    p = b.snapshot(1, ALL, env.local)
    assert not any(t._dirty for t in b._tables.values())  # captured (the overlay's entries stay cached, held)
    if held:
        assert b._queue[-1].steps  # the entries the discarded checkpoint held are in this one's write-out
    change_after_barrier(b, m)
    m.check_reads(range(0, 220))  # nothing applied yet
    gate = Gate(monkeypatch)
    up = Upload(env, p, 1)
    assert gate.entered.wait(30)  # the write-out is in the DB, the native checkpoint not taken yet
    m.check_reads(range(0, 220))
    for i in range(30, 35):
        m.append(i, "during")
    m.put_new(300, 300)
    b.write_raw_state("r", {4: b"four"})  # queued behind: must not reach this checkpoint
    m.check_reads(range(0, 310))
    gate.release.set()
    h = up.result()
    assert restored(env, h) == (at_barrier, {1: b"one", 3: b"three"})
    m.check_reads(range(0, 310))
    assert dump(b)["t"] == m.d  # (flushes: everything applied, in order)
    assert b.read_raw_state("r") == {4: b"four"}


@pytest.mark.parametrize("held", [False, True], ids=["overlay", "write-out"])
def test_two_snapshots_uploaded_in_reverse_order(env: Env, held: bool) -> None:
    b = env.backend("rocksdb")
    assert isinstance(b, RocksDBKeyedStateBackend)
    m = busy_state(b, env.local if held else None)
    first = m.barrier()
    p1 = b.snapshot(1, ALL, env.local)
    change_after_barrier(b, m)
    second = m.barrier()
    p2 = b.snapshot(2, ALL, env.local)
    for i in range(40, 45):
        m.append(i, "third")
    h2 = p2.upload(env.storage, "chk-2", "shared")  # applies 1's write-out and takes its checkpoint on the way
    h1 = p1.upload(env.storage, "chk-1", "shared")
    assert restored(env, h1) == (first, {1: b"one", 3: b"three"})
    assert restored(env, h2) == (second, {1: b"uno", 2: b"two"})
    assert restored(env, h2, "rocksdb") == (second, {1: b"uno", 2: b"two"})
    m.check_reads(range(0, 220))
    assert dump(b)["t"] == m.d


def test_cache_overflow_waits_for_the_queued_write_out(env: Env) -> None:
    b = env.backend("rocksdb", cache_entries=40)
    assert isinstance(b, RocksDBKeyedStateBackend)
    m = Model(b)
    for i in range(30):
        m.put(i, i)
    at_barrier = m.barrier()
    p = b.snapshot(1, ALL, env.local)
    for i in range(30, 400):  # ten times the budget: the cache overflows, writes out and evicts again and again
        m.put(i, i)
        if i % 3 == 0:
            m.pop(i - 30)
    assert b.cached_entries() <= 40
    h = p.upload(env.storage, "chk-1", "shared")
    assert restored(env, h)[0] == at_barrier
    m.check_reads(range(0, 400))
    assert dump(b)["t"] == m.d


def test_concurrent_upload_and_mailbox_work(env: Env) -> None:
    # no gate: the upload thread and this thread really interleave (several rounds of random work, a small cache)
    b = env.backend("rocksdb", cache_entries=300)
    assert isinstance(b, RocksDBKeyedStateBackend)
    m = Model(b)
    rng = random.Random(7)
    barriers: list[tuple[Upload, dict[Any, Any]]] = []
    for cid in range(1, 6):
        for _ in range(3_000):
            i = m.random_change(rng, 600, cid)
            if rng.random() < 0.01:
                m.check_reads(range(i, i + 20))
        b.write_raw_state("r", {cid: b"x" * cid})
        at_barrier = m.barrier()
        barriers.append((Upload(env, b.snapshot(cid, ALL, env.local), cid), at_barrier))
    for cid, (up, at_barrier) in enumerate(barriers, 1):
        assert restored(env, up.result()) == (at_barrier, {cid: b"x" * cid})
    m.check_reads(range(0, 600))
    assert dump(b)["t"] == m.d


# ---------------------------------------------------------------------------------------------------------------
# Aborted, discarded, failed: the writes still reach the DB
# ---------------------------------------------------------------------------------------------------------------


def test_an_aborted_snapshot_keeps_its_writes(env: Env, tmp_path: Path) -> None:
    b = env.backend("rocksdb")
    assert isinstance(b, RocksDBKeyedStateBackend)
    m = busy_state(b)
    b.snapshot(1, ALL, env.local)
    b.notify_checkpoint_aborted(1)
    change_after_barrier(b, m)
    at_barrier = m.barrier()
    h2 = b.snapshot(2, ALL, env.local).upload(env.storage, "chk-2", "shared")
    assert restored(env, h2) == (at_barrier, {1: b"uno", 2: b"two"})
    assert os.listdir(env.local) == []  # no native checkpoint made for the aborted one
    b.snapshot(3, ALL, env.local).discard()
    m.put(500, 500)
    b.close()  # applies what is queued: the discarded snapshot's writes and the rest
    reopened = RocksDBKeyedStateBackend(b.path, cache_entries=10)
    assert dump(reopened)["t"] == m.d
    reopened.close()


# ---------------------------------------------------------------------------------------------------------------
# Close and dispose while an upload runs
# ---------------------------------------------------------------------------------------------------------------


def test_close_while_an_upload_applies_its_write_out(env: Env, monkeypatch: Any) -> None:
    b = env.backend("rocksdb")
    assert isinstance(b, RocksDBKeyedStateBackend)
    m = busy_state(b)
    at_barrier = m.barrier()
    gate = Gate(monkeypatch)
    up = Upload(env, b.snapshot(1, ALL, env.local), 1)
    assert gate.entered.wait(30)
    change_after_barrier(b, m)
    closer = threading.Thread(target=b.close, daemon=True)
    closer.start()  # waits for the upload's write lock, then writes the rest and closes
    gate.release.set()
    h = up.result()
    closer.join(30)
    assert not closer.is_alive()
    assert restored(env, h) == (at_barrier, {1: b"one", 3: b"three"})
    reopened = RocksDBKeyedStateBackend(b.path)
    assert dump(reopened)["t"] == m.d
    assert reopened.read_raw_state("r") == {1: b"uno", 2: b"two"}
    reopened.close()


def test_close_takes_the_queued_checkpoints_and_their_uploads_go_on(env: Env) -> None:
    b = env.backend("rocksdb")
    assert isinstance(b, RocksDBKeyedStateBackend)
    m = busy_state(b)
    at_barrier = m.barrier()
    p = b.snapshot(1, ALL, env.local)
    change_after_barrier(b, m)
    b.close()
    assert restored(env, p.upload(env.storage, "chk-1", "shared"))[0] == at_barrier


def test_dispose_drops_queued_write_outs_and_their_uploads_fail(env: Env) -> None:
    b = env.backend("rocksdb")
    assert isinstance(b, RocksDBKeyedStateBackend)
    busy_state(b)
    p = b.snapshot(1, ALL, env.local)
    up = b.snapshot(2, ALL, env.local)
    up.discard()
    # the task disposes a backend whose upload has not started (cancelled): dispose discards that snapshot itself
    b.dispose()
    with pytest.raises(RuntimeError):
        p.upload(env.storage, "chk-1", "shared")
    assert not os.path.exists(b.path)
    assert not os.path.exists(env.local) or os.listdir(env.local) == []


def test_dispose_while_an_upload_waits_for_the_write_lock(env: Env, monkeypatch: Any) -> None:
    b = env.backend("rocksdb")
    assert isinstance(b, RocksDBKeyedStateBackend)
    busy_state(b)
    gate = Gate(monkeypatch)
    first = Upload(env, b.snapshot(1, ALL, env.local), 1)
    assert gate.entered.wait(30)
    p2 = b.snapshot(2, ALL, env.local)
    second = Upload(env, p2, 2)  # waits for the write lock behind the first
    disposer = threading.Thread(target=b.dispose, daemon=True)
    disposer.start()
    gate.release.set()
    first.result()  # its write-out was applied before dispose got the lock
    disposer.join(30)
    assert not disposer.is_alive()
    # the second either lost the race to dispose (its write-out dropped) or applied it first: never a half state
    try:
        second.result()
    except RuntimeError as e:
        assert "disposed" in str(e) or "closed" in str(e) or "discarded" in str(e)


# ---------------------------------------------------------------------------------------------------------------
# Savepoints
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["hashmap", "rocksdb"])
def test_savepoint_is_the_state_at_its_barrier(env: Env, kind: str) -> None:
    b = env.backend("rocksdb")
    assert isinstance(b, RocksDBKeyedStateBackend)
    m = busy_state(b)
    at_barrier = m.barrier()
    sp = b.snapshot(1, ALL, env.local, canonical=True)
    change_after_barrier(b, m)
    later = m.barrier()
    p2 = b.snapshot(2, ALL, env.local)
    h2 = p2.upload(env.storage, "chk-2", "shared")
    h = sp.upload(env.storage, "sp-1", "sp-1")
    assert h.kind == "canonical"
    assert restored(env, h, kind) == (at_barrier, {1: b"one", 3: b"three"})
    assert restored(env, h2, kind) == (later, {1: b"uno", 2: b"two"})


# ---------------------------------------------------------------------------------------------------------------
# The mailbox thread applies write-outs in slices between records (advance_write_out)
# ---------------------------------------------------------------------------------------------------------------


def test_the_mailbox_applies_a_write_out_in_slices_and_the_upload_takes_the_checkpoint(env: Env) -> None:
    b = env.backend("rocksdb")
    assert isinstance(b, RocksDBKeyedStateBackend)
    m = busy_state(b)
    for i in range(1000, 4000):  # several steps' worth
        m.put(i, i)
    b.snapshot(0, ALL, env.local).discard()  # they are held in its overlay: the next checkpoint writes them out
    at_barrier = m.barrier()
    p = b.snapshot(1, ALL, env.local)
    b.write_raw_state("r", {7: b"seven"})  # queued behind, must not reach the checkpoint
    rounds = 0
    while b._queue[0].next < len(b._queue[0].steps) or not b._queue[0].written:
        b.advance_write_out(500)  # a slice, then records
        change_after_barrier(b, m) if rounds == 0 else m.append(1000 + rounds, "between")
        m.check_reads(range(0, 30))
        rounds += 1
        assert rounds < 100
    assert rounds > 3  # really in slices
    # its writes are applied; its native checkpoint is the upload's (the mailbox never waits for one), and nothing
    # queued behind it is applied before
    b.advance_write_out()
    assert len(b._queue) == 3 and not b._queue[0].done and not os.listdir(env.local)  # (+ two raw writes)
    h = p.upload(env.storage, "chk-1", "shared")
    assert restored(env, h) == (at_barrier, {1: b"one", 3: b"three"})
    b.advance_write_out()  # the raw writes behind it, now
    assert not b._queue
    assert b.read_raw_state("r") == {1: b"uno", 2: b"two"}  # (change_after_barrier's, the last)
    m.check_reads(range(0, 4000))
    assert dump(b)["t"] == m.d


def test_an_upload_waits_while_the_mailbox_advances_then_writes_the_rest_itself(env: Env) -> None:
    b = env.backend("rocksdb")
    assert isinstance(b, RocksDBKeyedStateBackend)
    m = Model(b)
    for i in range(5000):
        m.put(i, i)
    b.flush()
    b.advance_write_out()  # (nothing queued: returns at once; marks the backend as advanced by its mailbox)
    for i in range(5000):
        m.append(i, "x")
    b.snapshot(0, ALL, env.local).discard()  # held in its overlay: checkpoint 1 writes them out
    at_barrier = m.barrier()
    up = Upload(env, b.snapshot(1, ALL, env.local), 1)
    assert len(b._queue[-1].steps) == 5
    b.advance_write_out(1024)  # one slice, then the mailbox stops calling: the upload must not wait forever
    for i in range(0, 5000, 7):
        m.append(i, "after")
    assert restored(env, up.result())[0] == at_barrier
    assert dump(b)["t"] == m.d


def test_concurrent_upload_and_advancing_mailbox(env: Env) -> None:
    b = env.backend("rocksdb", cache_entries=400)
    assert isinstance(b, RocksDBKeyedStateBackend)
    m = Model(b)
    rng = random.Random(11)
    uploads: list[tuple[Upload, dict[Any, Any]]] = []
    for cid in range(1, 5):
        for n in range(3_000):
            m.random_change(rng, 800, cid)
            if n % 100 == 0:
                b.advance_write_out(200)
        at_barrier = m.barrier()
        uploads.append((Upload(env, b.snapshot(cid, ALL, env.local), cid), at_barrier))
    while any(up.is_alive() for up, _ in uploads):  # the mailbox keeps working while the uploads run
        i = rng.randrange(800)
        m.put(i, -1)
        b.advance_write_out(200)
    for up, at_barrier in uploads:
        assert restored(env, up.result())[0] == at_barrier
    m.check_reads(range(0, 800))
    assert dump(b)["t"] == m.d
