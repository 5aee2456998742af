"""The window operator: assigns elements to windows per key, keeps window contents in keyed state, asks the
trigger when to fire, and handles allowed lateness, late-data side outputs and merging (session) windows.

Window contents live in the keyed state backend's table ``window-contents`` under (key, window): the
reduced value (``reduce``), the accumulator (``aggregate``) or the list of elements (``process``/``apply``).
For merging windows the contents of merged windows are combined into the merged window (reduce, AggregateFunction
.merge or concatenation) and the set of a key's windows lives in the table ``window-merging-set``.

Fast path: tumbling event-time windows with the default EventTimeTrigger -- the overwhelmingly common case --
skip the trigger calls: the trigger's only effects are one timer at the window's end (registered when the window's
state is created; timers are deduplicated anyway) and an immediate firing for elements within allowed lateness
whose window has already fired, both done inline.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from taskmanager.operators.base import Emit
from taskmanager.operators.emitter import Collector
from taskmanager.operators.keyed_state import KeyedStateMixin
from taskmanager.timers import MAX_TIME, MIN_TIME, InternalTimerService
from weir.datastream.functions import (
    AllWindowFunction,
    Function,
    KeySelector,
    ProcessAllWindowFunction,
    ProcessWindowFunction,
    ReduceFunction,
    RuntimeContext,
    WindowFunction,
    callable_of,
)

_MISSING = object()
_NO_TIMESTAMP = (
    "a record without a timestamp reached an event-time window: assign timestamps with "
    "assign_timestamps_and_watermarks(...) or a WatermarkStrategy with a timestamp assigner"
)


def _handle_for(backend: Any, desc: Any) -> Any:
    from weir.datastream import state as st

    if isinstance(desc, st.ValueStateDescriptor):
        return backend.get_state(desc)
    if isinstance(desc, st.ListStateDescriptor):
        return backend.get_list_state(desc)
    if isinstance(desc, st.MapStateDescriptor):
        return backend.get_map_state(desc)
    if isinstance(desc, st.ReducingStateDescriptor):
        return backend.get_reducing_state(desc)
    if isinstance(desc, st.AggregatingStateDescriptor):
        return backend.get_aggregating_state(desc)
    raise TypeError(f"not a state descriptor: {desc!r}")


class _NamespacedStateStore:
    """``context.window_state()`` / ``global_state()``: state handles scoped to a window (or to none)."""

    def __init__(self, backend: Any, namespace: Any) -> None:
        self.backend = backend
        self.namespace = namespace

    def _get(self, desc: Any) -> Any:
        h = _handle_for(self.backend, desc)
        h.set_current_namespace(self.namespace)
        return h

    get_state = get_list_state = get_map_state = get_reducing_state = get_aggregating_state = _get


class _TriggerContext:
    """Trigger.TriggerContext and OnMergeContext for the trigger of (key, window)."""

    __slots__ = ("op", "window", "merged")

    def __init__(self, op: WindowOperator) -> None:
        self.op = op
        self.window: Any = None
        self.merged: list[Any] = []

    def get_current_processing_time(self) -> int:
        return self.op.runtime.processing_time.get_current_processing_time()

    def get_current_watermark(self) -> int:
        return self.op.timers.current_watermark

    def get_metric_group(self) -> Any:
        return None

    def register_event_time_timer(self, time: int) -> None:
        self.op.timers.register_event_time_timer(self.op.backend.current_key, self.window, time)

    def register_processing_time_timer(self, time: int) -> None:
        self.op.timers.register_processing_time_timer(self.op.backend.current_key, self.window, time)

    def delete_event_time_timer(self, time: int) -> None:
        self.op.timers.delete_event_time_timer(self.op.backend.current_key, self.window, time)

    def delete_processing_time_timer(self, time: int) -> None:
        self.op.timers.delete_processing_time_timer(self.op.backend.current_key, self.window, time)

    def get_partitioned_state(self, state_descriptor: Any) -> Any:
        h = _handle_for(self.op.backend, state_descriptor)
        h.set_current_namespace(self.window)
        return h

    def merge_partitioned_state(self, state_descriptor: Any) -> None:
        if self.merged:
            _handle_for(self.op.backend, state_descriptor).merge_namespaces(self.window, self.merged)


class _WindowFunctionContext(ProcessWindowFunction.Context):
    __slots__ = ("op", "w", "ts")

    def __init__(self, op: WindowOperator) -> None:
        self.op = op
        self.w: Any = None

    def window(self) -> Any:
        return self.w

    def current_processing_time(self) -> int:
        return self.op.runtime.processing_time.get_current_processing_time()

    def current_watermark(self) -> int:
        return self.op.timers.current_watermark

    def window_state(self) -> Any:
        if self.op.merging:  # as in Flink: a merged window's per-window state could not be merged
            raise RuntimeError("per-window state is not allowed with merging (session) windows: use global_state()")
        return _NamespacedStateStore(self.op.backend, self.w)

    def global_state(self) -> Any:
        return _NamespacedStateStore(self.op.backend, None)

    def output(self, output_tag: Any, value: Any) -> None:
        self.op.collector.side(output_tag, value, self.w.max_timestamp())


class _AssignerContext:
    __slots__ = ("op",)

    def __init__(self, op: WindowOperator) -> None:
        self.op = op

    def get_current_processing_time(self) -> int:
        return self.op.runtime.processing_time.get_current_processing_time()


class WindowOperator(KeyedStateMixin):
    """Keyed windows (``key_by().window()``) and, with a constant key and parallelism 1, ``window_all()``.

    params: assigner, trigger (None: the assigner's default), allowed_lateness (ms), late_tag (tag id or None),
    mode ("reduce" | "aggregate" | "list"), reduce_fn, agg_fn, window_fn (ProcessWindowFunction, WindowFunction,
    their All variants, or None), all (window_all).
    """

    name = "window"

    def __init__(self, out: Emit, key_selector: Any, params: dict[str, Any]) -> None:
        super().__init__(out)
        self.key = callable_of(key_selector, KeySelector, "get_key")
        self.assigner = params["assigner"]
        self.trigger = params.get("trigger") or self.assigner.get_default_trigger()
        self.lateness: int = int(params.get("allowed_lateness", 0))
        self.late_tag: str | None = params.get("late_tag")
        self.mode: str = params["mode"]
        self.reduce_fn = params.get("reduce_fn")
        self.reduce = callable_of(self.reduce_fn, ReduceFunction, "reduce") if self.reduce_fn is not None else None
        self.agg: Any = params.get("agg_fn")
        self.window_fn = params.get("window_fn")
        self.all = bool(params.get("all"))
        self.event_time: bool = self.assigner.is_event_time()
        self.merging = hasattr(self.assigner, "merge_windows")
        self.late_dropped = 0
        # sliding count windows keep only their last N elements when they fire (Flink's CountEvictor)
        self.evict_to: int | None = getattr(self.assigner, "count_evictor_size", None)
        # with an evictor the window keeps its elements and reduces/aggregates them when it fires
        # (Flink's EvictingWindowOperator): eviction must see elements, not a pre-aggregated value
        self.fold_on_fire: str | None = None
        if self.evict_to and self.mode in ("reduce", "aggregate"):
            self.fold_on_fire, self.mode = self.mode, "list"

    def open(self, ctx: RuntimeContext) -> None:
        from weir.datastream.window import EventTimeTrigger, TumblingEventTimeWindows

        self.backend = self.open_backend()
        self.contents = self.backend.table("window-contents")
        self.merging_sets = self.backend.table("window-merging-set") if self.merging else None
        self.fast = type(self.trigger) is EventTimeTrigger and type(self.assigner) is TumblingEventTimeWindows
        if self.fast:
            self.size, self.offset = self.assigner.size, self.assigner.offset
        self.clears_per_window = isinstance(self.window_fn, ProcessWindowFunction | ProcessAllWindowFunction)
        self.timers = InternalTimerService(self.runtime.processing_time,
                                           self._on_fast_timer if self.fast else self._on_event_timer,
                                           self._on_processing_timer)
        self.restore_timers()
        if self.fast and not self.lateness and self.window_fn is None and self.mode != "list":
            self.timers.on_event_bucket = self._fire_fast_bucket
        self.collector = Collector(self.runtime)
        self.tctx = _TriggerContext(self)
        self.wctx = _WindowFunctionContext(self)
        self.actx = _AssignerContext(self)
        self.late_out = self.runtime.side_output(self.late_tag) if self.late_tag else None
        self._windows: dict[int, Any] = {}
        ctx._keyed_state_store = self.backend
        for f in self._functions():
            f.open(ctx)

    def _functions(self) -> list[Function]:
        fs = [self.window_fn, self.reduce_fn, self.agg]
        return [f for i, f in enumerate(fs) if isinstance(f, Function) and f not in fs[:i]]

    def close(self) -> None:
        for f in self._functions():
            f.close()

    # ---- contents ----
    def _add(self, ck: tuple[Any, Any], v: Any) -> bool:
        """Fold ``v`` into the contents of (key, window); True when the window's state was created."""
        contents = self.contents
        acc = contents.get(ck, _MISSING)
        mode = self.mode
        if mode == "reduce":
            contents[ck] = v if acc is _MISSING else self.reduce(acc, v)  # type: ignore[misc]
        elif mode == "aggregate":
            agg = self.agg
            contents[ck] = agg.add(v, agg.create_accumulator() if acc is _MISSING else acc)
        else:
            contents[ck] = [v] if acc is _MISSING else _append(acc, v)  # written back: RocksDB caches by put
        return acc is _MISSING

    def _contents_for_fire(self, ck: tuple[Any, Any]) -> Any:
        contents = self.contents.get(ck, _MISSING)
        n = self.evict_to
        if n and contents is not _MISSING and len(contents) > n:
            contents = contents[-n:]
            self.contents[ck] = contents
        return contents

    def _merge_contents(self, a: Any, b: Any) -> Any:
        if a is _MISSING:
            return b
        if b is _MISSING:
            return a
        if self.mode == "reduce":
            return self.reduce(a, b)  # type: ignore[misc]
        if self.mode == "aggregate":
            return self.agg.merge(a, b)
        return list(a) + list(b)

    # ---- firing ----
    def _emit_window(self, key: Any, window: Any, contents: Any) -> None:
        mode = self.mode
        if mode == "reduce":
            elements: Iterable[Any] = [contents]
        elif mode == "aggregate":
            elements = [self.agg.get_result(contents)]
        else:
            elements = contents
            if self.fold_on_fire == "reduce":
                els = list(elements)
                acc = els[0]
                for e in els[1:]:
                    acc = self.reduce(acc, e)  # type: ignore[misc]
                elements = [acc]
            elif self.fold_on_fire == "aggregate":
                acc = self.agg.create_accumulator()
                for e in elements:
                    acc = self.agg.add(e, acc)
                elements = [self.agg.get_result(acc)]
        wf = self.window_fn
        ts = window.max_timestamp()
        if wf is None:
            results: Any = elements
        elif isinstance(wf, ProcessWindowFunction):
            self.wctx.w = window
            results = wf.process(key, self.wctx, elements)
        elif isinstance(wf, ProcessAllWindowFunction):
            self.wctx.w = window
            results = wf.process(self.wctx, elements)
        elif isinstance(wf, WindowFunction):
            results = wf.apply(key, window, elements)
        elif isinstance(wf, AllWindowFunction):
            results = wf.apply(window, elements)
        else:
            results = wf(window, elements) if self.all else wf(key, window, elements)
        self.collector.collect(results, ts, "the window function")

    def _cleanup_time(self, window: Any) -> int:
        t = window.max_timestamp()
        if not self.event_time:
            return int(t)
        c = t + self.lateness
        return int(c) if c < MAX_TIME else MAX_TIME

    def _register_cleanup(self, key: Any, window: Any) -> None:
        c = self._cleanup_time(window)
        if c == MAX_TIME:
            return
        if self.event_time:
            self.timers.register_event_time_timer(key, window, c)
        else:
            self.timers.register_processing_time_timer(key, window, c)

    def _delete_cleanup(self, key: Any, window: Any) -> None:
        c = self._cleanup_time(window)
        if c == MAX_TIME:
            return
        if self.event_time:
            self.timers.delete_event_time_timer(key, window, c)
        else:
            self.timers.delete_processing_time_timer(key, window, c)

    def _clear_all(self, key: Any, window: Any) -> None:
        self.contents.pop((key, window), None)
        self.tctx.window = window
        self.trigger.clear(window, self.tctx)
        wf = self.window_fn
        if isinstance(wf, ProcessWindowFunction | ProcessAllWindowFunction):
            self.wctx.w = window
            wf.clear(self.wctx)
        if self.merging_sets is not None:
            ws = self.merging_sets.get((key, None))
            if ws and window in ws:
                ws = [w for w in ws if w != window]
                if ws:
                    self.merging_sets[(key, None)] = ws
                else:
                    del self.merging_sets[(key, None)]

    def _retire(self, key: Any, window: Any) -> None:
        """Drop a late merged window from the key's set (Flink's retireWindow); its state is left to cleanup."""
        assert self.merging_sets is not None
        ws = [w for w in self.merging_sets.get((key, None)) or [] if w != window]
        if ws:
            self.merging_sets[(key, None)] = ws
        else:
            self.merging_sets.pop((key, None), None)

    def _on_timer(self, key: Any, window: Any, ts: int, event: bool) -> None:
        self.backend.current_key = key
        if self.merging_sets is not None:
            ws = self.merging_sets.get((key, None))
            if not ws or window not in ws:
                return  # merged into another window (whose timers fire instead) or already cleaned up
        tctx = self.tctx
        tctx.window = window
        if event:
            result = self.trigger.on_event_time(ts, window, tctx)
        else:
            result = self.trigger.on_processing_time(ts, window, tctx)
        if result.is_fire():
            contents = self._contents_for_fire((key, window))
            if contents is not _MISSING:
                self._emit_window(key, window, contents)
        if result.is_purge():
            self.contents.pop((key, window), None)
        if event == self.event_time and ts == self._cleanup_time(window):
            self._clear_all(key, window)

    def _on_event_timer(self, key: Any, window: Any, ts: int) -> None:
        self._on_timer(key, window, ts, True)

    def _on_processing_timer(self, key: Any, window: Any, ts: int) -> None:
        self._on_timer(key, window, ts, False)
        self._flush_output()

    def _flush_output(self) -> None:
        out, ts = self.collector.take()
        if out:
            self.out(out, ts)

    # ---- elements ----
    def process_batch(self, values: list[Any], timestamps: list[int] | None) -> None:
        if self.fast:
            if timestamps is None:
                raise ValueError(_NO_TIMESTAMP)
            if self.mode == "reduce" and type(self.contents) is dict:
                self._process_fast_reduce(values, timestamps)
            elif self.mode != "list" and hasattr(self.contents, "hot_path"):
                self._process_fast_cached(values, timestamps)
            else:
                self._process_fast(values, timestamps)
        else:
            self._process_generic(values, timestamps)
        self._flush_output()

    def _late(self, values: list[Any], timestamps: list[int]) -> None:
        if self.late_out is not None:
            self.late_out(values, timestamps)
        else:
            self.late_dropped += len(values)

    def _process_fast(self, values: list[Any], timestamps: list[int]) -> None:
        """Tumbling event-time windows with the default trigger. The namespace of a window's state and timers is
        its start (an int: hashing a TimeWindow costs a Python call per dict operation); TimeWindow objects are only
        made for window functions that ask for them."""
        key, contents, timers = self.key, self.contents, self.timers
        size, offset, lateness = self.size, self.offset, self.lateness
        wm = timers.current_watermark
        late_v: list[Any] = []
        late_t: list[int] = []
        ev_add = timers.event.add
        by_ts = timers.event.by_ts
        put_new = getattr(contents, "put_new", contents.__setitem__)  # dicts have no put_new: plain assignment
        mode, reduce, agg = self.mode, self.reduce, self.agg
        for v, ts in zip(values, timestamps, strict=True):
            if ts is None or ts == MIN_TIME:  # -2**63: Flink's "no timestamp"
                raise ValueError(_NO_TIMESTAMP)
            start = ts - (ts - offset) % size
            end1 = start + size - 1
            if end1 + lateness <= wm:  # the window is late, so is the element (one window per element)
                late_v.append(v)
                late_t.append(ts)
                continue
            k = key(v)
            ck = (k, start)
            # a window has state exactly when it has a pending timer (both are made together, the timer at its
            # end while the watermark is before it, else its cleanup timer): no state lookup -- a RocksDB read
            # -- for the many windows that do not exist yet
            bucket = by_ts.get(end1 if end1 > wm else end1 + lateness)
            if bucket is None or ck not in bucket:
                if mode == "reduce":
                    put_new(ck, v)
                elif mode == "aggregate":
                    put_new(ck, agg.add(v, agg.create_accumulator()))
                else:
                    put_new(ck, [v])
                # a new window: EventTimeTrigger.on_element's end-of-window timer (unless the watermark passed it),
                # and the cleanup timer (the same one when lateness is 0)
                if end1 > wm:
                    ev_add(k, start, end1)
                if lateness:
                    ev_add(k, start, end1 + lateness)
            elif mode == "reduce":
                contents[ck] = reduce(contents[ck], v)  # type: ignore[misc]
            elif mode == "aggregate":
                contents[ck] = agg.add(v, contents[ck])
            else:
                acc = contents[ck]
                acc.append(v)
                contents[ck] = acc  # written back: RocksDB caches by put
            if end1 <= wm:  # within allowed lateness, the window has fired: fire again with this element
                self._fast_emit(k, start, contents[ck])
        if late_v:
            self._late(late_v, late_t)

    def _process_fast_reduce(self, values: list[Any], timestamps: list[int]) -> None:
        """``_process_fast`` for a reduce over the hashmap backend, whose contents table is a plain dict: one
        ``get`` per record tells whether the window exists (a window has state exactly when it has a pending timer),
        instead of the timer bucket lookup that spares the RocksDB backend a read. The commonest windowed job
        (W3), so it has its own loop."""
        if None in timestamps or MIN_TIME in timestamps:  # -2**63: Flink's "no timestamp"
            raise ValueError(_NO_TIMESTAMP)
        key, contents, timers, reduce = self.key, self.contents, self.timers, self.reduce
        size, offset, lateness = self.size, self.offset, self.lateness
        wm = timers.current_watermark
        get = contents.get
        ev_add = timers.event.add
        late_v: list[Any] = []
        late_t: list[int] = []
        missing = _MISSING
        for v, ts in zip(values, timestamps, strict=True):
            start = ts - (ts - offset) % size
            end1 = start + size - 1
            if end1 + lateness <= wm:  # the window is late, so is the element (one window per element)
                late_v.append(v)
                late_t.append(ts)
                continue
            k = key(v)
            ck = (k, start)
            acc = get(ck, missing)
            if acc is missing:
                contents[ck] = v
                if end1 > wm:
                    ev_add(k, start, end1)
                if lateness:
                    ev_add(k, start, end1 + lateness)
            else:
                contents[ck] = reduce(acc, v)  # type: ignore[misc]
            if end1 <= wm:  # within allowed lateness, the window has fired: fire again with this element
                self._fast_emit(k, start, contents[ck])
        if late_v:
            self._late(late_v, late_t)

    def _process_fast_cached(self, values: list[Any], timestamps: list[int]) -> None:
        """``_process_fast`` for reduce and aggregate over a table with a write-back cache (RocksDB): the timer
        bucket still tells whether the window exists (no DB read for the many that do not exist yet); an existing
        window's value is then read and replaced in the table's cache directly, by the rule of
        ``RocksDBTable.hot_path`` (a cached, present entry may be replaced by ``cache[k] = v; dirty.add(k)``), and
        only a miss goes through the table's methods. Between two checkpoints W3's windows are all cached, so
        this is nearly the dict case (W5)."""
        if None in timestamps or MIN_TIME in timestamps:  # -2**63: Flink's "no timestamp"
            raise ValueError(_NO_TIMESTAMP)
        key, contents, timers = self.key, self.contents, self.timers
        size, offset, lateness = self.size, self.offset, self.lateness
        wm = timers.current_watermark
        cache, dirty, new, absent = contents.hot_path()
        cget, dirty_add, new_add = cache.get, dirty.add, new.add
        ev_add = timers.event.add
        by_ts = timers.event.by_ts
        reduce = self.reduce
        agg = self.agg if self.mode == "aggregate" else None
        late_v: list[Any] = []
        late_t: list[int] = []
        if contents.db_empty:
            # the DB holds none of the table's entries (W5: checkpoints carry a window's contents in their
            # overlays, so they never reach the DB): a miss is a window that does not exist -- the dict case
            try:
                for v, ts in zip(values, timestamps, strict=True):
                    start = ts - (ts - offset) % size
                    end1 = start + size - 1
                    if end1 + lateness <= wm:  # the window is late, so is the element (one window per element)
                        late_v.append(v)
                        late_t.append(ts)
                        continue
                    k = key(v)
                    ck = (k, start)
                    acc = cget(ck, absent)
                    if acc is not absent:
                        cache[ck] = reduce(acc, v) if agg is None else agg.add(v, acc)  # type: ignore[misc]
                    else:
                        cache[ck] = v if agg is None else agg.add(v, agg.create_accumulator())
                        if end1 > wm:
                            ev_add(k, start, end1)
                        if lateness:
                            ev_add(k, start, end1 + lateness)
                    dirty_add(ck)
                    if end1 <= wm:  # within allowed lateness, the window has fired: fire again with this element
                        self._fast_emit(k, start, cache[ck])
            finally:
                contents.fit()
            if late_v:
                self._late(late_v, late_t)
            return
        try:
            for v, ts in zip(values, timestamps, strict=True):
                start = ts - (ts - offset) % size
                end1 = start + size - 1
                if end1 + lateness <= wm:  # the window is late, so is the element (one window per element)
                    late_v.append(v)
                    late_t.append(ts)
                    continue
                k = key(v)
                ck = (k, start)
                acc = cget(ck, absent)
                if acc is not absent:  # cached and present: the window exists (the cache holds live entries)
                    cache[ck] = reduce(acc, v) if agg is None else agg.add(v, acc)  # type: ignore[misc]
                    dirty_add(ck)
                else:
                    # a window has state exactly when it has a pending timer (see ``_process_fast``): no DB read
                    # for the many windows that do not exist yet
                    bucket = by_ts.get(end1 if end1 > wm else end1 + lateness)
                    if bucket is None or ck not in bucket:
                        # ``put_new`` by the rule of ``hot_path`` (a cached absent marker: the DB may hold it)
                        if ck not in cache:
                            new_add(ck)
                        cache[ck] = v if agg is None else agg.add(v, agg.create_accumulator())
                        dirty_add(ck)
                        if end1 > wm:
                            ev_add(k, start, end1)
                        if lateness:
                            ev_add(k, start, end1 + lateness)
                    else:  # exists, not cached (evicted): through the table, which reads the DB
                        acc = contents[ck]
                        contents[ck] = reduce(acc, v) if agg is None else agg.add(v, acc)  # type: ignore[misc]
                if end1 <= wm:  # within allowed lateness, the window has fired: fire again with this element
                    self._fast_emit(k, start, contents[ck])
        finally:
            contents.fit()
        if late_v:
            self._late(late_v, late_t)

    def _fast_emit(self, key: Any, start: int, contents: Any) -> None:
        end1 = start + self.size - 1
        if self.window_fn is None and self.mode != "list":
            c = self.collector
            c.values.append(contents if self.mode == "reduce" else self.agg.get_result(contents))
            c.timestamps.append(end1)
            return
        from weir.datastream.window import TimeWindow

        self.backend.current_key = key
        self._emit_window(key, TimeWindow(start, start + self.size), contents)

    def _fire_fast_bucket(self, ts: int, bucket: Any) -> None:
        """Every timer of timestamp ``ts`` at once, for the fast path without lateness and without a window
        function: each is the end of its window ``(key, start)`` -- the pair is the window's contents key -- and
        both fires it and cleans it up, so the bucket turns into one list of results."""
        missing = _MISSING
        pop_many = getattr(self.contents, "pop_many", None)  # RocksDB: one call for the bucket
        if pop_many is not None:
            accs = pop_many(bucket, missing)
        else:
            pop = self.contents.pop
            accs = [pop(ck, missing) for ck in bucket]
        if missing in accs:  # (a window has state exactly when it has a pending timer: not expected)
            accs = [a for a in accs if a is not missing]
        if self.mode == "aggregate":
            result = self.agg.get_result
            accs = [result(a) for a in accs]
        c = self.collector
        c.values.extend(accs)
        c.timestamps.extend([ts] * len(accs))

    def _on_fast_timer(self, key: Any, start: int, ts: int) -> None:
        end1 = start + self.size - 1
        ck = (key, start)
        if ts == end1:
            acc = self.contents.get(ck, _MISSING)
            if acc is not _MISSING:
                self._fast_emit(key, start, acc)
        if ts == end1 + self.lateness:  # cleanup
            self.contents.pop(ck, None)
            wf = self.window_fn
            if self.clears_per_window:
                from weir.datastream.window import TimeWindow

                self.backend.current_key = key
                self.wctx.w = TimeWindow(start, start + self.size)
                wf.clear(self.wctx)  # type: ignore[union-attr]

    def _process_generic(self, values: list[Any], timestamps: list[int] | None) -> None:
        key, backend, trigger, tctx = self.key, self.backend, self.trigger, self.tctx
        assign = self.assigner.assign_windows
        late_v: list[Any] = []
        late_t: list[Any] = []
        for i, v in enumerate(values):
            ts = None if timestamps is None else timestamps[i]
            k = key(v)
            backend.current_key = k
            windows = assign(v, ts, self.actx)
            skipped = True
            for w in windows:
                if self.merging:
                    w = self._add_merging_window(k, w)
                if self.event_time and self._cleanup_time(w) <= self.timers.current_watermark:
                    if self.merging:
                        self._retire(k, w)
                    continue
                skipped = False
                ck = (k, w)
                self._add(ck, v)
                tctx.window = w
                result = trigger.on_element(v, ts, w, tctx)
                if result.is_fire():
                    contents = self._contents_for_fire(ck)
                    if contents is not _MISSING:
                        self._emit_window(k, w, contents)
                if result.is_purge():
                    self.contents.pop(ck, None)
                self._register_cleanup(k, w)
            if skipped and self.event_time and ts is not None and ts + self.lateness <= self.timers.current_watermark:
                late_v.append(v)
                late_t.append(ts)
        if late_v:
            self._late(late_v, late_t)

    def _add_merging_window(self, key: Any, window: Any) -> Any:
        """Add ``window`` to the key's merging set, merging overlapping windows (and their contents and
        triggers); returns the window the element belongs to now."""
        assert self.merging_sets is not None
        ws: list[Any] = list(self.merging_sets.get((key, None)) or [])
        merges: list[tuple[list[Any], Any]] = []
        self.assigner.merge_windows([*ws, window], lambda to_merge, result: merges.append((list(to_merge), result)))
        result_window = window
        merged_new = False
        for to_merge, result in merges:
            if window in to_merge:
                merged_new = True
                to_merge.remove(window)
                result_window = result
            if not to_merge or (len(to_merge) == 1 and to_merge[0] == result):
                if to_merge:  # the new window fell inside an existing one: nothing moves
                    continue
                ws.append(result)
                continue
            tctx = self.tctx
            tctx.window, tctx.merged = result, to_merge
            self.trigger.on_merge(result, tctx)
            tctx.merged = []
            acc = self.contents.pop((key, result), _MISSING) if result not in to_merge else _MISSING
            for m in to_merge:
                tctx.window = m
                self.trigger.clear(m, tctx)
                self._delete_cleanup(key, m)
                acc = self._merge_contents(acc, self.contents.pop((key, m), _MISSING))
            if acc is not _MISSING:
                self.contents[(key, result)] = acc
            ws = [w for w in ws if w not in to_merge]
            if result not in ws:
                ws.append(result)
        if not merged_new and window not in ws:
            ws.append(window)
        ws.sort(key=lambda w: (w.start, w.end))
        self.merging_sets[(key, None)] = ws
        return result_window

    def process_watermark(self, watermark: int) -> None:
        self.timers.advance_watermark(watermark)
        self._flush_output()
        super().process_watermark(watermark)


def _append(lst: list[Any], v: Any) -> list[Any]:
    lst.append(v)
    return lst
