"""Records <-> columns: the one place where weir converts a buffer of Python records to an Arrow ``RecordBatch``
and back (the vectorized operators ``map_batches``/``filter_batches`` use it; the SQL layer is meant to).

Record shapes and their columns (the shape of a buffer is the type of its first record; every record of a buffer
must have that shape):

==================  =========================================  ===============================================
records             columns                                    back to records (``output_records="same"``)
==================  =========================================  ===============================================
scalars (int, str)  one column ``f0``                          scalars if one column, else tuples
tuples, lists       one column per position, ``f0``, ``f1``..  tuples (lists)
namedtuples         one column per field, by field name        the namedtuple if the names match, else tuples
``Row`` (unnamed)   one column per position, ``f0``, ``f1``..  ``Row``, named unless the names are f0, f1, ...
``Row`` (named)     one column per field, by field name        ``Row`` with the batch's column names
dicts               one column per key of the first dict       dicts
==================  =========================================  ===============================================

A ``schema`` (``pyarrow.Schema``, or a weir ``Types.ROW_NAMED``/``ROW``/``TUPLE``/basic type) fixes the column
types -- otherwise pyarrow infers them per buffer (int -> int64, float -> double, ints and floats -> double, str ->
string, None -> null, a column of only None -> the null type) -- and names the columns: positionally for
scalars, tuples, lists and unnamed rows, by name (selecting those fields) for dicts, named rows and namedtuples.

Between tasks, a columnar buffer travels as columns (``encode_ipc``/``decode_ipc``: Arrow IPC, stream format, one
stream per buffer) when both ends of a keyless edge are columnar operators; see docs/architecture.md.

This module imports pyarrow, which is optional (``pip install weir[arrow]``): import it only where columns are
used.
"""

from __future__ import annotations

import itertools
import pickle
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

try:
    import numpy as np
    import pyarrow as pa
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "weir's columnar operators (map_batches, filter_batches) need pyarrow and numpy: pip install 'weir[arrow]'"
    ) from e

from weir.common.row import Row
from weir.common.typeinfo import TypeInformation

BATCH_FORMATS = ("arrow", "numpy")
OUTPUT_RECORDS = ("same", "value", "tuple", "list", "row", "dict")


class ColumnarError(TypeError):
    """Records that do not fit in columns, or a user function's result that is not columns."""


@dataclass(frozen=True)
class RecordShape:
    """How a buffer's records became columns, so results can be turned back into the same kind of records.

    Attributes:
        kind: "value" (scalars), "tuple", "list", "namedtuple", "row" or "dict".
        names: the column names.
        named: for rows, whether the input rows had field names.
        factory: the namedtuple type.
    """

    kind: str
    names: tuple[str, ...]
    named: bool = False
    factory: Any = None


def default_names(n: int) -> tuple[str, ...]:
    """Flink's names for positional fields: f0, f1, ..."""
    return tuple(f"f{i}" for i in range(n))


# ---- types ----

_BASIC_TYPES: dict[str, Any] = {
    "STRING": pa.string(),
    "CHAR": pa.string(),
    "BYTE": pa.int8(),
    "BOOLEAN": pa.bool_(),
    "SHORT": pa.int16(),
    "INT": pa.int32(),
    "LONG": pa.int64(),
    "FLOAT": pa.float32(),
    "DOUBLE": pa.float64(),
    "BIG_INT": pa.decimal128(38, 0),
    "BIG_DEC": pa.decimal128(38, 18),
    "SQL_DATE": pa.date32(),
    "SQL_TIME": pa.time64("us"),
    "SQL_TIMESTAMP": pa.timestamp("us"),
    "INSTANT": pa.timestamp("us", tz="UTC"),
    "PICKLED_BYTE_ARRAY": pa.binary(),
}


