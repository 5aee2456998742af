"""StreamExecutionEnvironment: where a job is built and from where it is executed."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from weir.common.configuration import Configuration
from weir.common.execution_config import ExecutionConfig
from weir.datastream.checkpoint_config import CheckpointConfig, CheckpointingMode
from weir.datastream.connectors.source import CollectionSource, Source
from weir.datastream.data_stream import CloseableIterator, DataStream
from weir.datastream.execution import (
    JobClient,
    JobExecutionResult,
    get_context,
    load_executor,
)
from weir.graph.jobgraph import DEFAULT_MAX_PARALLELISM, JobGraph, compile_job_graph
from weir.graph.transformation import Transformation


class StreamExecutionEnvironment:
    """Builds a job and executes it on a cluster.

    ``execute()`` runs the job on the JobManager named by ``weir run --jobmanager`` (or ``WEIR_JOBMANAGER``);
    with none named it starts a local cluster for the run and tears it down after, like PyFlink's local
    execution. Sinks registered before ``execute()`` make up the job; ``execute()`` clears them.
    """

    def __init__(self, configuration: Configuration | None = None) -> None:
        self._config = ExecutionConfig(configuration)
        ctx = get_context()
        self._parallelism = (ctx.parallelism if ctx and ctx.parallelism else None) or 1
        self._max_parallelism = DEFAULT_MAX_PARALLELISM
        self._buffer_timeout_ms = 10
        self._transformations: list[Transformation] = []
        self._sinks: list[Transformation] = []

    @staticmethod
    def get_execution_environment(configuration: Configuration | None = None) -> StreamExecutionEnvironment:
        return StreamExecutionEnvironment(configuration)

    # ---- settings ----
    def set_parallelism(self, parallelism: int) -> StreamExecutionEnvironment:
        if parallelism < 1:
            raise ValueError(f"parallelism must be >= 1, got {parallelism}")
        self._parallelism = parallelism
        return self

    def get_parallelism(self) -> int:
        return self._parallelism

    def set_max_parallelism(self, max_parallelism: int) -> StreamExecutionEnvironment:
        if not 0 < max_parallelism <= 32768:
            raise ValueError(f"max parallelism must be in 1..32768, got {max_parallelism}")
        self._max_parallelism = max_parallelism
        return self

    def get_max_parallelism(self) -> int:
        return self._max_parallelism

    def set_buffer_timeout(self, timeout_millis: int) -> StreamExecutionEnvironment:
        """How long a partly filled buffer may wait before it is sent (ms). 0 flushes after every buffer
        of input; -1 only flushes full buffers (and at end of input)."""
        if timeout_millis < -1:
            raise ValueError(f"buffer timeout must be >= -1, got {timeout_millis}")
        self._buffer_timeout_ms = timeout_millis
        return self

    def get_buffer_timeout(self) -> int:
        return self._buffer_timeout_ms

    def add_python_file(self, file_path: str) -> None:
        """Ship a Python file, a package directory or a directory of modules with the job (PyFlink's
        ``python.files``): on the TaskManagers it is put on ``sys.path`` before the job's functions are loaded.

        Raises:
            FileNotFoundError: ``file_path`` does not exist.
        """
        from weir.graph.python_files import CONFIG_KEY

        path = os.path.abspath(os.path.expanduser(file_path))
        if not os.path.exists(path):
            raise FileNotFoundError(f"add_python_file: {file_path} does not exist")
        files = [f for f in (self._config.get_string(CONFIG_KEY, "") or "").split(",") if f]
        if path not in files:
            self._config.set_string(CONFIG_KEY, ",".join([*files, path]))

    def get_config(self) -> ExecutionConfig:
        return self._config

    def enable_checkpointing(self, interval: int, mode: CheckpointingMode | None = None) -> StreamExecutionEnvironment:
        """Checkpoint every ``interval`` ms (aligned barriers, exactly-once unless ``mode`` says AT_LEAST_ONCE)."""
        cc = self.get_checkpoint_config()
        cc.set_checkpoint_interval(interval)
        if mode is not None:
            cc.set_checkpointing_mode(mode)
        return self

    def get_checkpoint_config(self) -> CheckpointConfig:
        return CheckpointConfig(self._config)

    def get_checkpoint_interval(self) -> int:
        return self.get_checkpoint_config().get_checkpoint_interval()

    def get_checkpointing_mode(self) -> CheckpointingMode:
        return self.get_checkpoint_config().get_checkpointing_mode()

    def set_restart_strategy(self, restart_strategy_configuration: Any) -> StreamExecutionEnvironment:
        """``RestartStrategies.fixed_delay_restart(attempts, delay_ms)`` and friends, or a dict of
        ``restart-strategy.*`` keys."""
        items = getattr(restart_strategy_configuration, "config", restart_strategy_configuration)
        for k, v in dict(items).items():
            self._config.set_string(k, str(v))
        return self

    def set_state_backend(self, state_backend: Any) -> StreamExecutionEnvironment:
        """Where keyed state lives: ``HashMapStateBackend()`` (memory) or ``EmbeddedRocksDBStateBackend()``
        (RocksDB on the slot's local disk). Without one, the TaskManager's default (hashmap) applies."""
        name = getattr(state_backend, "name", None)
        if name not in ("hashmap", "rocksdb"):
            raise TypeError(
                f"set_state_backend expects HashMapStateBackend() or EmbeddedRocksDBStateBackend(), got "
                f"{type(state_backend).__name__}"
            )
        self._config.set_string("state.backend.type", name)
        return self

    def get_state_backend(self) -> str | None:
        return self._config.get_string("state.backend.type")

    def configure(self, configuration: Configuration) -> StreamExecutionEnvironment:
        self._config.add_all(configuration)
        return self

    # ---- sources ----
    def from_collection(self, collection: Any, type_info: Any = None) -> DataStream:
        return self._source(CollectionSource(collection), "Source: Collection Source", type_info)

    def from_source(
        self, source: Source, watermark_strategy: Any = None, source_name: str = "Source", type_info: Any = None
    ) -> DataStream:
        if not isinstance(source, Source):
            raise TypeError(f"from_source expects a Source, got {type(source).__name__}")
        return self._source(source, f"Source: {source_name}", type_info, watermark_strategy)

    def _source(self, source: Source, name: str, type_info: Any, watermark_strategy: Any = None) -> DataStream:
        t = Transformation(
            kind="source",
            name=name,
            fn=source,
            output_type=type_info,
            params={"watermark_strategy": watermark_strategy} if watermark_strategy is not None else {},
        )
        if source.is_bounded_parallelism_one:
            t.parallelism = 1
        self._transformations.append(t)
        return DataStream(self, t)

    # ---- execution ----
    def get_job_graph(self, job_name: str = "weir job", sinks: list[Transformation] | None = None) -> JobGraph:
        return compile_job_graph(
            sinks if sinks is not None else self._sinks,
            job_name,
            default_parallelism=self._parallelism,
            max_parallelism=self._max_parallelism,
            buffer_timeout_ms=self._buffer_timeout_ms,
            config=self._config.to_dict(),
        )

    def _take_graph(self, job_name: str, extra_sink: Transformation | None = None) -> JobGraph:
        sinks = list(self._sinks) + ([extra_sink] if extra_sink is not None else [])
        graph = self.get_job_graph(job_name, sinks)
        self._sinks.clear()
        self._transformations.clear()
        return graph

    def execute(self, job_name: str = "weir job") -> JobExecutionResult:
        """Run the job and wait for it to end.

        Raises:
            JobExecutionException: the job FAILED (with the user's traceback) or was CANCELED.
        """
        ctx = get_context()
        client = load_executor().execute(self._take_graph(job_name), detached=bool(ctx and ctx.detached))
        if ctx and ctx.detached:
            return JobExecutionResult(client.get_job_id(), 0)
        return client.get_job_execution_result()

    def execute_async(self, job_name: str = "weir job") -> JobClient:
        """Submit the job and return at once with a client to watch or cancel it."""
        return load_executor().execute(self._take_graph(job_name), detached=True)

    def _execute_and_collect(self, collect: Transformation, job_name: str) -> CloseableIterator:
        self._sinks.append(collect)
        graph = self._take_graph(job_name)
        client, records = load_executor().collect(graph)

        def on_close() -> None:
            close = getattr(records, "close", None)
            if close is not None:
                close()

        return CloseableIterator(_iterate(records), on_close)


def _iterate(records: Iterator[Any]) -> Iterator[Any]:
    yield from records
