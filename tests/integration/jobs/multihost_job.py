"""The job of test_exactly_once (build()), parallelism 2, checkpoints every 300 ms; used by test_multihost.

Arguments: CHECKPOINT_DIR (a file:// URI) OUT_DIR. Run from the repository root (the job's functions live in
tests.integration.test_exactly_once, which the TaskManagers import by name).
"""

import sys
from pathlib import Path

from tests.integration.test_exactly_once import build
from weir.datastream import HashMapStateBackend, StreamExecutionEnvironment

checkpoint_dir, out_dir = sys.argv[1], sys.argv[2]

env = StreamExecutionEnvironment.get_execution_environment()
env.set_parallelism(2)
env.enable_checkpointing(300)
env.get_checkpoint_config().set_checkpoint_storage_dir(checkpoint_dir)
env.set_state_backend(HashMapStateBackend())
build(env, Path(out_dir))
env.execute("across hosts")