def arrow_type(t: TypeInformation) -> Any:
    """The Arrow type of a weir/PyFlink ``TypeInformation``."""
    if t.name in _BASIC_TYPES:
        return _BASIC_TYPES[t.name]
    if t.name in ("LIST", "BASIC_ARRAY", "PRIMITIVE_ARRAY", "OBJECT_ARRAY"):
        return pa.list_(arrow_type(t.components[0]))
    if t.name == "MAP":
        return pa.map_(arrow_type(t.components[0]), arrow_type(t.components[1]))
    if t.name in ("ROW", "TUPLE"):
        names = t.field_names or default_names(len(t.components))
        return pa.struct([pa.field(n, arrow_type(c)) for n, c in zip(names, t.components, strict=True)])
    raise ColumnarError(f"no Arrow type for {t!r}")


def to_schema(schema: Any, what: str = "map_batches") -> Any:
    """A ``pyarrow.Schema`` from ``schema``: a Schema, a weir ``TypeInformation`` (a row or tuple type gives one
    column per field, any other type one column ``f0``), or what ``pyarrow.schema()`` accepts (a list of
    (name, type) pairs, a dict name -> type)."""
    if schema is None or isinstance(schema, pa.Schema):
        return schema
    if isinstance(schema, TypeInformation):
        if schema.name in ("ROW", "TUPLE"):
            names = schema.field_names or default_names(len(schema.components))
            return pa.schema([pa.field(n, arrow_type(c)) for n, c in zip(names, schema.components, strict=True)])
        return pa.schema([pa.field("f0", arrow_type(schema))])
    try:
        return pa.schema(list(schema.items()) if isinstance(schema, Mapping) else schema)
    except (TypeError, ValueError, pa.ArrowException) as e:
        raise ColumnarError(
            f"{what}: schema must be a pyarrow.Schema, a Types.ROW_NAMED(...) type or a list of (name, type) "
            f"pairs; got {type(schema).__name__}: {e}"
        ) from None


# ---- records -> columns ----

def _shape_of(first: Any) -> RecordShape:
    t = type(first)
    if t is tuple:
        return RecordShape("tuple", default_names(len(first)))
    if isinstance(first, tuple) and hasattr(t, "_fields"):
        return RecordShape("namedtuple", tuple(t._fields), factory=t)
    if t is list:
        return RecordShape("list", default_names(len(first)))
    if isinstance(first, Row):
        if first._fields is None:
            return RecordShape("row", default_names(len(first._values)))
        return RecordShape("row", tuple(first._fields), named=True)
    if isinstance(first, dict):
        return RecordShape("dict", tuple(first))
    return RecordShape("value", ("f0",))


def _mixed(what: str, values: Sequence[Any], first: Any) -> ColumnarError:
    odd = next(v for v in values if type(v) is not type(first))
    return ColumnarError(
        f"{what}: records of one buffer must have one shape to become columns; got a {type(first).__name__} "
        f"({first!r:.60}) and a {type(odd).__name__} ({odd!r:.60})"
    )


def _columns(values: Sequence[Any], shape: RecordShape, schema: Any, what: str) -> list[Any]:
    """The Python lists (or tuples) of each column, in ``shape.names`` order."""
    kind = shape.kind
    first = values[0]
    if kind == "value":
        if isinstance(first, tuple | list | dict | Row):
            raise _mixed(what, values, first)
        return [values]
    if kind == "dict":
        names = shape.names
        try:
            cols = [[d[k] for d in values] for k in names]
        except (KeyError, TypeError) as e:
            bad = next(d for d in values if not isinstance(d, dict) or any(k not in d for k in names))
            raise ColumnarError(
                f"{what}: every dict record of a buffer needs the keys of the first ({list(names)}); "
                f"got {bad!r:.80}"
            ) from e
        if schema is None and any(len(d) != len(names) for d in values):
            bad = next(d for d in values if len(d) != len(names))
            raise ColumnarError(
                f"{what}: every dict record of a buffer needs the keys of the first ({list(names)}) and no other; "
                f"got {bad!r:.80} (pass schema= to select columns)"
            )
        return cols
    t = type(first)
    if any(type(v) is not t for v in values):
        raise _mixed(what, values, first)
    if kind == "row":
        fields = first._fields
        if any(r._fields != fields for r in values):
            bad = next(r for r in values if r._fields != fields)
            raise ColumnarError(f"{what}: rows of one buffer must have the same field names; got {fields} "
                                f"and {bad._fields}")
        rows: Sequence[Any] = [r._values for r in values]
    else:
        rows = values
    n = len(shape.names)
    if any(len(r) != n for r in rows):
        bad = next(v for v, r in zip(values, rows, strict=True) if len(r) != n)
        raise ColumnarError(f"{what}: records of one buffer must have the same number of fields; got {n} "
                            f"({first!r:.60}) and {len(bad)} ({bad!r:.60})")
    return list(zip(*rows, strict=True)) if n else []


