"""Sources and sinks (``pyflink.datastream.connectors``)."""

from weir.datastream.connectors.sink import Encoder, FileSink, PrintSink, Sink, SinkWriter
from weir.datastream.connectors.source import (
    CollectionSource,
    NumberSequenceSource,
    Source,
    SourceReader,
)

__all__ = [
    "CollectionSource",
    "Encoder",
    "FileSink",
    "NumberSequenceSource",
    "PrintSink",
    "Sink",
    "SinkWriter",
    "Source",
    "SourceReader",
]
