"""A keyed event-time window job into the exactly-once FileSink (used by the savepoint tests).

Arguments: OUT_DIR N CHECKPOINT_DIR. Output lines: "key,window_start,sum" for x in 0..N-1, key x % 50, ts x ms,
1-second windows, value x % 1000.
"""

import sys
import time

from weir.common import Duration, Time
from weir.common.serialization import Encoder
from weir.common.watermark_strategy import WatermarkStrategy
from weir.datastream import EmbeddedRocksDBStateBackend, StreamExecutionEnvironment
from weir.datastream.connectors import FileSink, NumberSequenceSource
from weir.datastream.window import TumblingEventTimeWindows

out_dir, n, checkpoint_dir = sys.argv[1], int(sys.argv[2]), sys.argv[3]


def record(x: int) -> tuple[int, int, int]:
    if x % 5_000 == 0:
        time.sleep(0.02)
    return (x % 50, x, x % 1_000)


def describe(key, window, elements):
    (r,) = elements
    return [f"{key},{window.start},{r[2]}"]


env = StreamExecutionEnvironment.get_execution_environment()
env.enable_checkpointing(300)
env.get_checkpoint_config().set_checkpoint_storage_dir(checkpoint_dir)
env.set_state_backend(EmbeddedRocksDBStateBackend())
strategy = WatermarkStrategy.for_bounded_out_of_orderness(Duration.of_millis(0)).with_timestamp_assigner(
    lambda r, _: r[1])
(env.from_source(NumberSequenceSource(0, n - 1), None, "numbers").uid("numbers")
 .map(record).uid("record")
 .assign_timestamps_and_watermarks(strategy).uid("timestamps")
 .key_by(lambda r: r[0]).window(TumblingEventTimeWindows.of(Time.seconds(1)))
 .reduce(lambda a, b: (a[0], a[1], a[2] + b[2]), window_function=describe).uid("windows")
 .sink_to(FileSink.for_row_format(out_dir, Encoder.simple_string_encoder()).build()).uid("sink"))
env.execute("windowed sum")