def records_to_batch(values: Sequence[Any], schema: Any = None, what: str = "map_batches") -> tuple[Any, RecordShape]:
    """A non-empty buffer of records as a ``pyarrow.RecordBatch``, and the shape to convert results back with.

    Raises:
        ColumnarError: the records have different shapes, or a field's values do not fit one Arrow type.
    """
    shape = _shape_of(values[0])
    cols = _columns(values, shape, schema, what)
    types: list[Any] = [None] * len(cols)
    if schema is not None:
        if shape.kind in ("dict", "namedtuple") or (shape.kind == "row" and shape.named):
            index = {n: i for i, n in enumerate(shape.names)}
            missing = [n for n in schema.names if n not in index]
            if missing:
                raise ColumnarError(f"{what}: the schema's fields {missing} are not fields of the records "
                                    f"({list(shape.names)})")
            cols = [cols[index[n]] for n in schema.names]
        elif len(schema) != len(cols):
            raise ColumnarError(f"{what}: the schema has {len(schema)} fields but the records have {len(cols)} "
                                f"({values[0]!r:.60})")
        types = list(schema.types)
        names: Sequence[str] = schema.names
    else:
        names = shape.names
    arrays = []
    for name, col, t in zip(names, cols, types, strict=True):
        try:
            arrays.append(pa.array(col, type=t))
        except (pa.ArrowException, TypeError, ValueError, OverflowError) as e:
            raise ColumnarError(
                f"{what}: field {name!r} cannot become an Arrow column{f' of type {t}' if t is not None else ''}: "
                f"{e}. The values of a field must have one type (pass schema= to choose it)"
            ) from None
    return pa.RecordBatch.from_arrays(arrays, names=list(names)), shape


def conform_batch(batch: Any, shape: RecordShape, schema: Any, what: str = "map_batches") -> Any:
    """``batch`` (columns handed on by a columnar operator before this one in the chain) with ``schema`` applied as
    ``records_to_batch`` would apply it to the records (by position, or by name for named shapes), the types by an
    Arrow cast."""
    if schema is None or batch.schema.equals(schema):
        return batch
    if shape.kind in ("dict", "namedtuple") or (shape.kind == "row" and shape.named):
        names = batch.schema.names
        missing = [n for n in schema.names if n not in names]
        if missing:
            raise ColumnarError(f"{what}: the schema's fields {missing} are not columns of the batch ({names})")
        arrays = [batch.column(n) for n in schema.names]
    else:
        if len(schema) != batch.num_columns:
            raise ColumnarError(f"{what}: the schema has {len(schema)} fields but the batch has "
                                f"{batch.num_columns} columns ({batch.schema.names})")
        arrays = list(batch.columns)
    out = []
    for a, field in zip(arrays, schema, strict=True):
        try:
            out.append(a if a.type == field.type else a.cast(field.type))
        except (pa.ArrowException, TypeError, ValueError) as e:
            raise ColumnarError(f"{what}: column {field.name!r} ({a.type}) cannot be cast to {field.type}: {e}"
                                ) from None
    return pa.RecordBatch.from_arrays(out, schema=schema)


