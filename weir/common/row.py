"""PyFlink's ``Row``: an ordered record whose fields may have names."""

from __future__ import annotations

from enum import Enum
from typing import Any


class RowKind(Enum):
    INSERT = 0
    UPDATE_BEFORE = 1
    UPDATE_AFTER = 2
    DELETE = 3

    def short_string(self) -> str:
        return ("+I", "-U", "+U", "-D")[self.value]


class Row:
    """A row of values, positionally or by field name.

    ``Row(1, "a")`` is positional; ``Row(id=1, name="a")`` is named (field order is the keyword order);
    ``Person = Row("name", "age")`` makes a row factory: ``Person("Alice", 11)``. Rows are compared and
    hashed by their values and kind, like PyFlink's, so they work as keys.
    """

    __slots__ = ("_values", "_fields", "_row_kind")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if args and kwargs:
            raise ValueError("Row takes either positional values or keyword fields, not both")
        if kwargs:
            self._fields: list[str] | None = list(kwargs)
            self._values: list[Any] = list(kwargs.values())
        else:
            self._fields = None
            self._values = list(args)
        self._row_kind = RowKind.INSERT

    def __call__(self, *args: Any) -> Row:
        """Build a row with this row's values as field names (``Row("a", "b")(1, 2)``)."""
        if len(args) != len(self._values):
            raise ValueError(f"this row factory takes {len(self._values)} values, got {len(args)}")
        r = Row(*args)
        r._fields = [str(v) for v in self._values]
        return r

    def as_dict(self, recursive: bool = False) -> dict[str, Any]:
        if self._fields is None:
            raise TypeError("cannot convert a row without field names to a dict")

        def conv(v: Any) -> Any:
            return v.as_dict(True) if recursive and isinstance(v, Row) and v._fields else v

        return {k: conv(v) for k, v in zip(self._fields, self._values, strict=True)}

    def set_field_names(self, field_names: list[str]) -> None:
        self._fields = list(field_names)

    def get_fields_by_names(self, names: list[str]) -> list[Any]:
        return [self[n] for n in names]

    def get_row_kind(self) -> RowKind:
        return self._row_kind

    def set_row_kind(self, row_kind: RowKind) -> None:
        self._row_kind = row_kind

    def _index(self, name: str) -> int:
        if self._fields is not None:
            try:
                return self._fields.index(name)
            except ValueError:
                pass
        raise KeyError(f"Row has no field {name!r} (fields: {self._fields})")

    def __getitem__(self, item: Any) -> Any:
        if isinstance(item, str):
            return self._values[self._index(item)]
        return self._values[item]

    def __setitem__(self, item: Any, value: Any) -> None:
        if isinstance(item, str):
            self._values[self._index(item)] = value
        else:
            self._values[item] = value

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return self._values[self._index(name)]
        except KeyError:
            raise AttributeError(f"Row has no field {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        if name in Row.__slots__:
            object.__setattr__(self, name, value)
        else:
            self._values[self._index(name)] = value

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __contains__(self, item: Any) -> bool:
        return item in self._values if self._fields is None else item in self._fields

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Row):
            return False
        return self._values == other._values and self._row_kind == other._row_kind

    def __hash__(self) -> int:
        return hash((tuple(self._values), self._row_kind.value))

    def __lt__(self, other: Row) -> bool:
        return self._values < other._values

    def __getstate__(self) -> tuple[Any, ...]:
        # copies: copy.copy(row) goes through __reduce__ and must not share the values list
        return (list(self._values), None if self._fields is None else list(self._fields), self._row_kind.value)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        values, fields, kind = state
        object.__setattr__(self, "_values", values)
        object.__setattr__(self, "_fields", fields)
        object.__setattr__(self, "_row_kind", RowKind(kind))

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (_new_row, (), self.__getstate__())

    def __repr__(self) -> str:
        if self._fields is not None:
            inner = ", ".join(f"{k}={v!r}" for k, v in zip(self._fields, self._values, strict=False))
        else:
            inner = ", ".join(repr(v) for v in self._values)
        return f"Row({inner})"


def _new_row() -> Row:
    r = Row.__new__(Row)
    return r
