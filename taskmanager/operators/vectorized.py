"""Vectorized operators: user functions over whole buffers as columns (``map_batches``, ``filter_batches``) and the
keyed rolling sum/min/max computed with NumPy over a buffer (``aggregate_batches``).

A buffer reaches a columnar operator as records (``process_batch``), which it turns into a ``pyarrow.RecordBatch``
with ``weir.common.columnar``, or -- when the operator before it in the chain is columnar too -- as the batch
itself (``process_columns``): a chain of columnar operators converts records to columns once at its head and back
once at its tail. Across a task boundary the same holds when the next chain starts with a columnar operator and the
edge needs no keys: the task sets the tail's ``columns_out`` to its output, which sends the columns themselves
(Arrow IPC between workers), and the consumer task calls its head's ``process_columns``. Rows stay aligned with
the buffer's timestamps (map_batches is one-to-one; filter_batches drops a row's timestamp with the row).
Watermarks pass through unchanged. The columnar operators hold no state across buffers; aggregate_batches keeps its
running values in keyed state, checkpointed like ``reduce``.

pyarrow and NumPy are imported when a job uses these operators, never by the TaskManager otherwise.
"""

from __future__ import annotations

import itertools
import operator
from typing import Any

import numpy as np

from taskmanager.operators.base import Emit, Operator
from taskmanager.operators.keyed_state import KeyedStateMixin
from weir.common.row import Row
from weir.datastream.functions import KeySelector, ReduceFunction, RuntimeContext, callable_of

KINDS = frozenset({"map_batches", "filter_batches", "aggregate_batches"})


def make_operator(kind: str, out: Emit, fn: Any, key_selector: Any, params: dict[str, Any]) -> Operator:
    """The runtime operator of a vectorized transformation (called by ``chain.build_chain``)."""
    if kind == "map_batches":
        return MapBatchesOperator(out, fn, params)
    if kind == "filter_batches":
        return FilterBatchesOperator(out, fn, params)
    if kind == "aggregate_batches":
        return AggregateBatchesOperator(out, fn, key_selector, params)
    raise ValueError(f"unknown vectorized operator kind {kind!r}")


class ColumnarOperator(Operator):
    """Takes buffers as records (``process_batch``) or, from a columnar operator chained before it or across a
    columnar edge, as columns (``process_columns``); hands its result on as columns (``columns_out``) when the next
    operator of its chain is columnar too, or -- set by the task -- when its output edges take columns."""

    what = "columnar operator"

    def __init__(self, out: Emit, fn: Any, params: dict[str, Any]) -> None:
        from weir.common import columnar

        super().__init__(out)
        self.c = columnar
        self.fn = fn
        self.f = fn
        self.schema = params.get("schema")
        self.numpy = params.get("batch_format", "arrow") == "numpy"
        self.columns_out: Any = None

    def open(self, ctx: RuntimeContext) -> None:
        nxt = getattr(self.out, "__self__", None)  # chained operators emit into the next one's process_batch
        if isinstance(nxt, ColumnarOperator):
            self.columns_out = nxt.process_columns
        super().open(ctx)

    def process_batch(self, values: list[Any], timestamps: list[int] | None) -> None:
        if not values:
            return
        batch, shape = self.c.records_to_batch(values, self.schema, self.what)
        self._process(self.c.Columns(batch), shape, timestamps)

    def process_columns(self, cols: Any, shape: Any, timestamps: list[int] | None) -> None:
        """A buffer as ``columnar.Columns``, with the shape of the records it stands for (``RecordShape``)."""
        if self.schema is not None:
            cols = self.c.Columns(self.c.conform_batch(cols.arrow(), shape, self.schema, self.what))
        self._process(cols, shape, timestamps)

    def _process(self, cols: Any, shape: Any, timestamps: list[int] | None) -> None:
        raise NotImplementedError

    def _argument(self, cols: Any) -> Any:
        return cols.numpy() if self.numpy else cols.arrow()

    def _emit(self, cols: Any, shape: Any, timestamps: list[int] | None) -> None:
        if self.columns_out is not None:
            self.columns_out(cols, shape, timestamps)
        else:
            self.out(cols.to_records(shape), timestamps)