# ---- columns -> records ----

_NUMPY_EXACT = frozenset([pa.int8(), pa.int16(), pa.int32(), pa.int64(), pa.uint8(), pa.uint16(), pa.uint32(),
                          pa.uint64(), pa.float16(), pa.float32(), pa.float64(), pa.bool_()])
"""Types whose values NumPy's ``tolist`` gives as the same Python objects as ``to_pylist`` (when there are no
nulls), only 2x faster."""


def column_to_list(col: Any) -> list[Any]:
    """An Arrow array's values as Python objects (None for nulls)."""
    if col.type in _NUMPY_EXACT and col.null_count == 0:
        return col.to_numpy(zero_copy_only=False).tolist()  # type: ignore[no-any-return]
    return col.to_pylist()  # type: ignore[no-any-return]


def output_shape(shape: RecordShape, names: Sequence[str], output_records: str = "same") -> RecordShape:
    """The shape of the records made from a result with columns ``names`` (``output_records``: see OUTPUT_RECORDS)."""
    names = tuple(names)
    kind = shape.kind if output_records == "same" else output_records
    if kind == "namedtuple" and names != shape.names:
        kind = "tuple"
    if kind == "value" and len(names) != 1:
        if output_records == "value":
            raise ColumnarError(f"output_records='value' needs a result of one column, got {list(names)}")
        kind = "tuple"
    named = kind == "row" and (shape.named or names != default_names(len(names)))
    return RecordShape(kind, names, named, shape.factory if kind == "namedtuple" else None)


def batch_to_records(batch: Any, shape: RecordShape) -> list[Any]:
    """The records of ``batch`` in ``shape`` (from ``output_shape``)."""
    return _rows([column_to_list(c) for c in batch.columns], shape, batch.num_rows)


def _rows(cols: list[list[Any]], shape: RecordShape, num_rows: int) -> list[Any]:
    kind = shape.kind
    if kind == "value":
        return cols[0]
    if not cols:
        return [() if kind == "tuple" else [] if kind == "list" else {} for _ in range(num_rows)]
    if kind == "tuple":
        return list(zip(*cols, strict=True))
    if kind == "namedtuple":
        return list(itertools.starmap(shape.factory, zip(*cols, strict=True)))
    if kind == "list":
        return [list(r) for r in zip(*cols, strict=True)]
    if kind == "dict":
        names = shape.names
        return [dict(zip(names, r, strict=True)) for r in zip(*cols, strict=True)]
    if kind == "row":
        out = []
        fields = list(shape.names) if shape.named else None
        for r in zip(*cols, strict=True):
            row = Row(*r)
            if fields is not None:
                row._fields = fields
            out.append(row)
        return out
    raise ValueError(f"unknown record shape {kind!r}")


# ---- batch formats and results ----

def batch_to_numpy(batch: Any) -> dict[str, Any]:
    """``batch_format="numpy"``: column name -> NumPy array (Arrow's ``to_numpy``: strings and other non-numeric
    columns become object arrays, integers with nulls become float64 with NaN)."""
    return {name: col.to_numpy(zero_copy_only=False) for name, col in zip(batch.schema.names, batch.columns,
                                                                          strict=True)}


_RESULT_TYPES = ("a pyarrow.RecordBatch, a pyarrow.Table, a dict of column name -> array (NumPy array, pyarrow "
                 "array or list) or a single array (one column)")


