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


class TwoPhaseCommittingSinkWriter(SinkWriter):
    """A sink writer with transactions: exactly-once output when checkpointing is on.

    On a checkpoint barrier ``pre_commit`` closes the open transaction and returns its committables (picklable
    descriptions, kept in the checkpoint); when the checkpoint completes ``commit`` makes them visible. After a
    restore the committables of the restored checkpoint are committed again -- ``commit`` must be idempotent -- and
    ``abort_others`` discards what earlier attempts left behind. Data is never visible before its checkpoint
    completes, and never twice.
    """

    @abstractmethod
    def pre_commit(self) -> list[Any]: ...

    @abstractmethod
    def commit(self, committables: list[Any]) -> None: ...

    def abort_others(self, known: list[Any], subtask: int | None = None,  # noqa: B027
                     parallelism: int | None = None) -> None:
        """Discard leftovers of earlier attempts that are not among ``known`` committables: those of the old
        subtasks this one took over (old index S with ``S % parallelism == subtask``; by default its own)."""

    def finish(self) -> None:
        """Without checkpointing: commit everything at the end of input."""
        self.commit(self.pre_commit())


class _FileWriter(TwoPhaseCommittingSinkWriter):
    """Part files of one subtask: ``.part-R-S-N.inprogress`` while written, ``.part-R-S-N.pending`` once
    pre-committed, ``part-R-S-N`` when committed (R: this writer's run id, S: subtask, N: counter)."""

    def __init__(self, base: str, encoder: Encoder, subtask: int) -> None:
        os.makedirs(base, exist_ok=True)
        self._base = base
        self._subtask = subtask
        self._run = uuid.uuid4().hex[:12]
        self._counter = 0
        self._f: Any = None
        self._encode = encoder.encode

    def _name(self) -> str:
        return f"part-{self._run}-{self._subtask}-{self._counter}"

    def write_batch(self, values: list[Any]) -> None:
        if self._f is None:
            self._f = open(os.path.join(self._base, f".{self._name()}.inprogress"), "wb")  # noqa: SIM115
        enc = self._encode
        self._f.write(b"".join([enc(v) for v in values]))

    def pre_commit(self) -> list[Any]:
        if self._f is None:
            return []
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()
        self._f = None
        name = self._name()
        self._counter += 1
        pending = os.path.join(self._base, f".{name}.pending")
        os.replace(os.path.join(self._base, f".{name}.inprogress"), pending)
        return [(f".{name}.pending", name)]

    def commit(self, committables: list[Any]) -> None:
        for pending, final in committables:
            p, f = os.path.join(self._base, pending), os.path.join(self._base, final)
            if os.path.exists(p):
                os.replace(p, f)
            elif not os.path.exists(f):
                raise FileNotFoundError(
                    f"cannot commit {f}: neither it nor its pending file {p} exists (were files removed by hand?)"
                )

    def abort_others(self, known: list[Any], subtask: int | None = None, parallelism: int | None = None) -> None:
        keep = {pending for pending, _ in known}
        mine = self._subtask if subtask is None else subtask
        for name in os.listdir(self._base):
            if not (name.startswith(".part-") and (name.endswith(".inprogress") or name.endswith(".pending"))):
                continue
            if name in keep:
                continue
            parts = name.split(".")[1].split("-")  # part, run, subtask, counter
            if not (len(parts) == 4 and parts[2].isdigit()):
                continue
            old = int(parts[2])
            if (old == mine) if parallelism is None else (old % parallelism == mine):
                os.remove(os.path.join(self._base, name))

    def close(self) -> None:
        if self._f is not None and not self._f.closed:
            self._f.close()


class FileSink(Sink):
    """Row-format part files under ``base_path``, exactly once: hidden (names starting with '.') until the
    checkpoint that covers them completes -- or, without checkpointing, until the input ends.

    Build with ``FileSink.for_row_format(path, Encoder.simple_string_encoder()).build()``.
    """

    def __init__(self, base_path: str, encoder: Encoder) -> None:
        self.base_path = base_path
        self.encoder = encoder

    def create_writer(self, ctx: RuntimeContext) -> SinkWriter:
        return _FileWriter(self.base_path, self.encoder, ctx.get_index_of_this_subtask())

    class RowFormatBuilder:
        def __init__(self, base_path: str, encoder: Encoder) -> None:
            self._base_path = base_path
            self._encoder = encoder

        def build(self) -> FileSink:
            return FileSink(self._base_path, self._encoder)

    @staticmethod
    def for_row_format(base_path: str, encoder: Encoder) -> FileSink.RowFormatBuilder:
        return FileSink.RowFormatBuilder(base_path, encoder)
