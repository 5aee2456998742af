"""Type information, accepted for compatibility with PyFlink.

weir serializes records with pickle, so a type only documents intent: ``output_type=`` arguments are
accepted everywhere PyFlink accepts them and are kept on the transformation for later use (the SQL
layer, columnar fast paths). They never change how a record is encoded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class TypeInformation:
    """A named type, optionally with component types (tuples, rows, lists, maps)."""

    name: str
    components: tuple[Any, ...] = field(default_factory=tuple)
    field_names: tuple[str, ...] | None = None

    def __repr__(self) -> str:
        if self.components:
            return f"{self.name}({', '.join(map(repr, self.components))})"
        return self.name


class Types:
    """PyFlink's ``Types`` factory."""

    @staticmethod
    def STRING() -> TypeInformation:  # noqa: N802 - PyFlink's names
        return TypeInformation("STRING")

    @staticmethod
    def BYTE() -> TypeInformation:  # noqa: N802
        return TypeInformation("BYTE")

    @staticmethod
    def BOOLEAN() -> TypeInformation:  # noqa: N802
        return TypeInformation("BOOLEAN")

    @staticmethod
    def SHORT() -> TypeInformation:  # noqa: N802
        return TypeInformation("SHORT")

    @staticmethod
    def INT() -> TypeInformation:  # noqa: N802
        return TypeInformation("INT")

    @staticmethod
    def LONG() -> TypeInformation:  # noqa: N802
        return TypeInformation("LONG")

    @staticmethod
    def FLOAT() -> TypeInformation:  # noqa: N802
        return TypeInformation("FLOAT")

    @staticmethod
    def DOUBLE() -> TypeInformation:  # noqa: N802
        return TypeInformation("DOUBLE")

    @staticmethod
    def CHAR() -> TypeInformation:  # noqa: N802
        return TypeInformation("CHAR")

    @staticmethod
    def BIG_INT() -> TypeInformation:  # noqa: N802
        return TypeInformation("BIG_INT")

    @staticmethod
    def BIG_DEC() -> TypeInformation:  # noqa: N802
        return TypeInformation("BIG_DEC")

    @staticmethod
    def SQL_DATE() -> TypeInformation:  # noqa: N802
        return TypeInformation("SQL_DATE")

    @staticmethod
    def SQL_TIME() -> TypeInformation:  # noqa: N802
        return TypeInformation("SQL_TIME")

    @staticmethod
    def SQL_TIMESTAMP() -> TypeInformation:  # noqa: N802
        return TypeInformation("SQL_TIMESTAMP")

    @staticmethod
    def INSTANT() -> TypeInformation:  # noqa: N802
        return TypeInformation("INSTANT")

    @staticmethod
    def PICKLED_BYTE_ARRAY() -> TypeInformation:  # noqa: N802
        return TypeInformation("PICKLED_BYTE_ARRAY")

    @staticmethod
    def PRIMITIVE_ARRAY(element_type: TypeInformation) -> TypeInformation:  # noqa: N802
        return TypeInformation("PRIMITIVE_ARRAY", (element_type,))

    @staticmethod
    def BASIC_ARRAY(element_type: TypeInformation) -> TypeInformation:  # noqa: N802
        return TypeInformation("BASIC_ARRAY", (element_type,))

    @staticmethod
    def OBJECT_ARRAY(element_type: TypeInformation) -> TypeInformation:  # noqa: N802
        return TypeInformation("OBJECT_ARRAY", (element_type,))

    @staticmethod
    def LIST(element_type: TypeInformation) -> TypeInformation:  # noqa: N802
        return TypeInformation("LIST", (element_type,))

    @staticmethod
    def MAP(key_type: TypeInformation, value_type: TypeInformation) -> TypeInformation:  # noqa: N802
        return TypeInformation("MAP", (key_type, value_type))

    @staticmethod
    def TUPLE(types: list[TypeInformation]) -> TypeInformation:  # noqa: N802
        return TypeInformation("TUPLE", tuple(types))

    @staticmethod
    def ROW(types: list[TypeInformation]) -> TypeInformation:  # noqa: N802
        return TypeInformation("ROW", tuple(types))

    @staticmethod
    def ROW_NAMED(names: list[str], types: list[TypeInformation]) -> TypeInformation:  # noqa: N802
        if len(names) != len(types):
            raise ValueError(f"ROW_NAMED got {len(names)} names but {len(types)} types")
        return TypeInformation("ROW", tuple(types), tuple(names))
