"""DataStream, KeyedStream: the fluent API that builds transformations (PyFlink's names)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from weir.datastream.connectors.sink import PrintSink, Sink
from weir.datastream.functions import (
    CoFlatMapFunction,
    CoMapFunction,
    CoProcessFunction,
    FilterFunction,
    FlatMapFunction,
    KeyedCoProcessFunction,
    KeyedProcessFunction,
    KeySelector,
    MapFunction,
    ProcessFunction,
    ReduceFunction,
    SinkFunction,
    callable_of,
)
from weir.datastream.output_tag import OutputTag
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

    def map_batches(self, func: Any, schema: Any = None, batch_format: str = "arrow",
                    output_records: str = "same") -> DataStream:
        """Vectorized map: ``func`` maps a whole buffer of records, as columns, to the same number of rows.

        Each buffer (up to ~1,024 records) becomes one ``pyarrow.RecordBatch``: scalar records a column ``f0``,
        tuples/lists/unnamed ``Row``s a column per position (``f0``, ``f1``, ...), named ``Row``s, namedtuples and
        dicts a column per field (see ``weir.common.columnar``). ``func`` returns a ``pyarrow.RecordBatch``, a
        ``pyarrow.Table``, a dict of column name -> array (NumPy array, pyarrow array or list) or a single array
        (one column ``f0``), with exactly one row per input row: row i is the record of input row i and keeps its
        timestamp. The rows become records of the input's shape again (one column from scalars: scalars) -- unless
        the next operator of the chain is columnar too (``map_batches``/``filter_batches``), which then gets the
        columns as they are.

        Where buffers start and end is the runtime's business (it depends on timing), so row i of the result should
        depend on input row i only, and ``func`` should keep nothing across buffers (it would not be checkpointed).
        Rows come back as ``RowKind.INSERT``. NumPy arrays may be read-only views of Arrow memory: return new
        arrays rather than writing into them.

        Args:
            func: a callable ``batch -> columns``. A ``weir`` Function subclass with ``__call__`` also gets
                ``open``/``close``.
            schema: the input columns' Arrow types and names (a ``pyarrow.Schema``, ``Types.ROW_NAMED(...)`` or a
                list of (name, type)); without it pyarrow infers them per buffer (a field that is None in a whole
                buffer then has the null type).
            batch_format: "arrow" (``func`` gets a ``pyarrow.RecordBatch``) or "numpy" (a dict of column name ->
                NumPy array; strings are object arrays, integers with nulls float64 with NaN).
            output_records: the records made of the result: "same" (the input's shape), "value" (one column),
                "tuple", "list", "row" or "dict".

        Raises:
            TypeError: ``func`` is not callable, or a bad ``schema``; ``ValueError``: an unknown option. At run time
            the job fails (naming map_batches) when records do not fit in columns or ``func`` returns anything else
            or another number of rows.
        """
        params = _columnar_params("map_batches", func, schema, batch_format)
        if output_records not in ("same", "value", "tuple", "list", "row", "dict"):
            raise ValueError(f"map_batches: output_records must be 'same', 'value', 'tuple', 'list', 'row' or "
                             f"'dict', got {output_records!r}")
        params["output_records"] = output_records
        return DataStream(self._env, self._add("map_batches", "MapBatches", func, params=params))

    def filter_batches(self, func: Any, schema: Any = None, batch_format: str = "arrow") -> DataStream:
        """Vectorized filter: ``func`` gets a buffer as columns (as in ``map_batches``) and returns one boolean per
        row (a pyarrow or NumPy boolean array, or a list of bools); rows with True are kept with their
        timestamps, rows with False or null are dropped."""
        params = _columnar_params("filter_batches", func, schema, batch_format)
        return DataStream(self._env, self._add("filter_batches", "FilterBatches", func, params=params))

    def assign_timestamps_and_watermarks(self, watermark_strategy: Any) -> DataStream:
        """Assign record timestamps and generate watermarks with ``watermark_strategy`` (a WatermarkStrategy)."""
        if not hasattr(watermark_strategy, "create_generator"):
            raise TypeError(
                f"assign_timestamps_and_watermarks expects a WatermarkStrategy, got {type(watermark_strategy).__name__}"
            )
        t = self._add("timestamps", "Timestamps/Watermarks", None, params={"strategy": watermark_strategy})
        return DataStream(self._env, t)

    def get_side_output(self, output_tag: OutputTag) -> DataStream:
        """The records this operator emitted to ``output_tag`` (``yield tag, value`` or ``ctx.output(tag, value)``;
        late window elements with ``side_output_late_data``)."""
        if not isinstance(output_tag, OutputTag):
            raise TypeError(f"get_side_output expects an OutputTag, got {type(output_tag).__name__}")
        if self._t.is_virtual:
            raise ValueError("get_side_output applies to the stream an operator produced, not to a partitioning")
        t = Transformation(kind="side_output", name=f"SideOutput({output_tag.tag_id})", inputs=[self._t],
                           params={"tag": output_tag.tag_id})
        return DataStream(self._env, t)

    def connect(self, ds: DataStream) -> ConnectedStreams:
        """Connect two streams for a two-input operator (CoMap, CoFlatMap, CoProcess, KeyedCoProcess)."""
        if ds._env is not self._env:
            raise ValueError("cannot connect streams of different execution environments")
        return ConnectedStreams(self, ds)

    def window_all(self, window_assigner: Any) -> AllWindowedStream:
        """Windows over the whole (non-keyed) stream: one subtask sees every record, as in Flink."""
        _check_assigner(window_assigner)
        keyed = self.key_by(_constant_key)
        return AllWindowedStream(keyed, window_assigner)

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


def _columnar_params(what: str, func: Any, schema: Any, batch_format: str) -> dict[str, Any]:
    """Checks the arguments of a vectorized operator now, not on the cluster; the schema as a pyarrow.Schema."""
    if not callable(func):
        raise TypeError(f"{what} expects a callable taking a batch of columns, got {type(func).__name__}")
    if batch_format not in ("arrow", "numpy"):
        raise ValueError(f"{what}: batch_format must be 'arrow' or 'numpy', got {batch_format!r}")
    from weir.common.columnar import to_schema  # pyarrow: only for jobs that use columns

    return {"schema": to_schema(schema, what), "batch_format": batch_format}


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

    def aggregate_batches(self, agg: str, position: int | str = 0, emit: str = "record") -> DataStream:
        """The rolling ``sum``/``min``/``max`` of a field per key, computed per buffer with NumPy.

        With ``emit="record"`` the output is exactly that of ``sum(position)``/``min``/``max`` (one record per input
        record: the key's first record with the field replaced by the running aggregate, with the input's
        timestamp), and so is the keyed state. With ``emit="buffer"`` it emits, after each input buffer, only the
        last of those records for each key in the buffer (with the timestamp of that key's last record): fewer
        records, each equal to one of the rolling outputs, the last per key the same -- but how many depends on
        how records were buffered, so not the same stream.

        Fields that are all ints (within int64) or all floats are aggregated over arrays (float sums in record
        order, so equal bit for bit); other buffers fall back to the record-at-a-time fold, with the same results.
        """
        if agg not in ("sum", "min", "max"):
            raise ValueError(f"aggregate_batches: agg must be 'sum', 'min' or 'max', got {agg!r}")
        if emit not in ("record", "buffer"):
            raise ValueError(f"aggregate_batches: emit must be 'record' or 'buffer', got {emit!r}")
        name = f"Keyed {agg.capitalize()} (batches{', per buffer' if emit == 'buffer' else ''})"
        return self._keyed("aggregate_batches", name, _field_aggregate(agg, position), agg=agg, position=position,
                           emit=emit)

    def process(self, func: Any, output_type: Any = None) -> DataStream:  # type: ignore[override]
        if not isinstance(func, KeyedProcessFunction | ProcessFunction):
            raise TypeError(f"KeyedStream.process expects a KeyedProcessFunction, got {type(func).__name__}")
        return self._keyed("keyed_process", "KeyedProcess", func, output_type)

    def window(self, window_assigner: Any) -> WindowedStream:
        """Group each key's records into windows (TumblingEventTimeWindows.of(Time.minutes(1)), ...)."""
        _check_assigner(window_assigner)
        return WindowedStream(self, window_assigner)

    def count_window(self, size: int, slide: int | None = None) -> WindowedStream:
        """Windows of ``size`` records per key (sliding by ``slide`` records)."""
        from weir.datastream.window import CountSlidingWindowAssigner, CountTumblingWindowAssigner

        if slide is None:
            return WindowedStream(self, CountTumblingWindowAssigner.of(size))
        return WindowedStream(self, CountSlidingWindowAssigner.of(size, slide))

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


def _constant_key(value: Any) -> int:
    """The key of window_all: every record goes to the same (single) subtask."""
    return 0


def _check_assigner(assigner: Any) -> None:
    if not hasattr(assigner, "assign_windows"):
        raise TypeError(
            f"expected a window assigner (e.g. TumblingEventTimeWindows.of(Time.seconds(10))), "
            f"got {type(assigner).__name__}"
        )


def _lateness_ms(lateness: Any) -> int:
    from weir.common.time import to_millis

    ms = to_millis(lateness)
    if ms < 0:
        raise ValueError(f"allowed lateness must be >= 0, got {ms} ms")
    return ms


class WindowedStream:
    """A keyed stream grouped into windows (``key_by(...).window(...)``)."""

    _all = False

    def __init__(self, keyed: KeyedStream, assigner: Any) -> None:
        self._keyed_stream = keyed
        self._assigner = assigner
        self._trigger: Any = None
        self._lateness = 0
        self._late_tag: str | None = None

    def trigger(self, trigger: Any) -> WindowedStream:
        if not hasattr(trigger, "on_element"):
            raise TypeError(f"expected a Trigger, got {type(trigger).__name__}")
        if hasattr(self._assigner, "merge_windows") and not trigger.can_merge():
            raise ValueError(f"{type(trigger).__name__} cannot be used with merging (session) windows")
        self._trigger = trigger
        return self

    def allowed_lateness(self, time_ms: Any) -> WindowedStream:
        """Keep window state ``time_ms`` (int ms, or a Time) past the watermark; late elements re-fire."""
        self._lateness = _lateness_ms(time_ms)
        return self

    def side_output_late_data(self, output_tag: OutputTag) -> WindowedStream:
        if not isinstance(output_tag, OutputTag):
            raise TypeError(f"side_output_late_data expects an OutputTag, got {type(output_tag).__name__}")
        self._late_tag = output_tag.tag_id
        return self

    def _window(self, name: str, output_type: Any, **params: Any) -> DataStream:
        ks = self._keyed_stream
        params.update(assigner=self._assigner, trigger=self._trigger, allowed_lateness=self._lateness,
                      late_tag=self._late_tag, all=self._all)
        t = ks._add("window", name, params.get("window_fn") or params.get("reduce_fn") or params.get("agg_fn"),
                    output_type, key_selector=ks._key_selector, params=params,
                    parallelism=1 if self._all else None)
        return DataStream(ks._env, t)

    def reduce(self, reduce_function: Any, window_function: Any = None, output_type: Any = None) -> DataStream:
        _check(reduce_function, ReduceFunction, "reduce")
        return self._window("Window(Reduce)", output_type, mode="reduce", reduce_fn=reduce_function,
                            window_fn=window_function)

    def aggregate(self, aggregate_function: Any, window_function: Any = None, accumulator_type: Any = None,
                  output_type: Any = None) -> DataStream:
        for m in ("create_accumulator", "add", "get_result"):
            if not callable(getattr(aggregate_function, m, None)):
                raise TypeError(f"aggregate expects an AggregateFunction (missing {m}()), "
                                f"got {type(aggregate_function).__name__}")
        return self._window("Window(Aggregate)", output_type, mode="aggregate", agg_fn=aggregate_function,
                            window_fn=window_function)

    def process(self, process_window_function: Any, output_type: Any = None) -> DataStream:
        return self._window("Window(Process)", output_type, mode="list", window_fn=process_window_function)

    def apply(self, window_function: Any, output_type: Any = None) -> DataStream:
        return self._window("Window(Apply)", output_type, mode="list", window_fn=window_function)


class AllWindowedStream(WindowedStream):
    """``window_all``: windows over the whole stream, in one subtask."""

    _all = True


class ConnectedStreams:
    """Two streams feeding one two-input operator (``a.connect(b)``)."""

    def __init__(self, first: DataStream, second: DataStream) -> None:
        self.stream1 = first
        self.stream2 = second
        self._keys: tuple[Any, Any] | None = None

    def key_by(self, key_selector1: Any, key_selector2: Any, key_type: Any = None) -> ConnectedStreams:
        k1 = self.stream1 if isinstance(self.stream1, KeyedStream) else self.stream1.key_by(key_selector1)
        k2 = self.stream2 if isinstance(self.stream2, KeyedStream) else self.stream2.key_by(key_selector2)
        c = ConnectedStreams(k1, k2)
        c._keys = (key_selector1, key_selector2)
        return c

    def _two_input(self, kind: str, name: str, fn: Any, output_type: Any, **params: Any) -> DataStream:
        env = self.stream1._env
        t = Transformation(kind=kind, name=name, inputs=[self.stream1._t, self.stream2._t], fn=fn,
                           output_type=output_type, params=params)
        env._transformations.append(t)
        return DataStream(env, t)

    def map(self, func: CoMapFunction, output_type: Any = None) -> DataStream:
        if not isinstance(func, CoMapFunction):
            raise TypeError(f"ConnectedStreams.map expects a CoMapFunction, got {type(func).__name__}")
        return self._two_input("co_map", "Co-Map", func, output_type)

    def flat_map(self, func: CoFlatMapFunction, output_type: Any = None) -> DataStream:
        if not isinstance(func, CoFlatMapFunction):
            raise TypeError(f"ConnectedStreams.flat_map expects a CoFlatMapFunction, got {type(func).__name__}")
        return self._two_input("co_flat_map", "Co-Flat Map", func, output_type)

    def process(self, func: Any, output_type: Any = None) -> DataStream:
        if isinstance(func, KeyedCoProcessFunction):
            if self._keys is None:
                raise ValueError("a KeyedCoProcessFunction needs keyed inputs: connect(...).key_by(k1, k2)")
            return self._two_input("keyed_co_process", "KeyedCo-Process", func, output_type, key_selectors=self._keys)
        if isinstance(func, CoProcessFunction):
            return self._two_input("co_process", "Co-Process", func, output_type, key_selectors=self._keys)
        raise TypeError(f"ConnectedStreams.process expects a (Keyed)CoProcessFunction, got {type(func).__name__}")
