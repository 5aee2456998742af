"""``pyflink.datastream.connectors.file_system``."""

from weir.datastream.connectors.file_source import FileSource, StreamFormat
from weir.datastream.connectors.sink import Encoder, FileSink

__all__ = ["Encoder", "FileSink", "FileSource", "StreamFormat"]
