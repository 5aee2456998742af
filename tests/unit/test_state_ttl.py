"""State TTL (Flink's semantics) on both backends, with a fake processing-time clock.

An entry written at t with ttl T is visible while now < t + T and expired from now >= t + T. OnCreateAndWrite
sets t on writes; OnReadAndWrite also on reads. NeverReturnExpired never returns an expired value;
ReturnExpiredIfNotCleanedUp returns it if still stored. A read that meets an expired entry removes it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from state.backend import AbstractKeyedStateBackend
from state.memory import HashMapKeyedStateBackend
from state.rocksdb import RocksDBKeyedStateBackend
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

TTL = 100
NEVER = StateTtlConfig.StateVisibility.NeverReturnExpired
RETURN = StateTtlConfig.StateVisibility.ReturnExpiredIfNotCleanedUp
ON_WRITE = StateTtlConfig.UpdateType.OnCreateAndWrite
ON_READ = StateTtlConfig.UpdateType.OnReadAndWrite


class FakeClock:
    def __init__(self, now: int = 1_000_000) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now

    def set(self, offset: int) -> None:
        """Set the time to ``offset`` ms after the start."""
        self.now = 1_000_000 + offset


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


@pytest.fixture(params=["hashmap", "rocksdb", "rocksdb-cache3"])
def env(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[tuple[AbstractKeyedStateBackend, FakeClock]]:
    clock = FakeClock()
    b: AbstractKeyedStateBackend
    if request.param == "hashmap":
        b = HashMapKeyedStateBackend(clock=clock)
    else:
        b = RocksDBKeyedStateBackend(
            tmp_path / "db", cache_entries=3 if request.param == "rocksdb-cache3" else 1000, clock=clock
        )
    b.current_key = "k"
    yield b, clock
    b.dispose()


def ttl(desc: StateDescriptor, update: StateTtlConfig.UpdateType = ON_WRITE, vis: Any = NEVER) -> Any:
    desc.enable_time_to_live(
        StateTtlConfig.new_builder(Time.milliseconds(TTL)).set_update_type(update).set_state_visibility(vis).build()
    )
    return desc


Env = tuple[AbstractKeyedStateBackend, FakeClock]


# ------------------------------------------------------------------------------------------------------------
# ValueState
# ------------------------------------------------------------------------------------------------------------


def test_value_expires_ttl_after_the_write(env: Env) -> None:
    b, clock = env
    v = b.get_state(ttl(ValueStateDescriptor("v")))
    clock.set(0)
    v.update("x")
    clock.set(50)
    assert v.value() == "x"  # a read does not extend the life with OnCreateAndWrite
    clock.set(TTL - 1)
    assert v.value() == "x"
    clock.set(TTL)
    assert v.value() is None
    assert b.table("v").get(("k", None)) is None  # the expired entry was removed when seen
    v.update("y")  # a write creates it anew
    clock.set(TTL + TTL - 1)
    assert v.value() == "y"


def test_value_write_extends_life(env: Env) -> None:
    b, clock = env
    v = b.get_state(ttl(ValueStateDescriptor("v")))
    clock.set(0)
    v.update(1)
    clock.set(60)
    v.update(2)
    clock.set(60 + TTL - 1)
    assert v.value() == 2
    clock.set(60 + TTL)
    assert v.value() is None


def test_value_on_read_and_write_extends_on_read(env: Env) -> None:
    b, clock = env
    v = b.get_state(ttl(ValueStateDescriptor("v"), ON_READ))
    clock.set(0)
    v.update(1)
    clock.set(60)
    assert v.value() == 1
    clock.set(60 + TTL - 1)
    assert v.value() == 1  # refreshed again, to 159
    clock.set(60 + TTL - 1 + TTL - 1)
    assert v.value() == 1
    clock.set(60 + TTL - 1 + TTL - 1 + TTL)
    assert v.value() is None


def test_value_return_expired_if_not_cleaned_up(env: Env) -> None:
    b, clock = env
    v = b.get_state(ttl(ValueStateDescriptor("v"), vis=RETURN))
    clock.set(0)
    v.update("old")
    clock.set(TTL + 5)
    assert v.value() == "old"  # expired but still stored: returned, and cleaned up by this read
    assert v.value() is None


def test_value_ttl_is_per_key(env: Env) -> None:
    b, clock = env
    v = b.get_state(ttl(ValueStateDescriptor("v")))
    clock.set(0)
    b.current_key = "early"
    v.update(1)
    clock.set(50)
    b.current_key = "late"
    v.update(2)
    clock.set(TTL)
    assert v.value() == 2
    b.current_key = "early"
    assert v.value() is None


def test_disabled_update_type_means_no_ttl(env: Env) -> None:
    b, clock = env
    d = ValueStateDescriptor("v")
    d.enable_time_to_live(StateTtlConfig.new_builder(Time.milliseconds(1)).set_update_type(
        StateTtlConfig.UpdateType.Disabled).build())
    assert d.get_ttl_config() is None
    v = b.get_state(d)
    assert v.ttl_config is None
    v.update("forever")
    clock.set(10**9)
    assert v.value() == "forever"
    assert b.table("v")[("k", None)] == "forever"  # stored unwrapped


# ------------------------------------------------------------------------------------------------------------
# ListState: TTL per element
# ------------------------------------------------------------------------------------------------------------


def test_list_ttl_is_per_element(env: Env) -> None:
    b, clock = env
    s = b.get_list_state(ttl(ListStateDescriptor("l")))
    clock.set(0)
    s.add("a")
    clock.set(50)
    s.add_all(["b", "c"])
    clock.set(TTL - 1)
    assert s.get() == ["a", "b", "c"]
    clock.set(TTL)
    assert s.get() == ["b", "c"]
    assert [e for e, _ in b.table("l")[("k", None)]] == ["b", "c"]  # "a" is gone from storage
    clock.set(50 + TTL)
    assert s.get() == []
    assert ("k", None) not in b.table("l")


def test_list_update_stamps_every_element(env: Env) -> None:
    b, clock = env
    s = b.get_list_state(ttl(ListStateDescriptor("l")))
    clock.set(0)
    s.add("old")
    clock.set(90)
    s.update(["x", "y"])
    clock.set(90 + TTL - 1)
    assert s.get() == ["x", "y"]
    clock.set(90 + TTL)
    assert s.get() == []


def test_list_return_expired_if_not_cleaned_up(env: Env) -> None:
    b, clock = env
    s = b.get_list_state(ttl(ListStateDescriptor("l"), vis=RETURN))
    clock.set(0)
    s.add("a")
    clock.set(50)
    s.add("b")
    clock.set(TTL)
    assert s.get() == ["a", "b"]  # returned once ...
    assert s.get() == ["b"]  # ... and cleaned up by that read


def test_list_on_read_and_write_refreshes_elements(env: Env) -> None:
    b, clock = env
    s = b.get_list_state(ttl(ListStateDescriptor("l"), ON_READ))
    clock.set(0)
    s.add("a")
    clock.set(90)
    assert s.get() == ["a"]
    clock.set(90 + TTL - 1)
    assert s.get() == ["a"]
    clock.set(90 + TTL - 1 + TTL)
    assert s.get() == []


def test_list_merge_keeps_element_timestamps(env: Env) -> None:
    b, clock = env
    s = b.get_list_state(ttl(ListStateDescriptor("l")))
    clock.set(0)
    s.set_current_namespace("w1")
    s.add("early")
    clock.set(50)
    s.set_current_namespace("w2")
    s.add("late")
    s.merge_namespaces("w", ["w1", "w2"])
    s.set_current_namespace("w")
    assert s.get() == ["early", "late"]
    clock.set(TTL)
    assert s.get() == ["late"]


# ------------------------------------------------------------------------------------------------------------
# MapState: TTL per entry
# ------------------------------------------------------------------------------------------------------------


def test_map_ttl_is_per_entry(env: Env) -> None:
    b, clock = env
    m = b.get_map_state(ttl(MapStateDescriptor("m")))
    clock.set(0)
    m.put("x", 1)
    clock.set(50)
    m.put_all({"y": 2, "z": 3})
    clock.set(TTL)
    assert m.get("x") is None
    assert not m.contains("x")
    assert m.get("y") == 2 and m.contains("z")
    assert sorted(m.items()) == [("y", 2), ("z", 3)]
    assert sorted(m.keys()) == ["y", "z"] and sorted(m.values()) == [2, 3]
    assert not m.is_empty()
    assert set(b.table("m")[("k", None)]) == {"y", "z"}
    clock.set(50 + TTL)
    assert m.is_empty()
    assert m.items() == []
    assert ("k", None) not in b.table("m")


def test_map_put_refreshes_only_that_entry(env: Env) -> None:
    b, clock = env
    m = b.get_map_state(ttl(MapStateDescriptor("m")))
    clock.set(0)
    m.put_all({"x": 1, "y": 2})
    clock.set(60)
    m.put("x", 10)
    clock.set(TTL)
    assert m.items() == [("x", 10)]
    clock.set(60 + TTL)
    assert m.get("x") is None


def test_map_on_read_and_write_refreshes_read_entries(env: Env) -> None:
    b, clock = env
    m = b.get_map_state(ttl(MapStateDescriptor("m"), ON_READ))
    clock.set(0)
    m.put_all({"x": 1, "y": 2})
    clock.set(60)
    assert m.get("x") == 1  # refreshes x only
    clock.set(TTL)
    assert m.contains("x") and not m.contains("y")
    clock.set(TTL + TTL - 1)
    assert m.items() == [("x", 1)]  # x was refreshed by contains() at TTL
    clock.set(TTL + TTL - 1 + TTL)
    assert m.is_empty()


def test_map_return_expired_if_not_cleaned_up(env: Env) -> None:
    b, clock = env
    m = b.get_map_state(ttl(MapStateDescriptor("m"), vis=RETURN))
    clock.set(0)
    m.put_all({"x": 1, "y": 2})
    clock.set(TTL)
    assert m.contains("x")  # expired, still stored: visible once
    assert not m.contains("x")
    assert m.get("y") == 2
    assert m.get("y") is None
    assert m.is_empty()


def test_map_remove_and_clear_with_ttl(env: Env) -> None:
    b, clock = env
    m = b.get_map_state(ttl(MapStateDescriptor("m")))
    m.put_all({"x": 1, "y": 2})
    m.remove("x")
    m.remove("nope")
    assert m.items() == [("y", 2)]
    m.clear()
    assert m.is_empty()


# ------------------------------------------------------------------------------------------------------------
# Reducing and aggregating
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("vis, expected_after_expiry", [(NEVER, 5), (RETURN, 8)])
def test_reducing_ttl(env: Env, vis: Any, expected_after_expiry: int) -> None:
    b, clock = env
    r = b.get_reducing_state(ttl(ReducingStateDescriptor("r", _add), vis=vis))
    clock.set(0)
    r.add(1)
    r.add(2)
    clock.set(TTL - 1)
    assert r.get() == 3
    clock.set(TTL)
    # adding to an expired accumulator: dropped with NeverReturnExpired, still used when it may be returned
    r.add(5)
    assert r.get() == expected_after_expiry
    clock.set(TTL + TTL)
    assert r.get() == (expected_after_expiry if vis is RETURN else None)
    assert r.get() is None


@pytest.mark.parametrize("vis, expected_after_expiry", [(NEVER, 5), (RETURN, 8)])
def test_aggregating_ttl(env: Env, vis: Any, expected_after_expiry: int) -> None:
    b, clock = env
    a = b.get_aggregating_state(ttl(AggregatingStateDescriptor("a", Sum()), vis=vis))
    clock.set(0)
    a.add(1)
    a.add(2)
    clock.set(TTL - 1)
    assert a.get() == 3
    clock.set(TTL)
    a.add(5)
    assert a.get() == expected_after_expiry
    clock.set(TTL + TTL)
    assert a.get() == (expected_after_expiry if vis is RETURN else None)
    assert a.get() is None


def test_reducing_on_read_and_write(env: Env) -> None:
    b, clock = env
    r = b.get_reducing_state(ttl(ReducingStateDescriptor("r", _add), ON_READ))
    clock.set(0)
    r.add(1)
    clock.set(90)
    assert r.get() == 1
    clock.set(90 + TTL - 1)
    assert r.get() == 1
    clock.set(90 + TTL - 1 + TTL)
    assert r.get() is None


def test_merging_accumulators_drops_expired_sources(env: Env) -> None:
    b, clock = env
    r = b.get_reducing_state(ttl(ReducingStateDescriptor("r", _add)))
    a = b.get_aggregating_state(ttl(AggregatingStateDescriptor("a", Sum())))
    clock.set(0)
    for h in (r, a):
        h.set_current_namespace("old")
        h.add(100)
    clock.set(60)
    for h in (r, a):
        h.set_current_namespace("new")
        h.add(1)
        h.set_current_namespace("target")
        h.add(2)
    clock.set(TTL)  # "old" has expired, the others have not
    for h in (r, a):
        h.merge_namespaces("target", ["old", "new"])
        h.set_current_namespace("target")
        assert h.get() == 3
        h.set_current_namespace("old")
        assert h.get() is None
    clock.set(TTL + TTL - 1)  # the merged accumulator was written at TTL
    for h in (r, a):
        h.set_current_namespace("target")
        assert h.get() == 3


def test_ttl_value_is_stored_with_its_timestamp(env: Env) -> None:
    b, clock = env
    v = b.get_state(ttl(ValueStateDescriptor("v")))
    clock.set(7)
    v.update("x")
    assert b.table("v")[("k", None)] == ("x", clock.now)
    got = {(name, key): value for g in range(b.max_parallelism) for name, key, _, value in b.iter_key_group(g)}
    assert got == {("v", "k"): ("x", clock.now)}

