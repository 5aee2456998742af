"""User function interfaces, as in PyFlink's ``pyflink.datastream.functions``.

Every function object has the ``open(runtime_context)`` / ``close()`` lifecycle. Wherever a function object is
accepted, a plain callable works too (``ds.map(lambda x: x + 1)``). Functions are called from one thread only:
a subtask is a single-threaded mailbox loop, so no function needs locking.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from typing import Any

from weir.common.configuration import Configuration


class RuntimeContext:
    """What a running function knows of its subtask. Built by the runtime, one per operator instance."""

    def __init__(
        self,
        task_name: str,
        index_of_this_subtask: int,
        number_of_parallel_subtasks: int,
        max_number_of_parallel_subtasks: int,
        attempt_number: int = 0,
        job_parameters: dict[str, str] | None = None,
        keyed_state_store: Any = None,
    ) -> None:
        self._task_name = task_name
        self._index = index_of_this_subtask
        self._parallelism = number_of_parallel_subtasks
        self._max_parallelism = max_number_of_parallel_subtasks
        self._attempt = attempt_number
        self._job_parameters = dict(job_parameters or {})
        self._keyed_state_store = keyed_state_store

    def get_task_name(self) -> str:
        return self._task_name

    def get_number_of_parallel_subtasks(self) -> int:
        return self._parallelism

    def get_max_number_of_parallel_subtasks(self) -> int:
        return self._max_parallelism

    def get_index_of_this_subtask(self) -> int:
        return self._index

    def get_attempt_number(self) -> int:
        return self._attempt

    def get_task_name_with_subtasks(self) -> str:
        return f"{self._task_name} ({self._index + 1}/{self._parallelism})"

    def get_job_parameter(self, key: str, default_value: str) -> str:
        return self._job_parameters.get(key, default_value)

    def _store(self) -> Any:
        if self._keyed_state_store is None:
            raise RuntimeError(
                "keyed state is only available on a keyed stream: call key_by(...) before this operator"
            )
        return self._keyed_state_store

    def get_state(self, state_descriptor: Any) -> Any:
        return self._store().get_state(state_descriptor)

    def get_list_state(self, state_descriptor: Any) -> Any:
        return self._store().get_list_state(state_descriptor)

    def get_map_state(self, state_descriptor: Any) -> Any:
        return self._store().get_map_state(state_descriptor)

    def get_reducing_state(self, state_descriptor: Any) -> Any:
        return self._store().get_reducing_state(state_descriptor)

    def get_aggregating_state(self, state_descriptor: Any) -> Any:
        return self._store().get_aggregating_state(state_descriptor)


class Function(ABC):  # noqa: B024 - lifecycle hooks are optional on purpose
    """Base of all user functions: ``open`` before the first record, ``close`` after the last."""

    def open(self, runtime_context: RuntimeContext) -> None:  # noqa: B027
        pass

    def close(self) -> None:  # noqa: B027
        pass


class MapFunction(Function):
    @abstractmethod
    def map(self, value: Any) -> Any: ...


class FlatMapFunction(Function):
    @abstractmethod
    def flat_map(self, value: Any) -> Iterable[Any]: ...


class FilterFunction(Function):
    @abstractmethod
    def filter(self, value: Any) -> bool: ...


class KeySelector(Function):
    @abstractmethod
    def get_key(self, value: Any) -> Any: ...


class ReduceFunction(Function):
    @abstractmethod
    def reduce(self, value1: Any, value2: Any) -> Any: ...


class SinkFunction(Function):
    """A record-at-a-time sink (``ds.add_sink(f)``): ``invoke`` is called once per record."""

    class Context:
        def __init__(self, timestamp: int | None = None) -> None:
            self._timestamp = timestamp

        def timestamp(self) -> int | None:
            return self._timestamp

    @abstractmethod
    def invoke(self, value: Any, context: SinkFunction.Context) -> None: ...


class ProcessFunction(Function):
    """Processes each element; outputs are what ``process_element`` yields (or returns, as an iterable)."""

    class Context(ABC):
        @abstractmethod
        def timestamp(self) -> int | None: ...

        @abstractmethod
        def timer_service(self) -> Any: ...

    @abstractmethod
    def process_element(self, value: Any, ctx: ProcessFunction.Context) -> Iterable[Any] | None: ...


class KeyedProcessFunction(Function):
    """Processes each element of a keyed stream, with keyed state and the current key."""

    class Context(ABC):
        @abstractmethod
        def timestamp(self) -> int | None: ...

        @abstractmethod
        def timer_service(self) -> Any: ...

        @abstractmethod
        def get_current_key(self) -> Any: ...

    class OnTimerContext(Context):
        pass

    @abstractmethod
    def process_element(self, value: Any, ctx: KeyedProcessFunction.Context) -> Iterable[Any] | None: ...

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext) -> Iterable[Any] | None:
        return None


def callable_of(fn: Any, base: type, method: str) -> Callable[..., Any]:
    """The callable to invoke for ``fn``: its ``method`` when it is a ``base`` object, else ``fn`` itself.

    Raises:
        TypeError: ``fn`` is neither a ``base`` nor callable, with what was expected.
    """
    if isinstance(fn, base):
        return getattr(fn, method)  # type: ignore[no-any-return]
    if callable(fn):
        return fn  # type: ignore[no-any-return]
    raise TypeError(f"expected a {base.__name__} or a callable, got {type(fn).__name__}: {fn!r}")




class TimerService(ABC):
    """Timers and time of a keyed function (``ctx.timer_service()``), scoped to the current key."""

    @abstractmethod
    def current_processing_time(self) -> int: ...

    @abstractmethod
    def current_watermark(self) -> int: ...

    @abstractmethod
    def register_processing_time_timer(self, timestamp: int) -> None: ...

    @abstractmethod
    def register_event_time_timer(self, timestamp: int) -> None: ...

    @abstractmethod
    def delete_processing_time_timer(self, timestamp: int) -> None: ...

    @abstractmethod
    def delete_event_time_timer(self, timestamp: int) -> None: ...


class TimeDomain:
    EVENT_TIME = 0
    PROCESSING_TIME = 1


class AggregateFunction(Function):
    """Incremental aggregation: ``add`` folds a value into an accumulator, ``merge`` joins two (sessions)."""

    @abstractmethod
    def create_accumulator(self) -> Any: ...

    @abstractmethod
    def add(self, value: Any, accumulator: Any) -> Any: ...

    @abstractmethod
    def get_result(self, accumulator: Any) -> Any: ...

    def merge(self, acc_a: Any, acc_b: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__}.merge is needed by merging (session) windows")


class WindowFunction(Function):
    """``apply(key, window, inputs)`` over all elements (or the pre-aggregated result) of a window."""

    @abstractmethod
    def apply(self, key: Any, window: Any, inputs: Iterable[Any]) -> Iterable[Any]: ...


class AllWindowFunction(Function):
    @abstractmethod
    def apply(self, window: Any, inputs: Iterable[Any]) -> Iterable[Any]: ...


class ProcessWindowFunction(Function):
    """``process(key, context, elements)``; the context gives the window, time and per-window state."""

    class Context(ABC):
        @abstractmethod
        def window(self) -> Any: ...

        @abstractmethod
        def current_processing_time(self) -> int: ...

        @abstractmethod
        def current_watermark(self) -> int: ...

        @abstractmethod
        def window_state(self) -> Any: ...

        @abstractmethod
        def global_state(self) -> Any: ...

        @abstractmethod
        def output(self, output_tag: Any, value: Any) -> None: ...

    @abstractmethod
    def process(self, key: Any, context: ProcessWindowFunction.Context, elements: Iterable[Any]) -> Iterable[Any]:
        ...

    def clear(self, context: ProcessWindowFunction.Context) -> None:  # noqa: B027 - optional hook
        """Called when the window is purged; clear per-window state here."""


class ProcessAllWindowFunction(Function):
    @abstractmethod
    def process(self, context: ProcessWindowFunction.Context, elements: Iterable[Any]) -> Iterable[Any]: ...

    def clear(self, context: ProcessWindowFunction.Context) -> None:  # noqa: B027
        pass


class CoMapFunction(Function):
    @abstractmethod
    def map1(self, value: Any) -> Any: ...

    @abstractmethod
    def map2(self, value: Any) -> Any: ...


class CoFlatMapFunction(Function):
    @abstractmethod
    def flat_map1(self, value: Any) -> Iterable[Any]: ...

    @abstractmethod
    def flat_map2(self, value: Any) -> Iterable[Any]: ...


class CoProcessFunction(Function):
    class Context(ABC):
        @abstractmethod
        def timestamp(self) -> int | None: ...

        @abstractmethod
        def timer_service(self) -> TimerService: ...

    @abstractmethod
    def process_element1(self, value: Any, ctx: CoProcessFunction.Context) -> Iterable[Any] | None: ...

    @abstractmethod
    def process_element2(self, value: Any, ctx: CoProcessFunction.Context) -> Iterable[Any] | None: ...


class KeyedCoProcessFunction(Function):
    class Context(ABC):
        @abstractmethod
        def timestamp(self) -> int | None: ...

        @abstractmethod
        def timer_service(self) -> TimerService: ...

        @abstractmethod
        def get_current_key(self) -> Any: ...

    class OnTimerContext(Context):
        pass

    @abstractmethod
    def process_element1(self, value: Any, ctx: KeyedCoProcessFunction.Context) -> Iterable[Any] | None: ...

    @abstractmethod
    def process_element2(self, value: Any, ctx: KeyedCoProcessFunction.Context) -> Iterable[Any] | None: ...

    def on_timer(self, timestamp: int, ctx: KeyedCoProcessFunction.OnTimerContext) -> Iterable[Any] | None:
        return None


__all__ = [
    "AggregateFunction",
    "AllWindowFunction",
    "CoFlatMapFunction",
    "CoMapFunction",
    "CoProcessFunction",
    "Configuration",
    "KeyedCoProcessFunction",
    "ProcessAllWindowFunction",
    "ProcessWindowFunction",
    "TimeDomain",
    "TimerService",
    "WindowFunction",
    "FilterFunction",
    "FlatMapFunction",
    "Function",
    "KeySelector",
    "KeyedProcessFunction",
    "MapFunction",
    "ProcessFunction",
    "ReduceFunction",
    "RuntimeContext",
    "SinkFunction",
    "callable_of",
]
