"""Keyed state handles over both backends: every test runs on the hashmap backend, on RocksDB with a large
cache, and on RocksDB with a 3-entry cache (so that nearly every access goes through the database, and the
cache flushes and evicts all the time). The expected values are the same for all three."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from state.backend import AbstractKeyedStateBackend, IncompatibleStateError, KeyedStateBackend, wall_clock_ms
from state.keygroups import key_group_for
from state.memory import HashMapKeyedStateBackend
from state.rocksdb import RocksDBKeyedStateBackend
from weir.common.time import Time
from weir.datastream.functions import ReduceFunction
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
    """A window-like namespace: frozen, hashable, picklable."""

    start: int
    end: int


class Avg:
    """A duck-typed AggregateFunction (no base class): running average."""

    def create_accumulator(self) -> tuple[int, int]:
        return (0, 0)

    def add(self, value: int, acc: tuple[int, int]) -> tuple[int, int]:
        return (acc[0] + value, acc[1] + 1)

    def get_result(self, acc: tuple[int, int]) -> float:
        return acc[0] / acc[1]

    def merge(self, a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
        return (a[0] + b[0], a[1] + b[1])


class Concat(ReduceFunction):
    def reduce(self, value1: str, value2: str) -> str:
        return value1 + value2


def _add(a: int, b: int) -> int:
    return a + b


KINDS = ["hashmap", "rocksdb", "rocksdb-cache3"]


@pytest.fixture(params=KINDS)
def make(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Callable[..., AbstractKeyedStateBackend]]:
    """A factory of backends of the parametrized kind; all are disposed after the test."""
    made: list[AbstractKeyedStateBackend] = []

    def factory(**kw: Any) -> AbstractKeyedStateBackend:
        b: AbstractKeyedStateBackend
        if request.param == "hashmap":
            b = HashMapKeyedStateBackend(**kw)
        else:
            cache = 3 if request.param == "rocksdb-cache3" else 100_000
            b = RocksDBKeyedStateBackend(tmp_path / f"db{len(made)}", cache_entries=cache, **kw)
        made.append(b)
        return b

    yield factory
    for b in made:
        b.dispose()


@pytest.fixture
def backend(make: Callable[..., AbstractKeyedStateBackend]) -> AbstractKeyedStateBackend:
    return make()


# ------------------------------------------------------------------------------------------------------------
# Each kind of state, per key
# ------------------------------------------------------------------------------------------------------------


def test_value_state_is_per_key(backend: AbstractKeyedStateBackend) -> None:
    v = backend.get_state(ValueStateDescriptor("v"))
    for k in range(20):
        backend.current_key = k  # operators assign the attribute directly
        assert v.value() is None
        v.update({"n": k})
    backend.set_current_key("other")
    assert backend.get_current_key() == "other"
    assert v.value() is None
    for k in range(20):
        backend.set_current_key(k)
        assert v.value() == {"n": k}
    backend.current_key = 3
    v.clear()
    assert v.value() is None
    backend.current_key = 4
    assert v.value() == {"n": 4}
    v.update(None)  # update(None) clears, as in Flink
    assert v.value() is None
    backend.current_key = 5
    assert v.value() == {"n": 5}


def test_list_state(backend: AbstractKeyedStateBackend) -> None:
    s = backend.get_list_state(ListStateDescriptor("l"))
    for k in ("a", "b", "c", "d"):
        backend.current_key = k
        assert s.get() == []
        s.add(k + "1")
        s.add_all([k + "2", k + "3"])
        s.add_all([])
        s.add_all(None)
    for k in ("a", "b", "c", "d"):
        backend.current_key = k
        assert s.get() == [k + "1", k + "2", k + "3"]
        assert list(s) == [k + "1", k + "2", k + "3"]

    backend.current_key = "a"
    got = s.get()
    got.append("not stored")  # get() returns a copy
    assert s.get() == ["a1", "a2", "a3"]
    s.update(["x", "y"])
    assert s.get() == ["x", "y"]
    s.update([])  # an empty list clears
    assert s.get() == []
    s.update(None)
    assert s.get() == []
    s.add("z")
    assert s.get() == ["z"]
    with pytest.raises(ValueError, match="None"):
        s.add(None)
    with pytest.raises(ValueError, match="None"):
        s.add_all(["ok", None])
    with pytest.raises(ValueError, match="None"):
        s.update(["ok", None])
    assert s.get() == ["z"]  # a refused call changes nothing
    s.clear()
    assert s.get() == []
    backend.current_key = "b"
    assert s.get() == ["b1", "b2", "b3"]


def test_map_state_api(backend: AbstractKeyedStateBackend) -> None:
    m = backend.get_map_state(MapStateDescriptor("m"))
    backend.current_key = "k1"
    assert m.is_empty()
    assert m.get("x") is None
    assert not m.contains("x")
    m.put("x", 1)
    m.put("y", None)  # None is a valid map value
    m.put_all({"z": 3, "x": 10})
    m.put_all({})
    assert m.get("x") == 10
    assert m.contains("y") and m.get("y") is None
    assert sorted(m.keys()) == ["x", "y", "z"]
    assert sorted(m.items(), key=lambda kv: kv[0]) == [("x", 10), ("y", None), ("z", 3)]
    assert sorted(m.values(), key=repr) == [10, 3, None]
    assert not m.is_empty()
    # the dict-style protocol
    m["w"] = 4
    assert m["w"] == 4
    assert m["missing"] is None
    assert "w" in m and "missing" not in m
    del m["w"]
    assert "w" not in m
    assert sorted(iter(m)) == ["x", "y", "z"]
    # views are snapshots: the map may change while iterating over them
    for key in m.keys():  # noqa: SIM118 - MapState.keys(), the API under test
        m.remove(key)
    assert m.is_empty()
    m.remove("never there")

    m.put("a", 1)
    backend.current_key = "k2"
    assert m.is_empty()
    m.put("a", 2)
    backend.current_key = "k1"
    assert m.get("a") == 1
    m.clear()
    assert m.is_empty()
    backend.current_key = "k2"
    assert m.items() == [("a", 2)]


def test_map_state_becomes_absent_when_emptied(backend: AbstractKeyedStateBackend) -> None:
    m = backend.get_map_state(MapStateDescriptor("m"))
    backend.current_key = 1
    m.put("a", 1)
    assert list(backend.table("m").items()) == [((1, None), {"a": 1})]
    m.remove("a")
    assert list(backend.table("m").items()) == []


def test_reducing_state_with_function_object_and_callable(backend: AbstractKeyedStateBackend) -> None:
    concat = backend.get_reducing_state(ReducingStateDescriptor("concat", Concat()))
    total = backend.get_reducing_state(ReducingStateDescriptor("total", _add))
    for k in ("a", "b"):
        backend.current_key = k
        assert concat.get() is None and total.get() is None
        for i in range(4):
            concat.add(f"{k}{i}")
            total.add(i)
    backend.current_key = "a"
    assert concat.get() == "a0a1a2a3"
    assert total.get() == 6
    total.add(None)  # Flink: adding null clears reducing/aggregating state
    assert total.get() is None
    backend.current_key = "b"
    assert total.get() == 6
    concat.clear()
    assert concat.get() is None


def test_aggregating_state_duck_typed(backend: AbstractKeyedStateBackend) -> None:
    avg = backend.get_aggregating_state(AggregatingStateDescriptor("avg", Avg()))
    backend.current_key = "a"
    assert avg.get() is None
    for v in (1, 2, 3, 6):
        avg.add(v)
    backend.current_key = "b"
    avg.add(10)
    backend.current_key = "a"
    assert avg.get() == 3.0
    backend.current_key = "b"
    assert avg.get() == 10.0
    avg.clear()
    assert avg.get() is None
    backend.current_key = "a"
    assert avg.get() == 3.0


# ------------------------------------------------------------------------------------------------------------
# Namespaces and merging
# ------------------------------------------------------------------------------------------------------------


def test_namespaces_are_isolated_for_every_kind(backend: AbstractKeyedStateBackend) -> None:
    v = backend.get_state(ValueStateDescriptor("v"))
    lst = backend.get_list_state(ListStateDescriptor("l"))
    m = backend.get_map_state(MapStateDescriptor("m"))
    r = backend.get_reducing_state(ReducingStateDescriptor("r", _add))
    a = backend.get_aggregating_state(AggregatingStateDescriptor("a", Avg()))
    handles: list[Any] = [v, lst, m, r, a]
    namespaces = [None, Win(0, 10), Win(10, 20), "global"]
    for key in ("k1", "k2"):
        backend.current_key = key
        for i, ns in enumerate(namespaces):
            for h in handles:
                h.set_current_namespace(ns)
                assert h.get_current_namespace() == ns
            n = i + (100 if key == "k2" else 0)
            v.update(n)
            lst.add(n)
            m.put("n", n)
            r.add(n)
            a.add(n)
    for key in ("k1", "k2"):
        backend.current_key = key
        for i, ns in enumerate(namespaces):
            for h in handles:
                h.set_current_namespace(ns)
            n = i + (100 if key == "k2" else 0)
            assert (v.value(), lst.get(), m.get("n"), r.get(), a.get()) == (n, [n], n, n, float(n))
    # clear() affects (current key, current namespace) only
    backend.current_key = "k1"
    for h in handles:
        h.set_current_namespace(Win(0, 10))
        h.clear()
    assert (v.value(), lst.get(), m.is_empty(), r.get(), a.get()) == (None, [], True, None, None)
    for h in handles:
        h.set_current_namespace(Win(10, 20))
    assert (v.value(), lst.get(), m.get("n"), r.get(), a.get()) == (2, [2], 2, 2, 2.0)
    backend.current_key = "k2"
    for h in handles:
        h.set_current_namespace(Win(0, 10))
    assert (v.value(), lst.get(), m.get("n"), r.get(), a.get()) == (101, [101], 101, 101, 101.0)
    # the table is keyed by (key, namespace)
    assert backend.table("v").get(("k2", Win(10, 20))) == 102
    assert backend.table("v").get(("k1", None)) == 0


@pytest.mark.parametrize("target_has_state", [True, False])
def test_merge_namespaces(backend: AbstractKeyedStateBackend, target_has_state: bool) -> None:
    lst = backend.get_list_state(ListStateDescriptor("l"))
    r = backend.get_reducing_state(ReducingStateDescriptor("r", _add))
    a = backend.get_aggregating_state(AggregatingStateDescriptor("a", Avg()))
    w1, w2, w3, target = Win(0, 5), Win(3, 8), Win(7, 9), Win(0, 9)
    for key in ("k", "other"):
        backend.current_key = key
        for ns, vals in ((w1, [1, 2]), (w2, [3]), (w3, [4, 5])) + (((target, [10]),) if target_has_state else ()):
            for h in (lst, r, a):
                h.set_current_namespace(ns)
            for x in vals:
                lst.add(x)
                r.add(x)
                a.add(x)
    backend.current_key = "k"
    for h in (lst, r, a):
        h.set_current_namespace(w1)
        # the target among the sources is skipped; a source without state is fine
        h.merge_namespaces(target, [w1, w2, target, w3, Win(50, 60)])
        assert h.get_current_namespace() == w1  # merging leaves the current namespace alone
    expected = [1, 2, 3, 4, 5]
    if target_has_state:
        expected = [10] + expected
    for h in (lst, r, a):
        h.set_current_namespace(target)
    assert sorted(lst.get()) == sorted(expected)
    assert lst.get()[0] == expected[0]  # target's contents first, then the sources'
    assert r.get() == sum(expected)
    assert a.get() == sum(expected) / len(expected)
    for ns in (w1, w2, w3):
        for h in (lst, r, a):
            h.set_current_namespace(ns)
        assert (lst.get(), r.get(), a.get()) == ([], None, None)
    # another key's windows are untouched
    backend.current_key = "other"
    for h in (lst, r, a):
        h.set_current_namespace(w3)
    assert (lst.get(), r.get(), a.get()) == ([4, 5], 9, 4.5)


def test_merge_needs_aggregate_merge(backend: AbstractKeyedStateBackend) -> None:
    class NoMerge:
        def create_accumulator(self) -> int:
            return 0

        def add(self, v: int, acc: int) -> int:
            return acc + v

        def get_result(self, acc: int) -> int:
            return acc

    a = backend.get_aggregating_state(AggregatingStateDescriptor("a", NoMerge()))
    backend.current_key = 1
    for ns in (Win(0, 1), Win(1, 2)):
        a.set_current_namespace(ns)
        a.add(1)
    with pytest.raises(TypeError, match="merge"):
        a.merge_namespaces(Win(0, 2), [Win(0, 1), Win(1, 2)])


# ------------------------------------------------------------------------------------------------------------
# Registration
# ------------------------------------------------------------------------------------------------------------


def test_handles_are_reused_per_name(backend: AbstractKeyedStateBackend) -> None:
    v1 = backend.get_state(ValueStateDescriptor("s"))
    v2 = backend.get_state(ValueStateDescriptor("s", "some type"))
    assert v1 is v2
    lst = backend.get_list_state(ListStateDescriptor("l"))
    assert backend.get_list_state(ListStateDescriptor("l")) is lst
    assert backend.get_map_state(MapStateDescriptor("m")) is backend.get_map_state(MapStateDescriptor("m"))
    assert backend.get_reducing_state(ReducingStateDescriptor("r", _add)) is backend.get_reducing_state(
        ReducingStateDescriptor("r", _add)
    )
    assert backend.get_aggregating_state(AggregatingStateDescriptor("a", Avg())) is backend.get_aggregating_state(
        AggregatingStateDescriptor("a", Avg())
    )
    assert sorted(backend.table_names()) == ["a", "l", "m", "r", "s"]


@pytest.mark.parametrize(
    "first, second",
    [
        (lambda b: b.get_state(ValueStateDescriptor("x")), lambda b: b.get_list_state(ListStateDescriptor("x"))),
        (lambda b: b.get_list_state(ListStateDescriptor("x")), lambda b: b.get_map_state(MapStateDescriptor("x"))),
        (
            lambda b: b.get_map_state(MapStateDescriptor("x")),
            lambda b: b.get_reducing_state(ReducingStateDescriptor("x", _add)),
        ),
        (
            lambda b: b.get_reducing_state(ReducingStateDescriptor("x", _add)),
            lambda b: b.get_aggregating_state(AggregatingStateDescriptor("x", Avg())),
        ),
        (
            lambda b: b.get_aggregating_state(AggregatingStateDescriptor("x", Avg())),
            lambda b: b.get_state(ValueStateDescriptor("x")),
        ),
    ],
)
def test_same_name_other_kind_is_refused(
    backend: AbstractKeyedStateBackend, first: Callable[[Any], Any], second: Callable[[Any], Any]
) -> None:
    first(backend)
    with pytest.raises(IncompatibleStateError, match="'x' is already registered as"):
        second(backend)


def test_same_name_with_and_without_ttl_is_refused(backend: AbstractKeyedStateBackend) -> None:
    backend.get_state(ValueStateDescriptor("v"))
    d = ValueStateDescriptor("v")
    d.enable_time_to_live(StateTtlConfig.new_builder(Time.seconds(1)).build())
    with pytest.raises(IncompatibleStateError, match="TTL"):
        backend.get_state(d)


def test_wrong_descriptor_type_is_refused(backend: AbstractKeyedStateBackend) -> None:
    with pytest.raises(TypeError, match="ValueStateDescriptor"):
        backend.get_state(ListStateDescriptor("l"))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="MapStateDescriptor"):
        backend.get_map_state("m")  # type: ignore[arg-type]


def test_backends_satisfy_the_protocol(backend: AbstractKeyedStateBackend) -> None:
    typed: KeyedStateBackend = backend  # checked by mypy as well
    assert isinstance(typed, KeyedStateBackend)
    assert not isinstance(object(), KeyedStateBackend)


def test_backend_arguments_are_checked(make: Callable[..., AbstractKeyedStateBackend]) -> None:
    with pytest.raises(ValueError, match="max_parallelism"):
        make(max_parallelism=0)
    with pytest.raises(ValueError, match="max_parallelism"):
        make(max_parallelism=32769)
    b = make(max_parallelism=32768)
    assert b.max_parallelism == 32768


def test_default_clock_is_wall_clock_ms(backend: AbstractKeyedStateBackend) -> None:
    import time

    assert backend.clock is wall_clock_ms
    assert abs(backend.clock() - time.time() * 1000) < 5_000


# ------------------------------------------------------------------------------------------------------------
# Raw tables
# ------------------------------------------------------------------------------------------------------------


def test_raw_table_mapping(backend: AbstractKeyedStateBackend) -> None:
    t = backend.table("window-contents")
    assert backend.table("window-contents") is t
    for k in range(10):
        t[(k, Win(0, 10))] = [k]
        t[(k, Win(10, 20))] = [k, k]
    assert t[(3, Win(0, 10))] == [3]
    assert t.get((3, Win(20, 30))) is None
    assert t.get((3, Win(20, 30)), "dflt") == "dflt"
    assert (3, Win(10, 20)) in t and (3, Win(20, 30)) not in t
    with pytest.raises(KeyError):
        t[(3, Win(20, 30))]
    with pytest.raises(KeyError):
        del t[(3, Win(20, 30))]
    lst = t[(4, Win(0, 10))]
    lst.append("more")
    t[(4, Win(0, 10))] = lst  # in place + write back
    assert t.pop((5, Win(0, 10))) == [5]
    assert t.pop((5, Win(0, 10)), "gone") == "gone"
    del t[(6, Win(0, 10))]
    assert t.setdefault((6, Win(0, 10)), ["new"]) == ["new"]
    assert len(t) == 19
    expected: dict[tuple[int, Win], list[Any]] = {(k, Win(0, 10)): [k] for k in range(10) if k != 5}
    expected.update({(k, Win(10, 20)): [k, k] for k in range(10)})
    expected[(4, Win(0, 10))] = [4, "more"]
    expected[(6, Win(0, 10))] = ["new"]
    assert dict(t.items()) == expected
    assert set(t) == set(expected)
    assert sorted(map(repr, t.values())) == sorted(map(repr, expected.values()))
    t.clear()
    assert len(t) == 0 and t.get((1, Win(0, 10))) is None
    assert "window-contents" in backend.table_names()


def test_hashmap_tables_are_dicts() -> None:
    b = HashMapKeyedStateBackend()
    t = b.table("t")
    assert type(t) is dict
    v = b.get_state(ValueStateDescriptor("v"))
    b.current_key = "k"
    v.update(1)
    assert b.tables["v"] == {("k", None): 1}


def test_iter_key_group_returns_exactly_the_groups_keys(make: Callable[..., AbstractKeyedStateBackend]) -> None:
    mp = 8
    b = make(max_parallelism=mp)
    v = b.get_state(ValueStateDescriptor("v"))
    lst = b.get_list_state(ListStateDescriptor("l"))
    raw = b.table("raw")
    keys: list[Any] = [f"user-{i}" for i in range(60)] + list(range(40)) + [("t", i) for i in range(10)]
    expected: set[tuple[str, Any, Any, Any]] = set()
    for k in keys:
        b.current_key = k
        v.update(repr(k))
        expected.add(("v", k, None, repr(k)))
        if len(repr(k)) % 2:
            lst.set_current_namespace(Win(0, 1))
            lst.add(1)
            expected.add(("l", k, Win(0, 1), (1,)))
        raw[(k, "ns")] = 7
        expected.add(("raw", k, "ns", 7))
    v.clear()  # a deleted entry is not listed
    expected.discard(("v", keys[-1], None, repr(keys[-1])))
    seen: set[tuple[str, Any, Any, Any]] = set()
    for g in range(mp):
        for name, key, ns, value in b.iter_key_group(g):
            assert key_group_for(key, mp) == g
            item = (name, key, ns, tuple(value) if isinstance(value, list) else value)
            assert item not in seen
            seen.add(item)
    assert seen == expected
    counts = [sum(1 for _ in b.iter_key_group(g)) for g in range(mp)]
    assert sum(counts) == len(expected) and sum(1 for c in counts if c) > mp // 2
