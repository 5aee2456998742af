"""``pyflink.datastream.connectors.number_seq``."""

from weir.datastream.connectors.source import NumberSequenceSource

__all__ = ["NumberSequenceSource"]
