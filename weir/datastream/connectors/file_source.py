"""A bounded, replayable source of the text lines of files (``FileSource`` of PyFlink's ``file_system`` module).

``FileSource.for_record_stream_format(StreamFormat.text_line_format(), *paths).build()`` reads every line of the
given files and directories. Each file is one split; the splits are dealt out round robin over the subtasks in
their sorted order (subtask ``i`` reads files ``i``, ``i + p``, ...). A split's position is the byte offset of its
next line, so a checkpointed reader's splits (``snapshot_state``) can be continued by ``restore_reader`` on any
subtask, at any parallelism, without losing or repeating a line.
"""

from __future__ import annotations

import codecs
import errno
import os
from collections.abc import Iterable
from typing import IO, Any

from weir.datastream.connectors.source import Source, SourceReader

__all__ = ["FileDecodeError", "FileSource", "FileSourceBuilder", "FileSplit", "StreamFormat"]

#: A split of a ``FileSource``: (path of the file, byte offset of its next line to read). Picklable.
FileSplit = tuple[str, int]


class FileDecodeError(UnicodeDecodeError):
    """A line of a file could not be decoded with the format's charset.

    ``path`` is the file and ``file_offset`` the byte offset, in the file, of the first undecodable byte; the
    remaining attributes are those of the underlying ``UnicodeDecodeError`` (relative to the line's bytes).
    """

    def __init__(
        self,
        encoding: str,
        obj: bytes,
        start: int,
        end: int,
        reason: str,
        path: str,
        file_offset: int,
    ) -> None:
        super().__init__(encoding, obj, start, end, reason)
        self.path = path
        self.file_offset = file_offset

    def __str__(self) -> str:
        return (
            f"FileSource: cannot decode {self.path!r} as {self.encoding} at byte offset {self.file_offset}: "
            f"{super().__str__()}"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            type(self),
            (self.encoding, self.object, self.start, self.end, self.reason, self.path, self.file_offset),
        )


class StreamFormat:
    """How the bytes of a file become records. Only ``text_line_format`` exists."""

    def __init__(self, charset_name: str) -> None:
        try:
            info = codecs.lookup(charset_name)
        except LookupError as e:
            raise ValueError(f"StreamFormat: unknown charset {charset_name!r}") from e
        # Lines are split on the bytes b"\n" / b"\r\n", which needs an ASCII-compatible charset (not UTF-16/32).
        if "\r\n".encode(info.name) != b"\r\n" or "a".encode(info.name) != b"a":
            raise ValueError(
                f"StreamFormat: charset {charset_name!r} is not ASCII-compatible; text_line_format splits lines "
                "on the bytes b'\\n' and b'\\r\\n'"
            )
        self.charset_name = info.name

    @staticmethod
    def text_line_format(charset_name: str = "UTF-8") -> StreamFormat:
        """One record per line: the line decoded with ``charset_name``, without its "\\n" or "\\r\\n"."""
        return StreamFormat(charset_name)

    def __repr__(self) -> str:
        return f"StreamFormat.text_line_format(charset_name={self.charset_name!r})"


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def _files_under(directory: str) -> list[str]:
    """Every regular, non-hidden file under ``directory`` (recursively, skipping hidden directories), sorted."""
    found: list[str] = []
    for root, dirs, files in os.walk(directory, onerror=_raise):
        dirs[:] = [d for d in dirs if not _is_hidden(d)]
        for f in files:
            full = os.path.join(root, f)
            if not _is_hidden(f) and os.path.isfile(full):
                found.append(full)
    return sorted(found)


def _raise(e: OSError) -> None:
    raise e


def _discover(paths: Iterable[str]) -> list[str]:
    """The files of ``paths``, in the given order, each directory replaced by its sorted files."""
    out: list[str] = []
    for p in paths:
        if os.path.isdir(p):
            out.extend(_files_under(p))
        elif os.path.isfile(p):
            out.append(p)
        elif os.path.exists(p):
            raise ValueError(f"FileSource: {p!r} is neither a regular file nor a directory")
        else:
            raise FileNotFoundError(errno.ENOENT, "FileSource: no such file or directory", p)
    return out


READ_BYTES = 64 * 1024  # bytes of whole lines a reader takes from its file at a time


