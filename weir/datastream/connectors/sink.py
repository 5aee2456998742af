"""The sink role: a Sink creates one writer per subtask; writers receive whole buffers of records."""

from __future__ import annotations

import os
import sys
import uuid
from abc import ABC, abstractmethod
from typing import Any

from weir.common.serialization import Encoder
from weir.datastream.functions import RuntimeContext


class SinkWriter(ABC):
    """Writes one subtask's records. Called only from that subtask's mailbox thread."""

    @abstractmethod
    def write_batch(self, values: list[Any]) -> None: ...

    def finish(self) -> None:  # noqa: B027 - optional hook
        """End of input: make everything written visible."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (also called on failure and cancel, after or instead of ``finish``)."""


class Sink(ABC):
    @abstractmethod
    def create_writer(self, ctx: RuntimeContext) -> SinkWriter: ...


class _PrintWriter(SinkWriter):
    def __init__(self, prefix: str, stderr: bool) -> None:
        self._prefix = prefix
        self._stream = sys.stderr if stderr else sys.stdout

    def write_batch(self, values: list[Any]) -> None:
        p = self._prefix
        self._stream.write("".join(f"{p}{v}\n" for v in values))
        self._stream.flush()


class PrintSink(Sink):
    """Prints each record on the TaskManager's standard output, as Flink's print sink does.

    The prefix is ``identifier:`` when an identifier is given and ``N> `` (the subtask index + 1) when the
    sink runs with more than one subtask.
    """

    def __init__(self, sink_identifier: str | None = None, stderr: bool = False) -> None:
        self.sink_identifier = sink_identifier
        self.stderr = stderr

    def create_writer(self, ctx: RuntimeContext) -> SinkWriter:
        prefix = self.sink_identifier or ""
        if ctx.get_number_of_parallel_subtasks() > 1:
            prefix = f"{prefix}:{ctx.get_index_of_this_subtask() + 1}> " if prefix else (
                f"{ctx.get_index_of_this_subtask() + 1}> "
            )
        elif prefix:
            prefix = f"{prefix}> "
        return _PrintWriter(prefix, self.stderr)


class _FileWriter(SinkWriter):
    def __init__(self, base: str, encoder: Encoder, subtask: int, run_id: str) -> None:
        os.makedirs(base, exist_ok=True)
        name = f"part-{run_id}-{subtask}-0"
        self._final = os.path.join(base, name)
        # hidden while in progress: readers of the directory see only finished part files
        self._tmp = os.path.join(base, f".{name}.inprogress")
        self._f = open(self._tmp, "wb")  # noqa: SIM115 - lives as long as the writer
        self._encode = encoder.encode

    def write_batch(self, values: list[Any]) -> None:
        enc = self._encode
        self._f.write(b"".join([enc(v) for v in values]))

    def finish(self) -> None:
        self._f.close()
        os.replace(self._tmp, self._final)

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()


class FileSink(Sink):
    """Row-format files: one part file per subtask under ``base_path``, visible when the input ends.

    Build with ``FileSink.for_row_format(path, Encoder.simple_string_encoder()).build()``.
    """

    def __init__(self, base_path: str, encoder: Encoder) -> None:
        self.base_path = base_path
        self.encoder = encoder
        self.run_id = uuid.uuid4().hex[:12]

    def create_writer(self, ctx: RuntimeContext) -> SinkWriter:
        return _FileWriter(self.base_path, self.encoder, ctx.get_index_of_this_subtask(), self.run_id)

    class RowFormatBuilder:
        def __init__(self, base_path: str, encoder: Encoder) -> None:
            self._base_path = base_path
            self._encoder = encoder

        def build(self) -> FileSink:
            return FileSink(self._base_path, self._encoder)

    @staticmethod
    def for_row_format(base_path: str, encoder: Encoder) -> FileSink.RowFormatBuilder:
        return FileSink.RowFormatBuilder(base_path, encoder)
