"""A job whose map function raises on one record."""

from weir.datastream import StreamExecutionEnvironment
from weir.datastream.connectors.number_seq import NumberSequenceSource


def parse_amount(x: int) -> int:
    if x == 777:
        raise ValueError(f"bad amount in record {x}")
    return x


env = StreamExecutionEnvironment.get_execution_environment()
env.from_source(NumberSequenceSource(1, 10_000), None, "nums").map(parse_amount).print()
env.execute("raising udf")
