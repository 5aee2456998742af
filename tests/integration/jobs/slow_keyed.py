"""A slow keyed job with checkpoints (hashmap state) for the bad-checkpoint tests.

Arguments: N CHECKPOINT_DIR INTERVAL_MS RETAINED."""

import sys
import time

from weir.datastream import StreamExecutionEnvironment
from weir.datastream.connectors import NumberSequenceSource

n, checkpoint_dir, interval, retained = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])


def slow(x: int) -> tuple[int, int]:
    if x % 1_000 == 0:
        time.sleep(0.05)
    return (x % 10, x)


env = StreamExecutionEnvironment.get_execution_environment()
env.set_parallelism(2)
env.enable_checkpointing(interval)
env.get_checkpoint_config().set_checkpoint_storage_dir(checkpoint_dir)
env.get_checkpoint_config().set_num_retained_checkpoints(retained)
(env.from_source(NumberSequenceSource(0, n - 1), None, "n").map(slow).key_by(lambda t: t[0])
 .reduce(lambda a, b: (a[0], a[1] + b[1])).add_sink(lambda v: None))
env.execute("slow keyed")
