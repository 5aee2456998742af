"""The vectorized path on a real cluster: map_batches / filter_batches / aggregate_batches give the record path's
results at parallelism 1 and 2, keep event timestamps and watermarks, survive a restart from a checkpoint, and fail
the job with the user's traceback or a clear error."""

from __future__ import annotations

import collections
import os
import time
from pathlib import Path
from typing import Any

import pytest

pa = pytest.importorskip("pyarrow")
pc = pytest.importorskip("pyarrow.compute")

from weir.common import Row, Time, WatermarkStrategy  # noqa: E402
from weir.common.serialization import Encoder  # noqa: E402
from weir.datastream import StreamExecutionEnvironment  # noqa: E402
from weir.datastream.connectors import FileSink, NumberSequenceSource  # noqa: E402
from weir.datastream.execution import JobExecutionException  # noqa: E402
from weir.datastream.functions import MapFunction, RuntimeContext  # noqa: E402
from weir.datastream.window import TumblingEventTimeWindows  # noqa: E402

pytestmark = pytest.mark.integration

N = 30_000


def to_record(x: int) -> tuple[int, float, str]:
    return (x % 13, x * 0.25, f"s{x % 5}")


def transform(r: tuple[int, float, str]) -> tuple[int, float, str]:
    return (r[0] * 3 + 1, r[1] - r[0], r[2])


def transform_columns(b: Any) -> dict[str, Any]:
    """``transform`` over columns."""
    return {"k": pc.add(pc.multiply(b["f0"], 3), 1), "v": pc.subtract(b["f1"], b["f0"]), "s": b["f2"]}


def keep(r: tuple[int, float, str]) -> bool:
    return r[2] != "s1"


def keep_columns(b: Any) -> Any:
    return pc.not_equal(b["s"], "s1")


def record_pipeline(env: StreamExecutionEnvironment) -> Any:
    nums = env.from_source(NumberSequenceSource(1, N), None, "nums")
    return nums.map(to_record).map(transform).filter(keep)


def batch_pipeline(env: StreamExecutionEnvironment) -> Any:
    nums = env.from_source(NumberSequenceSource(1, N), None, "nums")
    return nums.map(to_record).map_batches(transform_columns).filter_batches(keep_columns)


@pytest.mark.parametrize("parallelism", [1, 2])
def test_map_batches_equals_map_at_parallelism(on_cluster: str, parallelism: int) -> None:
    results = []
    for build in (record_pipeline, batch_pipeline):
        env = StreamExecutionEnvironment.get_execution_environment()
        env.set_parallelism(parallelism)
        results.append(collections.Counter(build(env).execute_and_collect()))
    expected, got = results
    assert sum(expected.values()) == sum(1 for x in range(1, N + 1) if x % 5 != 1)
    assert got == expected


