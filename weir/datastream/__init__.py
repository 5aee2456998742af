"""PyFlink's ``pyflink.datastream``."""

from weir.datastream.data_stream import CloseableIterator, DataStream, DataStreamSink, KeyedStream
from weir.datastream.execution import JobExecutionException, JobExecutionResult, JobStatus
from weir.datastream.functions import (
    FilterFunction,
    FlatMapFunction,
    KeyedProcessFunction,
    KeySelector,
    MapFunction,
    ProcessFunction,
    ReduceFunction,
    RuntimeContext,
    SinkFunction,
)
from weir.datastream.stream_execution_environment import StreamExecutionEnvironment

__all__ = [
    "CloseableIterator",
    "DataStream",
    "DataStreamSink",
    "FilterFunction",
    "FlatMapFunction",
    "JobExecutionException",
    "JobExecutionResult",
    "JobStatus",
    "KeySelector",
    "KeyedProcessFunction",
    "KeyedStream",
    "MapFunction",
    "ProcessFunction",
    "ReduceFunction",
    "RuntimeContext",
    "SinkFunction",
    "StreamExecutionEnvironment",
]
