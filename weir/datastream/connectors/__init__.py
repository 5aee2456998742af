"""Sources and sinks (``pyflink.datastream.connectors``)."""

from weir.datastream.connectors.file_source import FileSource, StreamFormat
from weir.datastream.connectors.sink import (
    Encoder,
    FileSink,
    PrintSink,
    Sink,
    SinkWriter,
    TwoPhaseCommittingSinkWriter,
)
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
    "FileSource",
    "NumberSequenceSource",
    "PrintSink",
    "Sink",
    "SinkWriter",
    "Source",
    "SourceReader",
    "StreamFormat",
    "TwoPhaseCommittingSinkWriter",
]
