"""Checkpoint snapshots and restore of keyed state (state/snapshot.py), for both backends and across them.

Storage is a tiny implementation of the CheckpointStorage protocol over a temp dir that logs every upload.
"""

from __future__ import annotations

import copy
import os
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from state.backend import AbstractKeyedStateBackend, IncompatibleStateError
from state.keygroups import key_group_for, key_group_range
from state.memory import HashMapKeyedStateBackend
from state.rocksdb import RocksDBKeyedStateBackend
from state.snapshot import (
    KIND_CANONICAL,
    KIND_HASHMAP,
    KIND_ROCKSDB_INCREMENTAL,
    CorruptStateError,
    KeyedStateHandle,
)
from weir.common.time import Time
from weir.datastream.state import (
    AggregatingStateDescriptor,
    ListStateDescriptor,
    MapStateDescriptor,
    ReducingStateDescriptor,
    StateDescriptor,
    StateTtlConfig,
    ValueStateDescriptor,
)

MP = 128
TTL = 1000
ALL = range(0, MP)


# ---------------------------------------------------------------------------------------------------------------
# Fixtures: storage, clock, backends, state
# ---------------------------------------------------------------------------------------------------------------


class DirStorage:
    """CheckpointStorage over a local directory; ``uploads`` logs every path written, in order."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.base_uri = root.as_uri()
        self.uploads: list[str] = []
        self._lock = threading.Lock()

    def _p(self, path: str) -> Path:
        parts = path.split("/")
        assert path and not path.startswith("/") and all(p not in ("", ".", "..") for p in parts), path
        return self.root / path

    def _put(self, path: str, fill: Callable[[Path], object]) -> int:
        p = self._p(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f".tmp-{threading.get_ident()}-{p.name}")
        fill(tmp)
        os.replace(tmp, p)
        with self._lock:
            self.uploads.append(path)
        return p.stat().st_size

    def write(self, path: str, data: bytes) -> None:
        self._put(path, lambda t: t.write_bytes(data))

    def read(self, path: str) -> bytes:
        p = self._p(path)
        if not p.is_file():
            raise FileNotFoundError(f"not found: {self.uri(path)}")
        return p.read_bytes()

    def upload_file(self, local_path: str, path: str) -> int:
        return self._put(path, lambda t: shutil.copyfile(local_path, t))

    def download_file(self, path: str, local_path: str) -> int:
        p = self._p(path)
        if not p.is_file():
            raise FileNotFoundError(f"not found: {self.uri(path)}")
        shutil.copyfile(p, local_path)
        return os.path.getsize(local_path)

    def exists(self, path: str) -> bool:
        return self._p(path).is_file()

    def size(self, path: str) -> int:
        p = self._p(path)
        if not p.is_file():
            raise FileNotFoundError(f"not found: {self.uri(path)}")
        return p.stat().st_size

    def delete(self, path: str) -> None:
        self._p(path).unlink(missing_ok=True)

    def list(self, prefix: str) -> list[str]:
        return sorted(
            str(p.relative_to(self.root)) for p in self.root.rglob("*") if p.is_file() and not p.name.startswith(".")
        )

    def uri(self, path: str) -> str:
        return f"{self.base_uri}/{path}"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000

    def __call__(self) -> int:
        return self.now


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


D = TypeVar("D", bound=StateDescriptor)


def _ttl(d: D) -> D:
    d.enable_time_to_live(StateTtlConfig.new_builder(Time.milliseconds(TTL)).build())
    return d


def descriptors() -> dict[str, Any]:
    return {
        "value": ValueStateDescriptor("value"),
        "list": ListStateDescriptor("list"),
        "map": MapStateDescriptor("map"),
        "reduce": ReducingStateDescriptor("reduce", _add),
        "agg": AggregatingStateDescriptor("agg", Sum()),
        "ttl_value": _ttl(ValueStateDescriptor("ttl_value")),
        "ttl_list": _ttl(ListStateDescriptor("ttl_list")),
        "ttl_map": _ttl(MapStateDescriptor("ttl_map")),
        "ttl_agg": _ttl(AggregatingStateDescriptor("ttl_agg", Sum())),
        "win": ListStateDescriptor("win"),
    }


class States:
    """Every kind of state of one backend, with and without TTL, plus windows (namespaces) and a raw table."""

    def __init__(self, b: AbstractKeyedStateBackend) -> None:
        d = descriptors()
        self.b = b
        self.value = b.get_state(d["value"])
        self.list = b.get_list_state(d["list"])
        self.map = b.get_map_state(d["map"])
        self.reduce = b.get_reducing_state(d["reduce"])
        self.agg = b.get_aggregating_state(d["agg"])
        self.ttl_value = b.get_state(d["ttl_value"])
        self.ttl_list = b.get_list_state(d["ttl_list"])
        self.ttl_map = b.get_map_state(d["ttl_map"])
        self.ttl_agg = b.get_aggregating_state(d["ttl_agg"])
        self.win = b.get_list_state(d["win"])
        self.timers = b.table("_timers")

    def fill(self, keys: list[Any]) -> None:
        """State for each of ``keys`` (elements of KEYS), derived from its index in KEYS."""
        for key in keys:
            i = INDEX[key]
            self.b.current_key = key
            self.value.update({"i": i, "key": key})
            self.list.add_all([i, i + 1])
            self.map.put("a", i)
            self.map.put(("t", i), [i])
            self.reduce.add(i)
            self.reduce.add(1)
            self.agg.add(i)
            self.ttl_value.update(i * 10)
            self.ttl_list.add(i)
            self.ttl_map.put("x", i)
            self.ttl_agg.add(i)
            for ns in (Win(0, 10), Win(10, 20)):
                self.win.set_current_namespace(ns)
                self.win.add((key, ns.start))
            self.timers[(key, Win(0, 10))] = 9

    def check(self, key: Any, i: int) -> None:
        """The user-visible state of ``key`` (the i-th key given to ``fill``)."""
        self.b.current_key = key
        assert self.value.value() == {"i": i, "key": key}
        assert self.list.get() == [i, i + 1]
        assert dict(self.map.items()) == {"a": i, ("t", i): [i]}
        assert self.reduce.get() == i + 1
        assert self.agg.get() == i
        assert self.ttl_value.value() == i * 10
        assert self.ttl_list.get() == [i]
        assert self.ttl_map.get("x") == i
        assert self.ttl_agg.get() == i
        for ns in (Win(0, 10), Win(10, 20)):
            self.win.set_current_namespace(ns)
            assert self.win.get() == [(key, ns.start)]
        assert self.timers[(key, Win(0, 10))] == 9


def dump(b: AbstractKeyedStateBackend) -> dict[str, dict[tuple[Any, Any], Any]]:
    """A deep copy of every stored entry (raw, TTL-wrapped) by table; empty tables left out."""
    out = {name: dict(b.table(name).items()) for name in b.table_names()}
    return copy.deepcopy({name: t for name, t in out.items() if t})


KEYS: list[Any] = [f"k{i}" for i in range(150)] + list(range(150)) + [("t", i, "x") for i in range(100)]
INDEX = {k: i for i, k in enumerate(KEYS)}


class Env:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.storage = DirStorage(tmp / "storage")
        self.clock = FakeClock()
        self.made: list[AbstractKeyedStateBackend] = []
        self.local = str(tmp / "local")

    def backend(self, kind: str, **kw: Any) -> AbstractKeyedStateBackend:
        b: AbstractKeyedStateBackend
        if kind == "hashmap":
            b = HashMapKeyedStateBackend(MP, clock=self.clock)
        else:
            b = RocksDBKeyedStateBackend(self.tmp / f"db{len(self.made)}", MP, clock=self.clock, **kw)
        self.made.append(b)
        return b

    def checkpoint(
        self, b: AbstractKeyedStateBackend, cid: int, key_groups: range = ALL, canonical: bool = False
    ) -> KeyedStateHandle:
        pending = b.snapshot(cid, key_groups, self.local, canonical=canonical)
        return pending.upload(self.storage, f"chk-{cid}/{id(b)}", "shared")

    def restored(
        self, kind: str, handles: list[KeyedStateHandle], key_groups: range = ALL, **kw: Any
    ) -> AbstractKeyedStateBackend:
        b = self.backend(kind, **kw)
        b.restore(handles, self.storage, key_groups, self.local)
        return b



BACKENDS = ["hashmap", "rocksdb"]


# ---------------------------------------------------------------------------------------------------------------
# Round trips
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("canonical", [False, True], ids=["checkpoint", "savepoint"])
@pytest.mark.parametrize("dst", BACKENDS)
@pytest.mark.parametrize("src", BACKENDS)
def test_round_trip_gives_identical_tables(env: Env, src: str, dst: str, canonical: bool) -> None:
    b = env.backend(src)
    States(b).fill(KEYS)
    if isinstance(b, RocksDBKeyedStateBackend):
        assert b.dirty_entries() > 0  # the snapshot must write the cache out

    h = env.checkpoint(b, 1, canonical=canonical)
    before = dump(b)
    assert len(before) == 11 and sum(len(t) for t in before.values()) == 11 * len(KEYS) + len(KEYS)
    expected_kind = KIND_CANONICAL if canonical else (KIND_HASHMAP if src == "hashmap" else KIND_ROCKSDB_INCREMENTAL)
    assert h.kind == expected_kind and h.key_groups == (0, MP) and h.max_parallelism == MP
    assert h.size == sum(f.size for f in h.files) > 0
    if canonical:
        assert not any(f.shared for f in h.files) and len(h.files) == 1

    r = env.restored(dst, [h])
    assert dump(r) == before
    # the restored state works through handles, and TTL timestamps came along
    s = States(r)
    for i, key in enumerate(KEYS):
        s.check(key, i)
    r.current_key = KEYS[0]
    env.clock.now += TTL
    assert s.ttl_value.value() is None and s.ttl_list.get() == [] and s.value.value() == {"i": 0, "key": KEYS[0]}


@pytest.mark.parametrize("dst", BACKENDS)
@pytest.mark.parametrize("src", BACKENDS)
def test_restored_state_refuses_another_kind(env: Env, src: str, dst: str) -> None:
    b = env.backend(src)
    States(b).fill(KEYS[:10])
    r = env.restored(dst, [env.checkpoint(b, 1)])
    with pytest.raises(IncompatibleStateError, match="'value'"):
        r.get_list_state(ListStateDescriptor("value"))
    with pytest.raises(IncompatibleStateError, match="'list'"):
        r.get_list_state(_ttl(ListStateDescriptor("list")))  # TTL setting differs
    assert isinstance(r.get_state(ValueStateDescriptor("value")).value(), type(None))


@pytest.mark.parametrize("dst", BACKENDS)
@pytest.mark.parametrize("src", BACKENDS)
def test_restore_refuses_handles_contradicting_registered_state(env: Env, src: str, dst: str) -> None:
    b = env.backend(src)
    States(b).fill(KEYS[:10])
    h = env.checkpoint(b, 1)
    r = env.backend(dst)
    r.get_map_state(MapStateDescriptor("value"))  # registered before the restore, as another kind
    with pytest.raises(IncompatibleStateError, match="'value'"):
        r.restore([h], env.storage, ALL, env.local)


@pytest.mark.parametrize("src", BACKENDS)
def test_changes_after_the_synchronous_part_do_not_leak(env: Env, src: str) -> None:
    b = env.backend(src)
    s = States(b)
    s.fill(KEYS)
    before = dump(b)

    pending = b.snapshot(1, ALL, env.local)

    def mutate(keys: list[Any], tag: str) -> None:
        for key in keys:
            b.current_key = key
            win = b.table("win")[(key, Win(0, 10))]
            win.append(f"{tag}-in-place")  # in place, not assigned back
            b.table("map")[(key, None)]["a"] = f"{tag}-in-place"
            s.value.update(tag)
            s.list.add(tag)
            s.map.put("a", tag)
            s.ttl_value.update(tag)
            s.win.set_current_namespace(Win(10, 20))
            s.win.add(tag)
            s.reduce.clear()
            s.timers[(key, Win(0, 10))] = tag
        b.current_key = f"new-{tag}"
        s.value.update(tag)
        b.flush()  # RocksDB: the changes reach the live database

    mutate(KEYS[:100], "before-upload")
    result: list[KeyedStateHandle] = []
    t = threading.Thread(target=lambda: result.append(pending.upload(env.storage, "chk-1/op", "shared")))
    t.start()
    mutate(KEYS[100:], "during-upload")  # concurrently with the upload thread
    t.join(60)
    assert result, "the upload failed (see the thread's exception above)"
    assert dump(b) != before  # the mutations happened

    for dst in BACKENDS:
        assert dump(env.restored(dst, result)) == before


# ---------------------------------------------------------------------------------------------------------------
# Rescaling
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("canonical", [False, True], ids=["checkpoint", "savepoint"])
@pytest.mark.parametrize("dst", BACKENDS)
@pytest.mark.parametrize("src", BACKENDS)
def test_rescale_2_to_3_to_1(env: Env, src: str, dst: str, canonical: bool) -> None:
    ranges2 = [range(0, 64), range(64, 128)]
    assert [key_group_range(MP, 2, i) for i in range(2)] == ranges2
    olds = []
    for i, kgs in enumerate(ranges2):
        b = env.backend(src)
        States(b).fill([k for k in KEYS if key_group_for(k, MP) in kgs])
        olds.append((b, env.checkpoint(b, 1 + i, kgs, canonical)))
    original: dict[str, dict[tuple[Any, Any], Any]] = {}
    for b, _ in olds:
        for name, t in dump(b).items():
            original.setdefault(name, {}).update(t)
    assert sum(len(t) for t in original.values()) == 12 * len(KEYS)

    handles = [h for _, h in olds]
    news = []
    for i in range(3):
        kgs = key_group_range(MP, 3, i)
        r = env.restored(dst, handles, kgs)
        d = dump(r)
        news.append((r, kgs, d))
        keys = {key for t in d.values() for key, _ in t}
        assert keys == {k for k in KEYS if key_group_for(k, MP) in kgs}, f"subtask {i} of 3"
        s = States(r)
        for j, key in enumerate(KEYS):
            if key in keys:
                s.check(key, j)
    union: dict[str, dict[tuple[Any, Any], Any]] = {}
    for _, _, d in news:
        for name, t in d.items():
            assert not set(t) & set(union.get(name, {}))
            union.setdefault(name, {}).update(t)
    assert union == original

    # and back to one subtask, from the three
    handles3 = [env.checkpoint(r, 10 + i, kgs, canonical) for i, (r, kgs, _) in enumerate(news)]
    assert dump(env.restored(src, handles3)) == original


# ---------------------------------------------------------------------------------------------------------------
# RocksDB incremental checkpoints
# ---------------------------------------------------------------------------------------------------------------


def _shared(h: KeyedStateHandle) -> dict[str, int]:
    return {f.path: f.size for f in h.files if f.shared}


def test_rocksdb_incremental_checkpoints(env: Env) -> None:
    n = 100_000
    b = env.backend("rocksdb")
    v = b.get_state(ValueStateDescriptor("count"))
    for i in range(n):
        b.current_key = f"key-{i}"
        v.update(i)

    # the first checkpoint's overlay holds every entry (all changed since the last checkpoint), unwritten
    h0 = env.checkpoint(b, 1)
    overlay = [f for f in h0.files if h0.meta["local_names"][f.path] == "WEIR-OVERLAY"]
    assert len(overlay) == 1 and overlay[0].size >= 0.5 * h0.size and not overlay[0].shared
    b.notify_checkpoint_complete(1)
    # nothing changed since: the next one writes the last overlay's entries into the DB, and has no overlay
    h1 = env.checkpoint(b, 2)
    assert h1.uploaded_bytes == sum(f.size for f in h1.files if f.path not in _shared(h0)) and _shared(h1)
    assert all(f.path.endswith(".sst") == f.shared for f in h1.files)
    assert {"CURRENT", "MANIFEST", "OPTIONS"} <= {h1.meta["local_names"][f.path].split("-")[0] for f in h1.files}
    b.notify_checkpoint_complete(2)
    uploads_before_2 = len(env.storage.uploads)

    for i in range(0, n, 100):  # 1% of the keys
        b.current_key = f"key-{i}"
        v.update(-i)
    h2 = env.checkpoint(b, 3)
    ratio = h2.uploaded_bytes / h2.size
    print(f"\nincremental checkpoint: {h2.uploaded_bytes} of {h2.size} bytes uploaded, ratio {ratio:.4f}")
    assert ratio <= 0.1
    reused = set(_shared(h1)) & set(_shared(h2))
    assert sum(_shared(h2)[p] for p in reused) >= 0.9 * h2.size
    uploaded_2 = env.storage.uploads[uploads_before_2:]
    assert not reused & set(uploaded_2), "reused SST files were uploaded again"
    assert sum(f.size for f in h2.files if f.path in uploaded_2) == h2.uploaded_bytes
    assert {f.path for f in h2.files if not f.shared} <= set(uploaded_2)  # private files: every time

    # restoring checkpoint 2 gives the updated state (fast path into RocksDB, entries into the hashmap backend)
    r = env.restored("rocksdb", [h2])
    h = env.restored("hashmap", [h2])
    for be in (r, h):
        t = be.table("count")
        for i in range(n):
            assert t[(f"key-{i}", None)] == (-i if i % 100 == 0 else i)

    # the restored backend continues incrementally, reusing the SST files it restored
    rv = r.get_state(ValueStateDescriptor("count"))
    for i in range(10):
        r.current_key = f"key-{i}"
        rv.update(1_000_000 + i)
    uploads_before_3 = len(env.storage.uploads)
    h3 = env.checkpoint(r, 4)
    print(f"after restore: {h3.uploaded_bytes} of {h3.size} bytes uploaded")
    assert h3.uploaded_bytes <= 0.1 * h3.size
    assert set(_shared(h2)) & set(_shared(h3))
    assert not set(_shared(h2)) & set(env.storage.uploads[uploads_before_3:])
    t3 = env.restored("rocksdb", [h3]).table("count")
    assert t3[("key-5", None)] == 1_000_005 and t3[("key-100", None)] == -100 and t3[("key-99", None)] == 99


def test_rocksdb_same_parallelism_restore_uses_the_files_and_reuses_them(env: Env) -> None:
    handles = []
    for kgs in [range(0, 64), range(64, 128)]:
        b = env.backend("rocksdb")
        States(b).fill([k for k in KEYS if key_group_for(k, MP) in kgs])
        env.checkpoint(b, 1, kgs)  # (its overlay holds the entries; the next one writes them into the DB)
        handles.append(env.checkpoint(b, 2, kgs))
    r = env.restored("rocksdb", handles, range(64, 128))  # every handle given, one overlaps
    expected = dump(env.restored("hashmap", [handles[1]], range(64, 128)))
    assert dump(r) == expected and expected
    h = env.checkpoint(r, 3, range(64, 128))
    assert set(_shared(handles[1])) <= set(_shared(h)) and h.uploaded_bytes < h.size / 2


def test_rocksdb_reuses_only_files_of_completed_checkpoints(env: Env) -> None:
    b = env.backend("rocksdb")
    t = b.table("t")
    for i in range(2000):
        t[(i, None)] = "x" * 50

    h1 = env.checkpoint(b, 1)
    b.notify_checkpoint_aborted(1)
    t[(0, None)] = "changed"
    h2 = env.checkpoint(b, 2)  # 1 was aborted: its files may be deleted, so nothing is reused
    assert not set(_shared(h1)) & set(_shared(h2)) and h2.uploaded_bytes == h2.size

    t[(1, None)] = "changed"
    h3 = env.checkpoint(b, 3)  # 2 is not confirmed yet: nothing reused either
    assert not set(_shared(h2)) & set(_shared(h3)) and h3.uploaded_bytes == h3.size

    b.notify_checkpoint_complete(3)
    t[(2, None)] = "changed"
    h4 = env.checkpoint(b, 4)
    assert set(_shared(h3)) & set(_shared(h4)) and h4.uploaded_bytes < h4.size / 2
    b.notify_checkpoint_complete(2)  # late and older than 3: changes nothing
    t[(3, None)] = "changed"
    h5 = env.checkpoint(b, 5)
    assert set(_shared(h3)) & set(_shared(h5)) and not set(_shared(h2)) & set(_shared(h5))

    got = env.restored("hashmap", [h5]).table("t")
    assert [got[(i, None)] for i in range(5)] == ["changed"] * 4 + ["x" * 50] and len(got) == 2000
    # shared and private names never collide between two backends
    other = env.backend("rocksdb")
    other.table("t")[(0, None)] = 1
    ho = env.checkpoint(other, 5)
    assert not {f.path for f in ho.files} & {f.path for f in h5.files}


def test_rocksdb_local_files_are_freed(env: Env) -> None:
    b = env.backend("rocksdb")
    b.table("t")[(1, None)] = 1
    p1 = b.snapshot(1, ALL, env.local)
    p2 = b.snapshot(2, ALL, env.local)
    p3 = b.snapshot(3, ALL, env.local)
    # native checkpoints are made when the write-outs are applied (by an upload), in order
    assert len(os.listdir(env.local)) == 0
    p2.upload(env.storage, "chk-2", "shared")
    assert len(os.listdir(env.local)) == 1  # snapshot 1's, made on the way to snapshot 2's
    p3.discard()
    with pytest.raises(RuntimeError, match="discarded"):
        p3.upload(env.storage, "chk-3", "shared")
    b.flush()  # applies snapshot 3's write-out: no native checkpoint for a discarded snapshot
    assert len(os.listdir(env.local)) == 1
    b.notify_checkpoint_complete(2)  # snapshot 1 is older than a completed checkpoint: dropped
    assert os.listdir(env.local) == []
    with pytest.raises(RuntimeError):
        p1.upload(env.storage, "chk-1", "shared")
    with pytest.raises(RuntimeError, match="uploaded"):
        p2.upload(env.storage, "chk-2", "shared")


# ---------------------------------------------------------------------------------------------------------------
# Missing, truncated and corrupt files
# ---------------------------------------------------------------------------------------------------------------


CASES = [
    ("hashmap", False, "hashmap", "data"),
    ("hashmap", False, "rocksdb", "data"),
    ("rocksdb", False, "rocksdb", "sst"),  # fast path
    ("rocksdb", False, "rocksdb", "manifest"),
    ("rocksdb", False, "hashmap", "sst"),  # entries path
    ("rocksdb", True, "rocksdb", "data"),
    ("rocksdb", True, "hashmap", "data"),
]


@pytest.mark.parametrize("damage", ["missing", "truncated"])
@pytest.mark.parametrize(("src", "canonical", "dst", "victim"), CASES)
def test_missing_or_truncated_file_is_an_error_naming_it(
    env: Env, src: str, canonical: bool, dst: str, victim: str, damage: str
) -> None:
    b = env.backend(src)
    States(b).fill(KEYS)
    h = env.checkpoint(b, 1, canonical=canonical)
    if victim == "sst":
        f = max((f for f in h.files if f.shared), key=lambda f: f.size)
    elif victim == "manifest":
        f = next(f for f in h.files if "MANIFEST" in f.path)
    else:
        (f,) = h.files
    p = env.storage.root / f.path
    if damage == "missing":
        p.unlink()
    else:
        p.write_bytes(p.read_bytes()[: f.size // 2])
    r = env.backend(dst)
    with pytest.raises(CorruptStateError) as e:
        r.restore([h], env.storage, ALL, env.local)
    assert env.storage.uri(f.path) in str(e.value)
    assert dump(r) == {}
    assert not os.path.exists(env.local) or os.listdir(env.local) == []


@pytest.mark.parametrize("dst", BACKENDS)
@pytest.mark.parametrize("src", BACKENDS)
def test_corrupt_key_group_file_fails_its_checksum_and_leaves_the_backend_empty(
    env: Env, src: str, dst: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(RocksDBKeyedStateBackend, "_BATCH", 50)  # entries reach the database before the failure
    b = env.backend(src)
    States(b).fill(KEYS)
    h = env.checkpoint(b, 1, canonical=True)
    (f,) = h.files
    index = h.meta["index"]
    assert len(index) > 100  # one blob per key group with entries
    kg, offset, length, _ = index[-1]  # the last key group: earlier ones were inserted already when it fails
    p = env.storage.root / f.path
    data = bytearray(p.read_bytes())
    data[offset + length // 2] ^= 0xFF
    p.write_bytes(bytes(data))
    r = env.backend(dst)
    with pytest.raises(CorruptStateError, match=f"key group {kg} fails its checksum") as e:
        r.restore([h], env.storage, ALL, env.local)
    assert env.storage.uri(f.path) in str(e.value)
    assert dump(r) == {}
    # another key-group range does not read the damaged key group
    ok = env.restored(dst, [h], range(0, kg))
    assert dump(ok) and all(key_group_for(k, MP) < kg for t in dump(ok).values() for k, _ in t)


# ---------------------------------------------------------------------------------------------------------------
# Savepoints and misuse
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("src", BACKENDS)
def test_canonical_snapshot_is_self_contained(env: Env, src: str) -> None:
    b = env.backend(src)
    States(b).fill(KEYS)
    before = dump(b)
    h = env.checkpoint(b, 7, range(0, MP), canonical=True)
    assert h.kind == KIND_CANONICAL and not any(f.shared for f in h.files)
    assert all(f.path.startswith("chk-7/") for f in h.files)
    assert h.uploaded_bytes == h.size
    b.dispose()  # the savepoint needs nothing of the backend any more
    shutil.rmtree(env.storage.root / "shared", ignore_errors=True)
    for dst in BACKENDS:
        assert dump(env.restored(dst, [h])) == before


@pytest.mark.parametrize("dst", BACKENDS)
def test_restore_refuses_misuse(env: Env, dst: str) -> None:
    a = env.backend("hashmap")
    States(a).fill(KEYS[:20])
    h_all = env.checkpoint(a, 1)
    h_low = env.checkpoint(a, 2, range(0, 64))

    full = env.restored(dst, [h_all])
    with pytest.raises(ValueError, match="empty backend"):
        full.restore([h_all], env.storage, ALL, env.local)
    with pytest.raises(ValueError, match="same key groups"):
        env.backend(dst).restore([h_all, h_low], env.storage, ALL, env.local)
    if dst == "hashmap":
        other: AbstractKeyedStateBackend = HashMapKeyedStateBackend(64)
    else:
        other = RocksDBKeyedStateBackend(env.tmp / "mp64", 64)
        env.made.append(other)
    with pytest.raises(ValueError, match="max_parallelism 128"):
        other.restore([h_all], env.storage, range(0, 64), env.local)
    # no handles: nothing to restore (a fresh start)
    fresh = env.restored(dst, [])
    assert dump(fresh) == {}


def test_rocksdb_synchronous_part_hard_links_the_sst_files(env: Env) -> None:
    b = env.backend("rocksdb")
    t = b.table("t")
    for i in range(20_000):
        t[(i, None)] = "v" * 100
    # a checkpoint's overlay holds them; unchanged until the next one, that one writes them into the DB
    b.snapshot(1, ALL, env.local).discard()
    shutil.rmtree(env.local)
    p = b.snapshot(2, ALL, env.local)
    for i in range(20_000):
        t[(i, None)] = "w"
    b.flush()  # applies the snapshot's write-out and takes its native checkpoint first, then writes the "w"s
    (d,) = os.listdir(env.local)
    ssts = [os.path.join(env.local, d, n) for n in os.listdir(os.path.join(env.local, d)) if n.endswith(".sst")]
    assert ssts and all(os.stat(f).st_nlink >= 2 for f in ssts)  # shared with the live database, not copies
    assert sum(os.path.getsize(f) for f in ssts) > 100_000
    h = p.upload(env.storage, "chk-2", "shared")
    assert set(env.restored("hashmap", [h]).table("t").values()) == {"v" * 100}


@pytest.mark.parametrize("src", BACKENDS)
def test_with_the_file_system_checkpoint_storage(env: Env, src: str) -> None:
    fs = pytest.importorskip("state.filesystem")
    storage = fs.FileSystemCheckpointStorage((env.tmp / "fs").as_uri())
    b = env.backend(src)
    States(b).fill(KEYS)
    h = b.snapshot(1, ALL, env.local).upload(storage, "chk-1/op", "shared")
    b.notify_checkpoint_complete(1)
    before = dump(b)
    for dst in BACKENDS:
        r = env.backend(dst)
        r.restore([h], storage, ALL, env.local)
        assert dump(r) == before
    storage.delete(h.files[-1].path)
    with pytest.raises(CorruptStateError, match=h.files[-1].path.split("/")[-1]):
        env.backend(src).restore([h], storage, ALL, env.local)