class MapBatchesOperator(ColumnarOperator):
    """``map_batches``: ``fn`` maps a buffer's columns to as many rows, row i being the result of record i."""

    name = "map_batches"
    what = "map_batches"

    def __init__(self, out: Emit, fn: Any, params: dict[str, Any]) -> None:
        super().__init__(out, fn, params)
        self.output_records = params.get("output_records", "same")
        self._shapes: dict[tuple[Any, ...], Any] = {}

    def _process(self, cols: Any, shape: Any, timestamps: list[int] | None) -> None:
        n = cols.num_rows
        if n == 0:
            return
        result = self.c.result_to_columns(self.f(self._argument(cols)), "map_batches")
        if result.num_rows != n:
            raise self.c.ColumnarError(
                f"map_batches: the function returned {result.num_rows} rows for a buffer of {n}; map_batches is "
                f"one-to-one (row i of the result is the record of input row i, with its timestamp): return one "
                f"row per input row (drop rows with filter_batches)"
            )
        names = tuple(result.names)
        out_shape = self._shapes.get((shape, names))
        if out_shape is None:
            out_shape = self._shapes[(shape, names)] = self.c.output_shape(shape, names, self.output_records)
        self._emit(result, out_shape, timestamps)


class FilterBatchesOperator(ColumnarOperator):
    """``filter_batches``: ``fn`` returns one boolean per row of a buffer; rows (and their timestamps) with True
    are kept, False and null are dropped."""

    name = "filter_batches"
    what = "filter_batches"

    def _process(self, cols: Any, shape: Any, timestamps: list[int] | None) -> None:
        n = cols.num_rows
        if n == 0:
            return
        keep = self.c.result_to_mask(self.f(self._argument(cols)), n, "filter_batches")
        kept = int(np.count_nonzero(keep))
        if kept == 0:
            return
        if kept < n:
            cols = cols.filter(keep)
            if timestamps is not None:
                timestamps = list(itertools.compress(timestamps, keep.tolist()))
        self._emit(cols, shape, timestamps)


# ---- keyed rolling aggregates ----

_MISSING = object()
_INT64_MAX = 2**63 - 1
MIN_REPEATS = 8
"""aggregate_batches works over arrays when a buffer has at least this many records per distinct key on average;
with fewer repeats the per-key work (state, templates) costs more than the per-record work it saves."""


def _with_field(acc: Any, position: Any, value: Any) -> Any:
    """``acc`` with the field at ``position`` set to ``value``: the record the rolling sum/min/max of the record path
    (``data_stream._field_aggregate``) emits, built the same way for every record type."""
    if isinstance(acc, tuple):
        fields = (*acc[:position], value, *acc[position + 1:])
        return type(acc)._make(fields) if hasattr(acc, "_make") else fields  # type: ignore[attr-defined]
    if isinstance(acc, list | dict):
        out = acc.copy()
        out[position] = value  # type: ignore[index]
        return out
    if isinstance(acc, Row):
        row = Row(*acc._values)
        row._fields = acc._fields
        row[position] = value
        return row
    return value


class _Groups:
    """The records of a buffer grouped by key code (0 .. groups-1, numbered by first occurrence)."""

    def __init__(self, codes: Any, groups: int) -> None:
        self.codes = codes
        self.groups = groups
        self.order = np.argsort(codes, kind="stable")  # record indices, group by group, in record order
        self.counts = np.bincount(codes, minlength=groups)
        self.starts = np.cumsum(self.counts) - self.counts
        self.first = self.order[self.starts]
        self.last = self.order[self.starts + self.counts - 1]


