"""DataStream, KeyedStream: the fluent API that builds transformations (PyFlink's names)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from weir.datastream.connectors.sink import PrintSink, Sink
from weir.datastream.functions import (
    FilterFunction,
    FlatMapFunction,
    KeyedProcessFunction,
    KeySelector,
    MapFunction,
    ProcessFunction,
    ReduceFunction,
    SinkFunction,
    callable_of,
)
from weir.graph.transformation import PartitionerSpec, Transformation

if TYPE_CHECKING:
    from weir.datastream.stream_execution_environment import StreamExecutionEnvironment


def _check(fn: Any, base: type, method: str) -> Any:
    callable_of(fn, base, method)  # raises a clear TypeError now, not on the cluster
    return fn


class DataStream:
    """A stream of records produced by one transformation."""

    def __init__(self, env: StreamExecutionEnvironment, transformation: Transformation) -> None:
        self._env = env
        self._t = transformation

    # ---- naming and parallelism ----
    def get_name(self) -> str:
        return self._t.name

    def name(self, name: str) -> DataStream:
        self._t.name = name
        return self

    def uid(self, uid: str) -> DataStream:
        self._t.uid = uid
        return self

    def set_parallelism(self, parallelism: int) -> DataStream:
        if parallelism < 1:
            raise ValueError(f"parallelism must be >= 1, got {parallelism}")
        if self._t.is_virtual:
            raise ValueError("set_parallelism applies to operators, not to partitioning or union")
        if self._t.kind == "source" and getattr(self._t.fn, "parallelism_one", False) and parallelism != 1:
            raise ValueError(f"{self._t.name} is a non-parallel source: its parallelism must be 1, not {parallelism}")
        self._t.parallelism = parallelism
        return self

    def get_parallelism(self) -> int:
        return self._t.parallelism or self._env.get_parallelism()

    def set_max_parallelism(self, max_parallelism: int) -> DataStream:
        self._t.max_parallelism = max_parallelism
        return self

    def disable_chaining(self) -> DataStream:
        self._t.chaining = False
        return self

    def start_new_chain(self) -> DataStream:
        self._t.start_new_chain = True
        return self

    def get_execution_environment(self) -> StreamExecutionEnvironment:
        return self._env

    # ---- transformations ----
    def _add(self, kind: str, name: str, fn: Any = None, output_type: Any = None, **kw: Any) -> Transformation:
        t = Transformation(kind=kind, name=name, inputs=[self._t], fn=fn, output_type=output_type, **kw)
        self._env._transformations.append(t)
        return t

    def map(self, func: Any, output_type: Any = None) -> DataStream:
        return DataStream(self._env, self._add("map", "Map", _check(func, MapFunction, "map"), output_type))

    def flat_map(self, func: Any, output_type: Any = None) -> DataStream:
        fn = _check(func, FlatMapFunction, "flat_map")
        return DataStream(self._env, self._add("flat_map", "FlatMap", fn, output_type))

    def filter(self, func: Any) -> DataStream:
        return DataStream(self._env, self._add("filter", "Filter", _check(func, FilterFunction, "filter")))

    def process(self, func: ProcessFunction, output_type: Any = None) -> DataStream:
        if not isinstance(func, ProcessFunction):
            raise TypeError(f"DataStream.process expects a ProcessFunction, got {type(func).__name__}")
        return DataStream(self._env, self._add("process", "Process", func, output_type))

    def key_by(self, key_selector: Any, key_type: Any = None) -> KeyedStream:
        _check(key_selector, KeySelector, "get_key")
        t = Transformation(
            kind="partition",
            name="KeyBy",
            inputs=[self._t],
            partitioner=PartitionerSpec("hash", key_selector),
            key_selector=key_selector,
            output_type=key_type,
        )
        return KeyedStream(self._env, t, key_selector)

    def _partition(self, kind: str) -> DataStream:
        t = Transformation(kind="partition", name=kind, inputs=[self._t], partitioner=PartitionerSpec(kind))
        return DataStream(self._env, t)

    def rebalance(self) -> DataStream:
        return self._partition("rebalance")

    def shuffle(self) -> DataStream:
        return self._partition("shuffle")

    def broadcast(self) -> DataStream:  # type: ignore[override]
        return self._partition("broadcast")

    def forward(self) -> DataStream:
        return self._partition("forward")

    def union(self, *streams: DataStream) -> DataStream:
        for s in streams:
            if s._env is not self._env:
                raise ValueError("cannot union streams of different execution environments")
        t = Transformation(kind="union", name="Union", inputs=[self._t, *[s._t for s in streams]])
        return DataStream(self._env, t)

    # ---- sinks ----
    def _sink(self, kind: str, name: str, fn: Any, **params: Any) -> DataStreamSink:
        t = self._add(kind, name, fn, params=params)
        self._env._sinks.append(t)
        return DataStreamSink(t)

    def sink_to(self, sink: Sink) -> DataStreamSink:
        if not isinstance(sink, Sink):
            raise TypeError(f"sink_to expects a Sink (e.g. FileSink), got {type(sink).__name__}")
        return self._sink("sink", f"Sink: {type(sink).__name__}", sink)

    def add_sink(self, sink_func: Any) -> DataStreamSink:
        if not isinstance(sink_func, SinkFunction | Sink) and not callable(sink_func):
            raise TypeError(f"add_sink expects a SinkFunction, got {type(sink_func).__name__}")
        return self._sink("sink", "Sink: Unnamed", sink_func)

    def print(self, sink_identifier: str | None = None) -> DataStreamSink:
        return self._sink("sink", "Sink: Print to Std. Out", PrintSink(sink_identifier))

    def execute_and_collect(self, job_execution_name: str | None = None, limit: int | None = None) -> Any:
        """Run the job and stream its results back to this client.

        Returns:
            An iterator of the records (close it, or use ``with``, to stop early) or, with ``limit``, a list
            of at most ``limit`` records.
        """
        t = self._add("collect", "Sink: Collect", None, parallelism=1)
        it = self._env._execute_and_collect(t, job_execution_name or "collect")
        if limit is None:
            return it
        out = []
        with it:
            for r in it:
                out.append(r)
                if len(out) >= limit:
                    break
        return out


class DataStreamSink:
    def __init__(self, transformation: Transformation) -> None:
        self._t = transformation

    def name(self, name: str) -> DataStreamSink:
        self._t.name = name
        return self

    def uid(self, uid: str) -> DataStreamSink:
        self._t.uid = uid
        return self

    def set_parallelism(self, parallelism: int) -> DataStreamSink:
        if parallelism < 1:
            raise ValueError(f"parallelism must be >= 1, got {parallelism}")
        self._t.parallelism = parallelism
        return self

    def disable_chaining(self) -> DataStreamSink:
        self._t.chaining = False
        return self


def _field_aggregate(kind: str, position: int | str) -> Any:
    """The rolling reduce behind KeyedStream.sum/min/max: only the field at ``position`` changes."""

    def pick(a: Any, b: Any) -> Any:
        if kind == "sum":
            return a + b
        if kind == "min":
            return b if b < a else a
        return b if b > a else a

    def reduce(acc: Any, v: Any) -> Any:
        if isinstance(acc, tuple):
            i = position if isinstance(position, int) else None
            if i is None:
                raise TypeError(f"{kind}({position!r}): tuples are aggregated by index, not by field name")
            fields = (*acc[:i], pick(acc[i], v[i]), *acc[i + 1 :])
            return type(acc)._make(fields) if hasattr(acc, "_make") else fields  # namedtuples stay namedtuples
        if isinstance(acc, list | dict):
            out = acc.copy()
            out[position] = pick(acc[position], v[position])  # type: ignore[index]
            return out
        if hasattr(acc, "_values") and hasattr(acc, "set_row_kind"):  # Row
            from weir.common.row import Row

            out_row = Row(*acc._values)
            out_row._fields = acc._fields
            out_row[position] = pick(acc[position], v[position])
            return out_row
        if position in (0, None):
            return pick(acc, v)
        raise TypeError(f"cannot aggregate field {position!r} of a {type(acc).__name__}")

    return reduce


class KeyedStream(DataStream):
    """A stream partitioned by key: keyed operators see one key's records on one subtask, with keyed state."""

    def __init__(self, env: StreamExecutionEnvironment, transformation: Transformation, key_selector: Any) -> None:
        super().__init__(env, transformation)
        self._key_selector = key_selector

    def _keyed(self, kind: str, name: str, fn: Any, output_type: Any = None, **params: Any) -> DataStream:
        t = self._add(kind, name, fn, output_type, key_selector=self._key_selector, params=params)
        return DataStream(self._env, t)

    def reduce(self, func: Any, output_type: Any = None) -> DataStream:
        return self._keyed("reduce", "Keyed Reduce", _check(func, ReduceFunction, "reduce"), output_type)

    def sum(self, position_to_sum: int | str = 0) -> DataStream:
        return self._keyed("reduce", "Keyed Sum", _field_aggregate("sum", position_to_sum))

    def min(self, position_to_min: int | str = 0) -> DataStream:
        return self._keyed("reduce", "Keyed Min", _field_aggregate("min", position_to_min))

    def max(self, position_to_max: int | str = 0) -> DataStream:
        return self._keyed("reduce", "Keyed Max", _field_aggregate("max", position_to_max))

    def process(self, func: Any, output_type: Any = None) -> DataStream:  # type: ignore[override]
        if not isinstance(func, KeyedProcessFunction | ProcessFunction):
            raise TypeError(f"KeyedStream.process expects a KeyedProcessFunction, got {type(func).__name__}")
        return self._keyed("keyed_process", "KeyedProcess", func, output_type)

    def map(self, func: Any, output_type: Any = None) -> DataStream:
        return DataStream(self._env, self._t).map(func, output_type)

    def set_parallelism(self, parallelism: int) -> DataStream:
        raise ValueError("set_parallelism cannot be set on a KeyedStream: set it on the keyed operator")


class CloseableIterator(Iterator[Any]):
    """Results of ``execute_and_collect``; closing it cancels the job if it is still running."""

    def __init__(self, records: Iterator[Any], on_close: Any) -> None:
        self._records = records
        self._on_close = on_close
        self._closed = False

    def __iter__(self) -> CloseableIterator:
        return self

    def __next__(self) -> Any:
        return next(self._records)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._on_close()

    def __enter__(self) -> CloseableIterator:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
