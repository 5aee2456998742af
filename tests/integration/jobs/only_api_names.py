"""A job written only against the names of the first slice (ported from PyFlink by its import prefix)."""

import sys

from weir.common import Configuration, Row, Types
from weir.datastream import StreamExecutionEnvironment
from weir.datastream.connectors.number_seq import NumberSequenceSource
from weir.datastream.functions import (
    FilterFunction,
    FlatMapFunction,
    KeySelector,
    MapFunction,
    ProcessFunction,
    ReduceFunction,
    RuntimeContext,
    SinkFunction,
)


class Parse(MapFunction):
    def open(self, runtime_context: RuntimeContext) -> None:
        self.sub = runtime_context.get_index_of_this_subtask()

    def map(self, value):
        return Row(user=f"u{value % 13}", n=value)


class Big(FilterFunction):
    def filter(self, value):
        return value.n > 10


class Twice(FlatMapFunction):
    def flat_map(self, value):
        yield value
        yield value


class ByUser(KeySelector):
    def get_key(self, value):
        return value.user


class Add(ReduceFunction):
    def reduce(self, a, b):
        return Row(user=a.user, n=a.n + b.n)


class Fmt(ProcessFunction):
    def process_element(self, value, ctx):
        yield f"{value.user},{value.n}"


class Discard(SinkFunction):
    def invoke(self, value, context):
        pass


conf = Configuration()
conf.set_string("pipeline.name", "api names")
env = StreamExecutionEnvironment.get_execution_environment(conf)
env.set_parallelism(2)
env.set_max_parallelism(64)
env.set_buffer_timeout(5)
n = int(sys.argv[1])
ds = (
    env.from_source(NumberSequenceSource(1, n), None, "numbers")
    .map(Parse(), output_type=Types.ROW_NAMED(["user", "n"], [Types.STRING(), Types.LONG()]))
    .filter(Big())
    .flat_map(Twice())
    .key_by(ByUser(), key_type=Types.STRING())
    .reduce(Add())
    .process(Fmt(), output_type=Types.STRING())
    .name("format")
    .uid("format")
)
ds.add_sink(Discard())
totals = {}
for line in ds.execute_and_collect("api names"):
    user, total = line.split(",")
    totals[user] = max(totals.get(user, 0), int(total))
expected = {}
for v in range(11, n + 1):
    expected[f"u{v % 13}"] = expected.get(f"u{v % 13}", 0) + 2 * v
assert totals == expected, (totals, expected)
print("OK", sum(totals.values()))