def ranged(x: int) -> tuple[int, float, int]:
    """8 keys, each from a contiguous range of the numbers, so one source subtask produces all of a key's records
    and their order at the keyed operator is the same in every run (rolling outputs depend on it)."""
    return (x * 8 // (N + 1), x * 0.25, x % 7)


@pytest.mark.parametrize("parallelism", [1, 2])
def test_aggregate_batches_equals_rolling_sum(on_cluster: str, parallelism: int) -> None:
    def build(env: StreamExecutionEnvironment, agg: str, vectorized: bool) -> Any:
        keyed = (env.from_source(NumberSequenceSource(1, N), None, "nums").map(ranged)
                 .map_batches(lambda b: {"k": b["f0"], "v": pc.multiply(b["f1"], 3.5), "n": b["f2"]})
                 .key_by(lambda r: r[0]))
        if vectorized:
            return keyed.aggregate_batches(agg, 1)
        return getattr(keyed, agg)(1)

    for agg in ("sum", "max"):
        results = []
        for vectorized in (False, True):
            env = StreamExecutionEnvironment.get_execution_environment()
            env.set_parallelism(parallelism)
            results.append(collections.Counter(build(env, agg, vectorized).execute_and_collect()))
        assert sum(results[0].values()) == N
        assert results[1] == results[0], agg
    # emit="buffer": fewer records, the last per key the same
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(parallelism)
    out = list(env.from_source(NumberSequenceSource(1, N), None, "nums").map(ranged).key_by(lambda r: r[0])
               .aggregate_batches("sum", 1, emit="buffer").execute_and_collect())
    final = {r[0]: r[1] for r in out}
    totals: dict[int, float] = collections.defaultdict(float)
    for x in range(1, N + 1):
        r = ranged(x)
        totals[r[0]] += r[1]
    assert final == totals
    assert len(out) < N


class Describe:
    def __call__(self, key: Any, window: Any, elements: Any) -> Any:
        (r,) = elements
        return [(key, window.start, r[1])]


def test_timestamps_stay_with_their_rows_and_watermarks_pass(on_cluster: str) -> None:
    """Event-time windows after map_batches/filter_batches see each record with its own timestamp: the window
    sums equal those after map/filter (records are out of order; the watermark closes the windows)."""
    events = [(f"k{i % 3}", (i * 37) % 1000, i) for i in range(3000)]  # (key, ts, value), shuffled timestamps
    strategy = (WatermarkStrategy.for_bounded_out_of_orderness(Time.seconds(1))
                .with_timestamp_assigner(lambda r, _: r[1]))

    def run(vectorized: bool) -> collections.Counter:
        env = StreamExecutionEnvironment.get_execution_environment()
        env.set_parallelism(2)
        s = env.from_collection(events).assign_timestamps_and_watermarks(strategy)
        if vectorized:
            s = (s.map_batches(lambda b: {"k": b["f0"], "v": pc.multiply(b["f2"], 2)}, output_records="row")
                 .filter_batches(lambda b: pc.not_equal(pc.bit_wise_and(b["v"], 4), 0)))
            s = s.map(lambda r: (r["k"], r["v"]))
        else:
            s = s.map(lambda r: (r[0], r[2] * 2)).filter(lambda r: r[1] & 4 != 0)
        out = (s.key_by(lambda r: r[0]).window(TumblingEventTimeWindows.of(Time.milliseconds(100)))
               .reduce(lambda a, b: (a[0], a[1] + b[1]), window_function=Describe()).execute_and_collect())
        return collections.Counter(out)

    expected = run(False)
    assert len(expected) == 30  # 3 keys x 10 windows
    assert run(True) == expected


class FailOnce(MapFunction):
    """Slows the job down (~1.5 s) and fails its first attempt at the first record after a checkpoint has completed
    (its _metadata is written), so the restart must restore aggregate_batches' keyed state from that checkpoint."""

    def __init__(self, checkpoints: str) -> None:
        self.checkpoints = Path(checkpoints)

    def open(self, runtime_context: RuntimeContext) -> None:
        self.attempt = runtime_context.get_attempt_number()

    def map(self, value: int) -> int:
        if value % 100 == 0:
            time.sleep(0.005)
            if self.attempt == 0 and list(self.checkpoints.glob("**/_metadata")):
                raise RuntimeError("planned failure")
        return value


def test_restart_from_a_checkpoint_gives_exactly_the_record_paths_output(on_cluster: str, jm: Any,
                                                                       tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(2)
    env.enable_checkpointing(100)
    env.get_checkpoint_config().set_checkpoint_storage_dir(f"file://{tmp_path}/checkpoints")
    (env.from_source(NumberSequenceSource(1, N), None, "nums").map(FailOnce(f"{tmp_path}/checkpoints"))
     .map_batches(lambda b: {"k": pc.divide(pc.multiply(b["f0"], 8), N + 1), "v": b["f0"]})  # ranged keys
     .key_by(lambda r: r[0]).aggregate_batches("sum", 1)
     .map(lambda r: f"{r[0]},{r[1]}")
     .sink_to(FileSink.for_row_format(str(out), Encoder.simple_string_encoder()).build()))
    result = env.execute("map_batches restart")
    assert jm.get_job(result.get_job_id()).restarts == 1
    lines: collections.Counter = collections.Counter()
    for name in os.listdir(out):
        if not name.startswith("."):
            lines.update((out / name).read_text().splitlines())
    running: dict[int, int] = collections.defaultdict(int)
    expected: collections.Counter = collections.Counter()
    for x in range(1, N + 1):
        k = x * 8 // (N + 1)
        running[k] += x
        expected[f"{k},{running[k]}"] += 1
    assert lines == expected


def broken(batch: Any) -> Any:
    return {"f0": pc.divide(batch["f0"], 0)}  # integer division by zero: pyarrow raises


def test_a_failing_function_fails_the_job_with_its_traceback(on_cluster: str) -> None:
    env = StreamExecutionEnvironment.get_execution_environment()
    env.from_collection(list(range(10))).map_batches(broken).print()
    with pytest.raises(JobExecutionException) as e:
        env.execute("broken map_batches")
    assert "in broken" in e.value.cause and "divide by zero" in e.value.cause


def test_a_wrong_result_fails_the_job_with_a_clear_error(on_cluster: str) -> None:
    env = StreamExecutionEnvironment.get_execution_environment()
    env.from_collection([Row(a=1), Row(a=2)]).map_batches(lambda b: b.num_rows).print()
    with pytest.raises(JobExecutionException) as e:
        env.execute("bad map_batches")
    assert "map_batches: the function must return a pyarrow.RecordBatch" in e.value.cause
    assert "got int" in e.value.cause
    env = StreamExecutionEnvironment.get_execution_environment()
    env.from_collection([1, 2, 3]).map_batches(lambda b: b.slice(1)).print()
    with pytest.raises(JobExecutionException) as e:
        env.execute("short map_batches")
    assert "map_batches: the function returned 2 rows for a buffer of 3" in e.value.cause
