"""The benchmark workloads: user functions, job builders and their single-process baselines.

The user functions live here, at module level, so the job and its baseline call the very same code.
``benchmarks.run`` registers this module with cloudpickle to be pickled by value, so TaskManagers
that cannot import ``benchmarks`` still run the jobs.
"""

from __future__ import annotations

from typing import Any

from weir.datastream import StreamExecutionEnvironment
from weir.datastream.connectors import NumberSequenceSource, Sink, SinkWriter
from weir.datastream.functions import RuntimeContext

W2_KEYS = 10_000
"""Distinct keys of the W2 keyed reduce."""


# ---- user functions (shared by the jobs and the baselines) ----

def double(x: int) -> int:
    """W1 map: x -> 2x."""
    return x * 2


def not_multiple_of_3(x: int) -> bool:
    """W1 filter: keep x unless it is a multiple of 3."""
    return x % 3 != 0


def to_key_one(x: int) -> tuple[int, int]:
    """W2 map: x -> (key, 1) with ``W2_KEYS`` distinct keys."""
    return (x % W2_KEYS, 1)


def first_field(pair: tuple[int, int]) -> int:
    """W2 key selector: the key of a (key, count) pair."""
    return pair[0]


def sum_counts(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    """W2 reduce: add the counts of two pairs of the same key."""
    return (a[0], a[1] + b[1])


# ---- a discarding sink ----

class _CountingWriter(SinkWriter):
    """Counts the records it receives and drops them."""

    def __init__(self) -> None:
        self.count = 0

    def write_batch(self, values: list[Any]) -> None:
        """Count one buffer of records."""
        self.count += len(values)


class CountingSink(Sink):
    """A sink whose writers only count: measures the pipeline, not an external system."""

    def create_writer(self, ctx: RuntimeContext) -> SinkWriter:
        """One counting writer per subtask."""
        return _CountingWriter()


# ---- jobs ----

def build_w1(env: StreamExecutionEnvironment, records: int) -> None:
    """W1: NumberSequenceSource -> map -> filter -> discarding sink, all chained, parallelism 1."""
    env.set_parallelism(1)
    (
        env.from_source(NumberSequenceSource(0, records - 1), source_name="Numbers")
        .map(double)
        .filter(not_multiple_of_3)
        .sink_to(CountingSink())
        .name("Discard")
    )


def build_w2(env: StreamExecutionEnvironment, records: int) -> None:
    """W2: NumberSequenceSource -> map to (key, 1) -> key_by -> reduce (sum) -> discarding sink, parallelism 2."""
    env.set_parallelism(2)
    (
        env.from_source(NumberSequenceSource(0, records - 1), source_name="Numbers")
        .map(to_key_one)
        .key_by(first_field)
        .reduce(sum_counts)
        .sink_to(CountingSink())
        .name("Discard")
    )


# ---- baselines: one plain loop in this process, same functions, same records ----

def baseline_w1(records: int) -> int:
    """W1 as a plain loop; returns the number of records that reach the sink."""
    f_map, f_filter = double, not_multiple_of_3
    count = 0
    for x in range(records):
        y = f_map(x)
        if f_filter(y):
            count += 1
    return count


_MISSING = object()


def baseline_w2(records: int) -> int:
    """W2 as a plain loop with a dict for the keyed state; the reduce's outputs are discarded."""
    f_map, f_key, f_reduce = to_key_one, first_field, sum_counts
    state: dict[Any, Any] = {}
    get = state.get
    count = 0
    for x in range(records):
        v: Any = f_map(x)
        k = f_key(v)
        acc = get(k, _MISSING)
        if acc is not _MISSING:
            v = f_reduce(acc, v)
        state[k] = v
        count += 1
    return count