def _rolling(vals: Any, g: _Groups, base: Any, has_base: Any, agg: str) -> Any:
    """Per record, the running ``agg`` of its group up to and including it, in record order; group i starts
    from ``base[i]`` when ``has_base[i]``, else from its first value.

    Every group's values are folded one at a time, in record order (never re-associated), so float sums equal the
    record path bit for bit. The Python loop runs over whichever is smaller -- the groups, or the largest group's
    size -- so a buffer of n records costs at most about sqrt(n) NumPy steps.
    """
    n = len(vals)
    order, counts, starts = g.order, g.counts, g.starts
    sc = g.codes[order]
    sv = vals[order]
    dtype = np.result_type(vals.dtype, base.dtype)
    out_sorted = np.empty(n, dtype=dtype)
    if agg == "sum":
        def step(a: Any, b: Any) -> Any:
            return a + b
    elif agg == "min":
        def step(a: Any, b: Any) -> Any:
            return np.where(b < a, b, a)  # the record path's rule: a tie or NaN keeps the accumulator
    else:
        def step(a: Any, b: Any) -> Any:
            return np.where(b > a, b, a)
    if g.groups <= int(counts.max()):
        ufunc = {"sum": np.add, "min": np.minimum, "max": np.maximum}[agg]
        for i, (s, c) in enumerate(zip(starts.tolist(), counts.tolist(), strict=True)):
            seg = sv[s:s + c].astype(dtype)
            if has_base[i]:
                seg[0] = step(base[i], seg[0])
            out_sorted[s:s + c] = ufunc.accumulate(seg)  # sequential; min/max get here only without NaN and -0.0
    else:
        rank = np.arange(n) - starts[sc]
        by_rank = np.argsort(rank, kind="stable")  # round r: the r-th value of every group that has one
        acc = base.astype(dtype)
        lo = 0
        for r, size in enumerate(np.bincount(rank).tolist()):
            pos = by_rank[lo:lo + size]
            lo += size
            gi = sc[pos]
            v = sv[pos]
            a = np.where(has_base[gi], step(acc[gi], v), v) if r == 0 else step(acc[gi], v)
            acc[gi] = a
            out_sorted[pos] = a
    out = np.empty_like(out_sorted)
    out[order] = out_sorted
    return out