def _as_array(value: Any, name: str, what: str) -> Any:
    if type(value) is np.ndarray:
        try:
            return pa.array(value)
        except (pa.ArrowException, TypeError, ValueError, OverflowError) as e:
            raise ColumnarError(f"{what}: column {name!r} of the function's result cannot become an Arrow "
                                f"array: {e}") from None
    if isinstance(value, pa.Array):
        return value
    if isinstance(value, pa.ChunkedArray):
        return value.combine_chunks()
    if isinstance(value, np.ndarray | list | tuple):
        try:
            return pa.array(value)
        except (pa.ArrowException, TypeError, ValueError, OverflowError) as e:
            raise ColumnarError(f"{what}: column {name!r} of the function's result cannot become an Arrow "
                                f"array: {e}") from None
    raise ColumnarError(
        f"{what}: column {name!r} of the function's result must be a NumPy array, a pyarrow array or a list; "
        f"got {type(value).__name__}"
    )


def _dict_to_batch(result: Mapping[Any, Any], what: str) -> Any:
    names = list(result)
    if not all(type(n) is str for n in names):
        raise ColumnarError(f"{what}: the function returned a dict whose keys are not all column names (str): "
                            f"{names!r:.80}")
    arrays = [_as_array(result[n], n, what) for n in names]
    if len({len(a) for a in arrays}) > 1:
        lengths = {n: len(a) for n, a in zip(names, arrays, strict=True)}
        raise ColumnarError(f"{what}: the columns of the function's result have different lengths: {lengths}")
    return pa.RecordBatch.from_arrays(arrays, names=names)


def result_to_batch(result: Any, what: str = "map_batches") -> Any:
    """A user function's result as a ``pyarrow.RecordBatch``.

    Raises:
        ColumnarError: the result is none of ``_RESULT_TYPES``, or its columns have different lengths.
    """
    if type(result) is dict:  # the common case first: isinstance(..., Mapping) is slow
        return _dict_to_batch(result, what)
    if isinstance(result, pa.RecordBatch):
        return result
    if isinstance(result, pa.Table):
        return pa.RecordBatch.from_arrays([c.combine_chunks() for c in result.columns], schema=result.schema)
    if isinstance(result, Mapping):
        return _dict_to_batch(result, what)
    if isinstance(result, pa.Array | pa.ChunkedArray | np.ndarray):
        return pa.RecordBatch.from_arrays([_as_array(result, "f0", what)], names=["f0"])
    raise ColumnarError(f"{what}: the function must return {_RESULT_TYPES}; got {type(result).__name__}")


def result_to_mask(result: Any, n: int, what: str = "filter_batches") -> Any:
    """A filter function's result as a NumPy bool array of ``n`` values (null counts as False).

    Raises:
        ColumnarError: not a boolean array (pyarrow, NumPy or a list of bools) of length ``n``.
    """
    if type(result) is np.ndarray and result.dtype == np.bool_ and result.ndim == 1:
        mask: Any = result
    else:
        mask = result
        if isinstance(mask, pa.ChunkedArray):
            mask = mask.combine_chunks()
        elif isinstance(mask, np.ndarray | list | tuple):
            try:
                mask = pa.array(mask)
            except (pa.ArrowException, TypeError, ValueError) as e:
                raise ColumnarError(f"{what}: the function's result cannot become a boolean array: {e}") from None
        if not isinstance(mask, pa.Array) or not (pa.types.is_boolean(mask.type) or pa.types.is_null(mask.type)):
            got = f"an array of {mask.type}" if isinstance(mask, pa.Array) else type(result).__name__
            raise ColumnarError(f"{what}: the function must return a boolean array (pyarrow, NumPy or a list of "
                                f"bools) with one value per row; got {got}")
    if len(mask) != n:
        raise ColumnarError(f"{what}: the function returned {len(mask)} booleans for a buffer of {n} rows; "
                            f"it must return one per row")
    if isinstance(mask, pa.Array):
        mask = mask.cast(pa.bool_()).fill_null(False).to_numpy(zero_copy_only=False)
    return mask


# ---- what columnar operators hand on inside a chain ----

_NUMPY_DIRECT = frozenset("iufb")
"""NumPy dtype kinds (ints, unsigned, floats, bools) whose ``tolist`` equals the round trip through Arrow: columns of
these kinds go from one numpy-format operator to the next, and to records, without becoming Arrow arrays."""


