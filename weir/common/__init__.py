"""PyFlink's ``pyflink.common``: types, rows and configuration."""

from weir.common.configuration import Configuration
from weir.common.row import Row, RowKind
from weir.common.time import Duration, Time
from weir.common.typeinfo import TypeInformation, Types

__all__ = ["Configuration", "Duration", "Row", "RowKind", "Time", "TypeInformation", "Types"]