class AggregateBatchesOperator(KeyedStateMixin):
    """``aggregate_batches``: the rolling sum/min/max of a field per key -- exactly ``key_by(...).sum/min/max`` --
    computed per buffer with NumPy.

    Per buffer: keys are found with the key selector, the field's values of all records go in one array, the running
    aggregate of every record is computed over the array (``_rolling``), and keyed state is read and written once per
    distinct key, not once per record. The state is what the record path keeps (table ``reduce``: the key's last
    output record), so results, checkpoints and rescaling behave the same, and a savepoint of either restores into
    the other. ``emit="record"`` emits one record per input record (the record path's output, with its timestamps);
    ``emit="buffer"`` emits, per buffer, only each key's last of those records, with the timestamp of that key's
    last input record.

    Buffers the NumPy path cannot reproduce exactly -- fields that are not all ``int`` (with int64 room for the sums)
    or all ``float``, min/max over NaN or -0.0, records of mixed types -- and buffers with fewer than
    ``MIN_REPEATS`` records per distinct key (where arrays do not pay) are folded record by record with the record
    path's reduce function (``fn``), with the same results.
    """

    name = "aggregate_batches"

    def __init__(self, out: Emit, fn: Any, key_selector: Any, params: dict[str, Any]) -> None:
        super().__init__(out)
        self.fn = fn
        self.f = callable_of(fn, ReduceFunction, "reduce")
        self.key = callable_of(key_selector, KeySelector, "get_key")
        self.agg = params["agg"]
        self.position = params["position"]
        self.per_record = params.get("emit", "record") == "record"
        self.vectorized_buffers = 0  # buffers done over arrays (the others record by record)

    def open(self, ctx: RuntimeContext) -> None:
        self.backend = self.open_backend()
        self.state = self.backend.table("reduce")
        super().open(ctx)

    def process_batch(self, values: list[Any], timestamps: list[int] | None) -> None:
        if not values:
            return
        keys = list(map(self.key, values))
        index: dict[Any, Any] = dict.fromkeys(keys)
        done = None
        if len(values) >= MIN_REPEATS * len(index):  # else arrays cost more than they save
            done = self._vectorized(values, keys, index)
        if done is None:
            out = self._fold(values, keys)
            idx: Any = range(len(values))
            if not self.per_record:
                idx = sorted({k: i for i, k in enumerate(keys)}.values())
                out = [out[i] for i in idx]
        else:
            self.vectorized_buffers += 1
            out, idx = done
        if self.per_record:
            self.out(out, timestamps)
        else:
            self.out(out, None if timestamps is None else [timestamps[i] for i in idx])

    def _fold(self, values: list[Any], keys: list[Any]) -> list[Any]:
        """The record path (``KeyedReduceOperator``), record by record."""
        f, state = self.f, self.state
        get = state.get
        out: list[Any] = []
        append = out.append
        for v, k in zip(values, keys, strict=True):
            sk = (k, None)
            acc = get(sk, _MISSING)
            if acc is not _MISSING:
                v = f(acc, v)
            state[sk] = v
            append(v)
        return out

    def _vectorized(self, values: list[Any], keys: list[Any], index: dict[Any, Any]) -> tuple[list[Any], Any] | None:
        """(the outputs, their record indices) computed over arrays, with the state updated; None (nothing done)
        when the record path must run."""
        first = values[0]
        t = type(first)
        if len(set(map(type, values))) != 1:
            return None
        distinct = list(index)
        get = self.state.get
        prev = [get((k, None), _MISSING) for k in distinct]
        position = self.position
        scalar = t is int or t is float
        if scalar:
            if position not in (0, None):
                return None
            fields: list[Any] = values
            bases = [p for p in prev if p is not _MISSING]
        else:
            if t is tuple or (isinstance(first, tuple) and hasattr(t, "_make")):
                if type(position) is not int or not 0 <= position < len(first):
                    return None
            elif not (t is list or t is dict or t is Row):
                return None
            getter = operator.itemgetter(position)
            try:
                fields = list(map(getter, values))
                bases = [getter(p) for p in prev if p is not _MISSING]
            except (KeyError, IndexError, TypeError):
                return None
        ft = type(fields[0])
        if (ft is not int and ft is not float) or len(set(map(type, fields))) != 1:
            return None
        if not set(map(type, bases)) <= {ft}:
            return None
        if ft is int:
            # int64 must hold every running value a Python int would reach: |value| <= |base| + sum |fields|
            big = max(max(fields), -min(fields))
            if max(map(abs, bases), default=0) + big * len(fields) > _INT64_MAX:
                return None
        dtype = np.int64 if ft is int else np.float64
        vals = np.array(fields, dtype=dtype)
        has_base = np.array([p is not _MISSING for p in prev], dtype=bool)
        base = np.zeros(len(prev), dtype=dtype)
        if bases:
            base[has_base] = bases
        if ft is float and self.agg != "sum":
            both = np.concatenate([vals, base[has_base]])
            if np.isnan(both).any() or np.signbit(both[both == 0]).any():
                return None
        for i, k in enumerate(distinct):
            index[k] = i
        codes_list = list(map(index.__getitem__, keys))
        g = _Groups(np.array(codes_list, dtype=np.intp), len(prev))
        res = _rolling(vals, g, base, has_base, self.agg).tolist()
        last = g.last.tolist()
        idx: list[int] | range
        if self.per_record:
            idx = range(len(values))
            sel_codes, sel_res = codes_list, res
        else:
            idx = sorted(last)
            sel_codes = [codes_list[i] for i in idx]
            sel_res = [res[i] for i in idx]
        if scalar:
            out = sel_res
        else:
            # the other fields come from the key's first record ever: the state's record, else this buffer's first
            firsts = g.first.tolist()
            templates = [p if p is not _MISSING else values[firsts[c]] for c, p in enumerate(prev)]
            out = _replace_field(templates, sel_codes, sel_res, position)
            # a key's very first record is emitted as it is (as the record path does), not as a copy
            position_of = None if self.per_record else {i: j for j, i in enumerate(idx)}
            for c, p in enumerate(prev):
                if p is _MISSING:
                    i = firsts[c]
                    j = i if position_of is None else position_of.get(i)
                    if j is not None:
                        out[j] = values[i]
        # the state: each key's last output
        state = self.state
        if self.per_record:
            for k, i in zip(distinct, last, strict=True):
                state[(k, None)] = out[i]
        else:
            for i, record in zip(idx, out, strict=True):
                state[(distinct[codes_list[i]], None)] = record
        return out, idx


def _replace_field(templates: list[Any], codes: list[int], res: list[Any], position: Any) -> list[Any]:
    """For each output, its group's template record with the field at ``position`` replaced by the result: plain
    tuples and namedtuples of one width column by column (zip in C), other records one by one."""
    t = type(templates[0])
    if (t is tuple or hasattr(t, "_make")) and issubclass(t, tuple) and len(set(map(type, templates))) == 1:
        widths = set(map(len, templates))
        if len(widths) == 1:
            (width,) = widths
            pick = codes.__iter__
            cols: list[Any] = []
            for j in range(width):
                if j == position:
                    cols.append(res)
                else:
                    tcol = [tp[j] for tp in templates]
                    cols.append(list(map(tcol.__getitem__, pick())))
            rows = zip(*cols, strict=True)
            return list(rows) if t is tuple else list(map(t._make, rows))  # type: ignore[attr-defined]
    return [_with_field(templates[c], position, x) for c, x in zip(codes, res, strict=True)]
