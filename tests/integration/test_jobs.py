"""Jobs on a real cluster (1 JobManager + 2 TaskManagers as processes) give exactly the right results."""

from __future__ import annotations

import collections
import os
from pathlib import Path

import pytest

from weir.datastream import StreamExecutionEnvironment
from weir.datastream.connectors import FileSink, NumberSequenceSource
from weir.datastream.functions import FlatMapFunction, ProcessFunction, RuntimeContext

pytestmark = pytest.mark.integration


class Tag(ProcessFunction):
    """Emits (value, subtask index, parallelism): proves RuntimeContext reaches the function on the cluster."""

    def open(self, runtime_context: RuntimeContext) -> None:
        self.index = runtime_context.get_index_of_this_subtask()
        self.n = runtime_context.get_number_of_parallel_subtasks()

    def process_element(self, value, ctx):  # type: ignore[no-untyped-def]
        yield (value, self.index, self.n)


class Split(FlatMapFunction):
    def flat_map(self, value):  # type: ignore[no-untyped-def]
        yield from value.split()


def pipeline(env: StreamExecutionEnvironment, n: int):  # type: ignore[no-untyped-def]
    nums = env.from_source(NumberSequenceSource(1, n), None, "nums")
    words = env.from_collection([f"w{i % 7} w{i % 5}" for i in range(500)]).flat_map(Split())
    evens = nums.filter(lambda x: x % 2 == 0).map(lambda x: f"e{x % 11}")
    return (
        evens.union(words)
        .rebalance()
        .map(lambda w: (w, 1))
        .key_by(lambda t: t[0])
        .reduce(lambda a, b: (a[0], a[1] + b[1]))
    )


def reference(n: int) -> collections.Counter:
    """Rolling per-key counts, as a multiset of (key, count so far) -- computed without weir."""
    keys = [f"e{x % 11}" for x in range(1, n + 1) if x % 2 == 0]
    for i in range(500):
        keys += [f"w{i % 7}", f"w{i % 5}"]
    totals = collections.Counter(keys)
    return collections.Counter((k, c) for k, total in totals.items() for c in range(1, total + 1))


@pytest.mark.parametrize("parallelism", [1, 2])
def test_same_results_at_parallelism_1_and_2(on_cluster: str, parallelism: int) -> None:
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(parallelism)
    got = collections.Counter(pipeline(env, 20_000).execute_and_collect())
    assert got == reference(20_000)


def test_keyed_reduce_over_a_million_records_equals_reference(on_cluster: str) -> None:
    n = 1_000_000
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(2)
    ds = (
        env.from_source(NumberSequenceSource(0, n - 1), None, "nums")
        .map(lambda x: (x * 7919 % 1000, x))
        .key_by(lambda t: t[0])
        .reduce(lambda a, b: (a[0], a[1] + b[1]))
    )
    final: dict[int, int] = {}
    count = 0
    for k, s in ds.execute_and_collect():
        count += 1
        final[k] = max(final.get(k, -1), s)  # rolling sums only grow: the max is the total
    expected: dict[int, int] = collections.defaultdict(int)
    for x in range(n):
        expected[x * 7919 % 1000] += x
    assert count == n
    assert final == expected


def test_broadcast_and_runtime_context(on_cluster: str) -> None:
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(2)
    out = env.from_collection(list(range(100))).broadcast().process(Tag()).execute_and_collect()
    got = sorted(out)
    assert got == sorted((v, i, 2) for v in range(100) for i in range(2))


def test_file_sink_writes_one_file_per_subtask(on_cluster: str, tmp_path: Path) -> None:
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(2)
    from weir.common.serialization import Encoder

    env.from_source(NumberSequenceSource(1, 5000), None, "nums").map(lambda x: x * 3).sink_to(
        FileSink.for_row_format(str(tmp_path), Encoder.simple_string_encoder()).build()
    )
    env.execute("file sink")
    files = sorted(os.listdir(tmp_path))
    assert len(files) == 2 and not any(f.startswith(".") for f in files), files
    lines = [int(x) for f in files for x in (tmp_path / f).read_text().split()]
    assert sorted(lines) == [x * 3 for x in range(1, 5001)]


def test_shuffle_and_forward_deliver_every_record_once(on_cluster: str) -> None:
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(2)
    ds = env.from_source(NumberSequenceSource(1, 30_000), None, "n").shuffle().map(lambda x: x + 1).forward()
    assert sorted(ds.filter(lambda x: x % 2 == 0).execute_and_collect()) == list(range(2, 30_002, 2))


def test_execute_and_collect_with_limit_cancels_the_rest(on_cluster: str, jm) -> None:  # type: ignore[no-untyped-def]
    env = StreamExecutionEnvironment.get_execution_environment()
    first = env.from_source(NumberSequenceSource(1, 10**9), None, "endless").execute_and_collect(limit=10)
    assert first == list(range(1, 11))
    from tests.integration.procs import wait_for

    wait_for(lambda: all(j.is_terminal for j in jm.list_jobs()), 15, "the endless job to be canceled")


def test_file_source_reads_every_line_once(on_cluster: str, tmp_path: Path) -> None:
    from weir.datastream.connectors.file_system import FileSource, StreamFormat

    expected = []
    for f in range(5):
        lines = [f"f{f}-{i}" for i in range(1_000 + f * 137)]
        expected += lines
        (tmp_path / f"part-{f}.txt").write_text("\n".join(lines) + "\n")
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(2)
    src = FileSource.for_record_stream_format(StreamFormat.text_line_format(), str(tmp_path)).build()
    got = env.from_source(src, None, "files").map(str.upper).execute_and_collect()
    assert sorted(got) == sorted(s.upper() for s in expected)
