"""A job file that raises while the job is being built."""

from weir.datastream import StreamExecutionEnvironment

env = StreamExecutionEnvironment.get_execution_environment()
ds = env.from_collection([1, 2, 3])
ds.map(lambda x: x).key_by(lambda x: x).sum(0)
raise RuntimeError("configuration file missing: /nonexistent/rates.csv")
