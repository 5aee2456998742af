"""PyFlink's ``pyflink.common``: types, rows and configuration."""

from weir.common.configuration import Configuration
from weir.common.execution_config import ExecutionConfig
from weir.common.restart_strategy import RestartStrategies, RestartStrategyConfiguration
from weir.common.row import Row, RowKind
from weir.common.time import Duration, Time
from weir.common.typeinfo import TypeInformation, Types
from weir.common.watermark_strategy import TimestampAssigner, WatermarkStrategy

__all__ = [
    "Configuration",
    "Duration",
    "ExecutionConfig",
    "RestartStrategies",
    "RestartStrategyConfiguration",
    "Row",
    "RowKind",
    "Time",
    "TimestampAssigner",
    "TypeInformation",
    "Types",
    "WatermarkStrategy",
]
