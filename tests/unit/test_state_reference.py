"""Reference test: the same random operations applied to the hashmap backend, to RocksDB backends with a tiny
and a small cache (closed and reopened now and then), and to a plain-dict model of the state semantics, must
give the same result for every operation and the same final contents."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from state.backend import AbstractKeyedStateBackend
from state.memory import HashMapKeyedStateBackend
from state.rocksdb import RocksDBKeyedStateBackend
from weir.datastream.state import (
    AggregatingStateDescriptor,
    ListStateDescriptor,
    MapStateDescriptor,
    ReducingStateDescriptor,
    ValueStateDescriptor,
)


@dataclass(frozen=True)
class Win:
    start: int
    end: int


class SumCount:
    def create_accumulator(self) -> tuple[int, int]:
        return (0, 0)

    def add(self, value: int, acc: tuple[int, int]) -> tuple[int, int]:
        return (acc[0] + value, acc[1] + 1)

    def get_result(self, acc: tuple[int, int]) -> tuple[int, int]:
        return acc

    def merge(self, a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
        return (a[0] + b[0], a[1] + b[1])


def _add(a: int, b: int) -> int:
    return a + b


KEYS: list[Any] = list(range(12)) + [f"user-{i}" for i in range(8)] + [("t", 1), ("t", 2)]
NAMESPACES: list[Any] = [None, Win(0, 10), Win(10, 20), Win(5, 15), "global"]
MAP_KEYS = ["a", "b", "c", 1, 2]
OPS = [
    "v.value", "v.update", "v.update_none", "v.clear",
    "l.get", "l.add", "l.add_all", "l.update", "l.clear", "l.merge",
    "m.get", "m.put", "m.put_all", "m.remove", "m.contains", "m.items", "m.is_empty", "m.clear",
    "r.get", "r.add", "r.clear", "r.merge",
    "a.get", "a.add", "a.clear", "a.merge",
    "raw.get", "raw.set", "raw.pop", "raw.contains",
]


class Model:
    """The semantics of keyed state, written as plainly as possible over one dict."""

    def __init__(self) -> None:
        self.d: dict[tuple[str, Any, Any], Any] = {}

    def apply(self, op: str, key: Any, ns: Any, arg: Any) -> Any:
        d = self.d
        kind = op.split(".")[0]
        e = (kind, key, ns)
        if op == "v.value" or op == "r.get" or op == "raw.get":
            return d.get(e)
        if op == "v.update" or op == "raw.set":
            d[e] = arg
            return None
        if op.endswith(".clear") or op == "v.update_none":
            d.pop(e, None)
            return None
        if op == "l.get":
            return list(d.get(e, []))
        if op == "l.add":
            d.setdefault(e, []).append(arg)
            return None
        if op == "l.add_all":
            if arg:
                d.setdefault(e, []).extend(arg)
            return None
        if op == "l.update":
            if arg:
                d[e] = list(arg)
            else:
                d.pop(e, None)
            return None
        if op in ("l.merge", "r.merge", "a.merge"):
            target, sources = arg
            merged: Any = None
            for s in sources:
                if s == target or (kind, key, s) not in d:
                    continue
                v = d.pop((kind, key, s))
                merged = v if merged is None else self._merge(kind, merged, v)
            if merged is not None:
                t = d.get((kind, key, target))
                d[(kind, key, target)] = merged if t is None else self._merge(kind, t, merged)
            return None
        if op == "m.get":
            return d.get(e, {}).get(arg)
        if op == "m.put":
            d.setdefault(e, {})[arg[0]] = arg[1]
            return None
        if op == "m.put_all":
            if arg:
                d.setdefault(e, {}).update(arg)
            return None
        if op == "m.remove":
            m = d.get(e)
            if m is not None:
                m.pop(arg, None)
                if not m:
                    del d[e]
            return None
        if op == "m.contains":
            return arg in d.get(e, {})
        if op == "m.items":
            return sorted(d.get(e, {}).items(), key=repr)
        if op == "m.is_empty":
            return not d.get(e)
        if op == "r.add":
            d[e] = arg if e not in d else d[e] + arg
            return None
        if op == "a.get":
            return d.get(e)
        if op == "a.add":
            s, c = d.get(e, (0, 0))
            d[e] = (s + arg, c + 1)
            return None
        if op == "raw.pop":
            return d.pop(e, "absent")
        if op == "raw.contains":
            return e in d
        raise AssertionError(op)

    @staticmethod
    def _merge(kind: str, a: Any, b: Any) -> Any:
        if kind == "l":
            return a + b
        if kind == "r":
            return a + b
        return (a[0] + b[0], a[1] + b[1])

    def contents(self) -> dict[str, dict[tuple[Any, Any], Any]]:
        out: dict[str, dict[tuple[Any, Any], Any]] = {}
        for (kind, key, ns), v in self.d.items():
            out.setdefault(kind, {})[(key, ns)] = v
        return out


class Subject:
    """One backend and its handles."""

    def __init__(self, make: Any) -> None:
        self.make = make
        self.backend: AbstractKeyedStateBackend = make()
        self._bind()

    def _bind(self) -> None:
        b = self.backend
        self.h: dict[str, Any] = {
            "v": b.get_state(ValueStateDescriptor("v")),
            "l": b.get_list_state(ListStateDescriptor("l")),
            "m": b.get_map_state(MapStateDescriptor("m")),
            "r": b.get_reducing_state(ReducingStateDescriptor("r", _add)),
            "a": b.get_aggregating_state(AggregatingStateDescriptor("a", SumCount())),
        }
        self.raw = b.table("raw")

    def reopen(self) -> None:
        if isinstance(self.backend, RocksDBKeyedStateBackend):
            self.backend.close()
            self.backend = self.make()
            self._bind()

    def apply(self, op: str, key: Any, ns: Any, arg: Any) -> Any:
        self.backend.current_key = key
        kind, what = op.split(".")
        if kind == "raw":
            e = (key, ns)
            if what == "get":
                return self.raw.get(e)
            if what == "set":
                self.raw[e] = arg
                return None
            if what == "pop":
                return self.raw.pop(e, "absent")
            return e in self.raw
        h = self.h[kind]
        h.set_current_namespace(ns)
        if what == "merge":
            h.merge_namespaces(*arg)
            return None
        if what == "update_none":
            h.update(None)
            return None
        if op == "m.put":
            h.put(*arg)
            return None
        if op == "m.items":
            return sorted(h.items(), key=repr)
        if what in ("get", "contains", "remove") and kind == "m":
            return getattr(h, what)(arg)
        if what in ("value", "get", "clear", "is_empty"):
            return getattr(h, what)()
        getattr(h, what)(arg)
        return None

    def contents(self) -> dict[str, dict[tuple[Any, Any], Any]]:
        out = {}
        for kind in ("v", "l", "m", "r", "a", "raw"):
            t = dict(self.backend.table(kind).items())
            if t:
                out[kind] = t
        return out


def _arg(rnd: random.Random, op: str) -> Any:
    if op in ("v.update", "raw.set"):
        return rnd.choice([rnd.randint(0, 99), f"s{rnd.randint(0, 9)}", (1, "x"), [rnd.randint(0, 3)]])
    if op in ("l.add", "r.add", "a.add"):
        return rnd.randint(0, 99)
    if op in ("l.add_all", "l.update"):
        return [rnd.randint(0, 99) for _ in range(rnd.randint(0, 3))]
    if op in ("m.get", "m.remove", "m.contains"):
        return rnd.choice(MAP_KEYS)
    if op == "m.put":
        return (rnd.choice(MAP_KEYS), rnd.choice([rnd.randint(0, 9), None, "v"]))
    if op == "m.put_all":
        return {rnd.choice(MAP_KEYS): rnd.randint(0, 9) for _ in range(rnd.randint(0, 3))}
    if op.endswith(".merge"):
        target = rnd.choice(NAMESPACES)
        return target, rnd.sample(NAMESPACES, rnd.randint(1, 3))
    return None


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_operations_agree_with_the_model(tmp_path: Path, seed: int) -> None:
    rnd = random.Random(seed)
    subjects = {
        "hashmap": Subject(lambda: HashMapKeyedStateBackend(max_parallelism=16)),
        "rocksdb-cache3": Subject(
            lambda: RocksDBKeyedStateBackend(tmp_path / "tiny", max_parallelism=16, cache_entries=3)
        ),
        "rocksdb-cache40": Subject(
            lambda: RocksDBKeyedStateBackend(tmp_path / "small", max_parallelism=16, cache_entries=40)
        ),
    }
    model = Model()
    checked = 0
    for step in range(3000):
        if step % 500 == 499:
            for s in subjects.values():
                s.reopen()
        if step % 97 == 0:
            for s in subjects.values():
                s.backend.flush()
        op = rnd.choice(OPS)
        key, ns = rnd.choice(KEYS), rnd.choice(NAMESPACES)
        arg = _arg(rnd, op)
        expected = model.apply(op, key, ns, arg)
        for name, s in subjects.items():
            got = s.apply(op, key, ns, arg)
            assert got == expected, f"step {step}: {op}{(key, ns, arg)} on {name}: {got!r} != {expected!r}"
        checked += expected is not None and expected != [] and expected is not False
    assert checked > 300  # the operations did read back state, not only absences

    final = model.contents()
    assert sum(len(t) for t in final.values()) > 50
    for name, s in subjects.items():
        assert s.contents() == final, name
    # every backend lists the same entries per key group
    groups = {
        name: sorted(repr(e) for g in range(16) for e in s.backend.iter_key_group(g)) for name, s in subjects.items()
    }
    assert groups["hashmap"] == groups["rocksdb-cache3"] == groups["rocksdb-cache40"]
    assert len(groups["hashmap"]) == sum(len(t) for t in final.values())
    for s in subjects.values():
        s.backend.dispose()