class Columns:
    """A buffer as columns: an Arrow ``RecordBatch``, or a dict of 1-D NumPy arrays as a numpy-format function
    returned them. Each form is made from the other when asked for, once; records made from either are the same."""

    __slots__ = ("_batch", "_arrays", "num_rows")

    def __init__(self, batch: Any = None, arrays: dict[str, Any] | None = None, num_rows: int = 0) -> None:
        self._batch = batch
        self._arrays = arrays
        self.num_rows = batch.num_rows if batch is not None else num_rows

    @property
    def names(self) -> list[str]:
        return list(self._arrays) if self._batch is None and self._arrays is not None else self._batch.schema.names

    def arrow(self) -> Any:
        if self._batch is None:
            assert self._arrays is not None
            self._batch = pa.RecordBatch.from_arrays([pa.array(a) for a in self._arrays.values()],
                                                     names=list(self._arrays))
        return self._batch

    def numpy(self) -> dict[str, Any]:
        if self._arrays is None:
            self._arrays = batch_to_numpy(self._batch)
        return self._arrays

    def filter(self, keep: Any) -> Columns:
        """The rows where the NumPy bool array ``keep`` is True."""
        if self._batch is None and self._arrays is not None:
            return Columns(arrays={k: a[keep] for k, a in self._arrays.items()}, num_rows=int(keep.sum()))
        return Columns(self._batch.filter(pa.array(keep)))

    def to_records(self, shape: RecordShape) -> list[Any]:
        if self._batch is None and self._arrays is not None:
            cols = [a.tolist() for a in self._arrays.values()]
            return _rows(cols, shape, self.num_rows)
        return batch_to_records(self._batch, shape)


def result_to_columns(result: Any, what: str = "map_batches") -> Columns:
    """A user function's result as ``Columns``: a dict of equally long 1-D numeric/bool NumPy arrays stays as it
    is; anything else goes through ``result_to_batch`` (which checks it)."""
    if type(result) is dict and result:
        n = -1
        for k, a in result.items():
            if type(k) is not str or type(a) is not np.ndarray or a.ndim != 1 or a.dtype.kind not in _NUMPY_DIRECT:
                break
            if n < 0:
                n = len(a)
            elif len(a) != n:
                break
        else:
            return Columns(arrays=result, num_rows=n)
    return Columns(result_to_batch(result, what))


# ---- columns between tasks ----

class ColumnarFrameError(ValueError):
    """A columnar buffer received from another worker is not a valid Arrow IPC payload of weir's framing."""


_META_LEN = struct.Struct("!I")


def share(cols: Columns) -> Columns:
    """A second handle on ``cols`` for another consumer in this process: it shares the immutable Arrow batch but
    not ``cols``' cached NumPy arrays, which a numpy-format function of one consumer could change in place."""
    return Columns(cols.arrow())


def _schema_key(cols: Columns) -> Any:
    """What must be equal for two buffers to become one: column names and types (NumPy dtypes or Arrow types)."""
    if cols._batch is None and cols._arrays is not None:
        return tuple((k, a.dtype) for k, a in cols._arrays.items())
    return cols._batch.schema