class _FileLineReader(SourceReader):
    """Reads its splits one after the other, line by line, tracking the byte offset of the next line."""

    def __init__(self, splits: Iterable[FileSplit], charset: str) -> None:
        self._splits: list[list[Any]] = [[str(path), int(offset)] for path, offset in splits]
        self._charset = charset
        self._file: IO[bytes] | None = None  # open file of self._splits[0], positioned after the pending lines
        self._pending: list[bytes] = []  # lines read from self._file, not yet handed out from _pending_at on
        self._pending_at = 0

    def _open_current(self) -> IO[bytes]:
        path, offset = self._splits[0]
        try:
            f = open(path, "rb")  # noqa: SIM115 - kept open across polls, closed in _finish_current/close
        except FileNotFoundError as e:
            raise FileNotFoundError(errno.ENOENT, "FileSource: file disappeared before it was read", path) from e
        try:
            size = os.fstat(f.fileno()).st_size
            if offset > size:
                raise ValueError(
                    f"FileSource: cannot continue {path!r} at byte offset {offset}: the file has only {size} "
                    "bytes (truncated since the checkpoint?)"
                )
            f.seek(offset)
        except BaseException:
            f.close()
            raise
        return f

    def _finish_current(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._pending = []
        self._splits.pop(0)

    def poll(self, max_records: int) -> list[Any] | None:
        batch: list[Any] = []
        while len(batch) < max_records and self._splits:
            if not self._pending:
                if self._file is None:
                    self._file = self._open_current()
                # whole lines, about READ_BYTES at a time: one call and one decode per chunk, not per line
                self._pending = self._file.readlines(READ_BYTES)
                self._pending_at = 0
                if not self._pending:
                    self._finish_current()
                    continue
            at = self._pending_at
            take = self._pending[at:at + max_records - len(batch)]
            chunk = b"".join(take)
            try:
                text = chunk.decode(self._charset)
            except UnicodeDecodeError:
                return self._poll_lines(batch, take)  # find the bad line, hand out the good ones before it
            lines = text.split("\n")
            if text.endswith("\n"):
                lines.pop()
                ended = len(lines)
            else:
                ended = len(lines) - 1  # the file's last line, without a line break: nothing to strip
            if "\r" in text:  # "\r\n" ends a line too
                lines = [ln[:-1] if i < ended and ln.endswith("\r") else ln for i, ln in enumerate(lines)]
            batch.extend(lines)
            self._splits[0][1] += len(chunk)
            self._pending_at = at + len(take)
            if self._pending_at >= len(self._pending):
                self._pending = []
        if not batch and not self._splits:
            return None
        return batch

    def _poll_lines(self, batch: list[Any], take: list[bytes]) -> list[Any]:
        """Line by line through ``take`` (which holds an undecodable line): the lines before it join ``batch``;
        at the bad line, ``batch`` is returned if it has lines, else the error is raised. The reader stays on the
        bad line, which is never skipped."""
        split = self._splits[0]
        for raw in take:
            line = raw[:-2] if raw.endswith(b"\r\n") else raw[:-1] if raw.endswith(b"\n") else raw
            try:
                text = line.decode(self._charset)
            except UnicodeDecodeError as e:
                if batch:
                    return batch
                raise FileDecodeError(
                    e.encoding, e.object, e.start, e.end, e.reason, split[0], split[1] + e.start
                ) from None
            split[1] += len(raw)
            self._pending_at += 1
            batch.append(text)
        return batch

    def snapshot_state(self) -> list[Any]:
        """Every unfinished split of this reader as (path, byte offset of its next line)."""
        return [(path, offset) for path, offset in self._splits]

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._pending = []


class FileSource(Source):
    """The lines of files, one split per file, dealt out round robin over the subtasks. Bounded.

    Build it with ``FileSource.for_record_stream_format(StreamFormat.text_line_format(), *paths).build()``.
    Directories are expanded (recursively, hidden files and directories skipped, sorted by path) when the
    first reader is created.
    """

    def __init__(self, stream_format: StreamFormat, paths: Iterable[str | os.PathLike[str]]) -> None:
        self._format = stream_format
        self._paths = [os.fspath(p) for p in paths]
        if not self._paths:
            raise ValueError("FileSource: at least one path is required")
        self._files: list[str] | None = None

    @staticmethod
    def for_record_stream_format(stream_format: StreamFormat, *paths: str | os.PathLike[str]) -> FileSourceBuilder:
        """A builder of a source reading ``paths`` (files or directories) with ``stream_format``."""
        return FileSourceBuilder(stream_format, paths)

    def files(self) -> list[str]:
        """The files read, in split order (discovered once, on first use)."""
        if self._files is None:
            self._files = _discover(self._paths)
        return list(self._files)

    def create_reader(self, subtask: int, parallelism: int) -> SourceReader:
        return _FileLineReader([(f, 0) for f in self.files()[subtask::parallelism]], self._format.charset_name)

    def restore_reader(self, subtask: int, parallelism: int, splits: list[Any]) -> SourceReader:
        return _FileLineReader([(path, offset) for path, offset in splits], self._format.charset_name)

    def name(self) -> str:
        return "FileSource"


class FileSourceBuilder:
    """Builds a ``FileSource`` (``FileSource.for_record_stream_format(...).build()``)."""

    def __init__(self, stream_format: StreamFormat, paths: Iterable[str | os.PathLike[str]]) -> None:
        self._format = stream_format
        self._paths = list(paths)

    def process_static_file_set(self) -> FileSourceBuilder:
        """Read the files present at start and end (the default, and the only mode)."""
        return self

    def monitor_continuously(self, discovery_interval: Any) -> FileSourceBuilder:
        """Not supported: this FileSource is bounded."""
        raise NotImplementedError("FileSource: continuous monitoring of new files is not supported (bounded only)")

    def build(self) -> FileSource:
        return FileSource(self._format, self._paths)