def concat_pieces(
    pieces: Sequence[tuple[Columns, RecordShape, list[int] | None]],
) -> list[tuple[Columns, RecordShape, list[int] | None]]:
    """``pieces`` (buffers waiting for one channel, in order) with every run of neighbours of the same shape and
    column types concatenated into one buffer; timestamps stay aligned with the rows (None where a piece had
    none). Pieces that differ (a column inferred as null in one buffer and int64 in the next) stay apart, in
    order."""
    out: list[tuple[Columns, RecordShape, list[int] | None]] = []
    run: list[tuple[Columns, RecordShape, list[int] | None]] = []

    def close() -> None:
        if len(run) == 1:
            out.append(run[0])
        elif run:
            cols = [c for c, _, _ in run]
            if cols[0]._batch is None and cols[0]._arrays is not None and all(c._batch is None for c in cols):
                names = list(cols[0]._arrays)
                arrays = {k: np.concatenate([c._arrays[k] for c in cols]) for k in names}  # type: ignore[index]
                merged = Columns(arrays=arrays, num_rows=sum(c.num_rows for c in cols))
            else:
                merged = Columns(_concat_batches([c.arrow() for c in cols]))
            ts: list[int] | None = None
            if any(t is not None for _, _, t in run):
                ts = []
                for c, _, t in run:
                    ts.extend(t if t is not None else [None] * c.num_rows)  # type: ignore[list-item]
            out.append((merged, run[0][1], ts))
        run.clear()

    for piece in pieces:
        if run and (piece[1] != run[0][1] or _schema_key(piece[0]) != _schema_key(run[0][0])):
            close()
        run.append(piece)
    close()
    return out


def _concat_batches(batches: list[Any]) -> Any:
    if hasattr(pa, "concat_batches"):  # pyarrow >= 19
        return pa.concat_batches(batches)
    return pa.Table.from_batches(batches).combine_chunks().to_batches()[0]  # pragma: no cover


def encode_ipc(cols: Columns, shape: RecordShape, timestamps: list[int] | None) -> bytes:
    """A buffer of columns as the payload of a COLUMNS frame: the length of a pickled ``(shape, timestamps)``
    (u32, big-endian), that pickle, then the batch as an Arrow IPC stream (schema, one record batch, end).

    The record shape (a namedtuple type travels by reference, as in a pickled buffer of records) and the timestamps
    are small and Python-shaped, so they are pickled; the columns, which are most of the bytes, are not.
    """
    meta = pickle.dumps((shape, timestamps), protocol=5)
    batch = cols.arrow()
    sink = pa.BufferOutputStream()
    sink.write(_META_LEN.pack(len(meta)))
    sink.write(meta)
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return sink.getvalue().to_pybytes()  # type: ignore[no-any-return]


def decode_ipc(payload: bytes) -> tuple[Columns, RecordShape, list[int] | None]:
    """The buffer ``encode_ipc`` made; the batch's columns point into ``payload`` (no copy).

    Raises:
        ColumnarFrameError: ``payload`` is not one (truncated, corrupt, not one batch, timestamps not aligned).
            The batch is validated in full (offsets, UTF-8), so corrupt columns fail here and not later, when a
            function reads them.
    """
    try:
        view = memoryview(payload)
        (n,) = _META_LEN.unpack_from(view)
        if n > len(view) - _META_LEN.size:
            raise ColumnarFrameError(f"metadata length {n} exceeds the payload ({len(view)} bytes)")
        shape, timestamps = pickle.loads(view[_META_LEN.size:_META_LEN.size + n])
        reader = pa.ipc.open_stream(pa.py_buffer(view[_META_LEN.size + n:]))
        batch = reader.read_next_batch()
        try:
            reader.read_next_batch()
        except StopIteration:
            pass
        else:
            raise ColumnarFrameError("more than one record batch in one buffer")
        batch.validate(full=True)
    except ColumnarFrameError:
        raise
    except StopIteration:
        raise ColumnarFrameError("the Arrow IPC stream holds no record batch") from None
    except Exception as e:  # noqa: BLE001 - whatever a corrupt payload makes pickle or Arrow raise
        raise ColumnarFrameError(f"{type(e).__name__}: {e}") from None
    if not isinstance(shape, RecordShape):
        raise ColumnarFrameError(f"the record shape is a {type(shape).__name__}")
    if timestamps is not None and (type(timestamps) is not list or len(timestamps) != batch.num_rows):
        raise ColumnarFrameError(f"timestamps do not match the batch's {batch.num_rows} rows")
    return Columns(batch), shape, timestamps
