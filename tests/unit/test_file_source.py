"""weir.datastream.connectors.file_source: FileSource with StreamFormat.text_line_format (bounded, replayable)."""

from __future__ import annotations

import os
import pickle
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from weir.datastream.connectors.file_system import FileSource, StreamFormat
from weir.datastream.connectors.source import Source, SourceReader


def text_source(*paths: Any, charset: str = "UTF-8") -> FileSource:
    return FileSource.for_record_stream_format(StreamFormat.text_line_format(charset_name=charset), *paths).build()


def drain(reader: SourceReader, max_records: int = 3) -> list[Any]:
    """Every remaining record of ``reader``; checks batch sizes and that it ends (bounded source)."""
    out: list[Any] = []
    for _ in range(100_000):
        batch = reader.poll(max_records)
        if batch is None:
            assert reader.poll(max_records) is None, "poll after the end must stay None"
            return out
        assert isinstance(batch, list)
        assert len(batch) <= max_records
        out.extend(batch)
    raise AssertionError("reader did not end")


def take(reader: SourceReader, n: int, max_records: int) -> list[Any]:
    """About ``n`` records (polls of ``max_records`` until at least ``n`` or the end)."""
    out: list[Any] = []
    while len(out) < n:
        batch = reader.poll(max_records)
        if batch is None:
            break
        out.extend(batch)
    return out


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def make_files(tmp_path: Path, sizes: list[int]) -> tuple[list[Path], list[str]]:
    """Files f00, f01, ... with unique lines ("é" makes byte and character offsets differ)."""
    paths, lines = [], []
    for i, n in enumerate(sizes):
        file_lines = [f"f{i}-é-{j}" for j in range(n)]
        paths.append(write(tmp_path / f"f{i:02d}.txt", "".join(line + "\n" for line in file_lines)))
        lines.extend(file_lines)
    return paths, lines


# ---- reading -------------------------------------------------------------------------------------------------


def test_builds_a_named_source() -> None:
    src = text_source("/nonexistent-is-fine-until-read")
    assert isinstance(src, Source)
    assert src.name() == "FileSource"


def test_several_files_read_in_order_across_file_boundaries(tmp_path: Path) -> None:
    a = write(tmp_path / "a.txt", "a1\na2\n")
    b = write(tmp_path / "b.txt", "b1\nb2\nb3\n")
    c = write(tmp_path / "c.txt", "c1\n")
    reader = text_source(str(c), a, str(b)).create_reader(0, 1)
    assert reader.poll(4) == ["c1", "a1", "a2", "b1"]  # one poll spans three files
    assert reader.poll(4) == ["b2", "b3"]
    assert reader.poll(4) is None


def test_directory_tree_is_read_recursively_sorted_skipping_hidden(tmp_path: Path) -> None:
    root = tmp_path / "in"
    write(root / "b.txt", "b\n")
    write(root / "a" / "z.txt", "a/z\n")
    write(root / "a" / "deep" / "x.txt", "a/deep/x\n")
    write(root / "c" / "1.txt", "c/1\n")
    write(root / ".hidden.txt", "HIDDEN FILE\n")
    write(root / ".git" / "config", "HIDDEN DIR\n")
    single = write(tmp_path / "single.txt", "single\n")
    src = text_source(single, root)
    expected = ["single", "a/deep/x", "a/z", "b", "c/1"]
    assert drain(src.create_reader(0, 1), 2) == expected
    assert src.files() == [str(single)] + [str(root / p) for p in ["a/deep/x.txt", "a/z.txt", "b.txt", "c/1.txt"]]


def test_crlf_and_missing_final_newline(tmp_path: Path) -> None:
    crlf = write(tmp_path / "crlf.txt", b"a\r\nb\r\n\r\nc")
    lf = write(tmp_path / "lf.txt", b"x\n\ny")
    one = write(tmp_path / "one.txt", b"only\n")
    lone_cr = write(tmp_path / "cr.txt", b"p\rq\n")  # only "\n" and "\r\n" end lines
    assert drain(text_source(crlf, lf, one, lone_cr).create_reader(0, 1)) == [
        "a", "b", "", "c", "x", "", "y", "only", "p\rq",
    ]  # fmt: skip


def test_empty_files(tmp_path: Path) -> None:
    e1 = write(tmp_path / "e1.txt", b"")
    e2 = write(tmp_path / "e2.txt", b"")
    nl = write(tmp_path / "nl.txt", b"\n")
    full = write(tmp_path / "full.txt", b"l1\nl2\n")
    assert text_source(e1, e2).create_reader(0, 1).poll(10) is None
    assert drain(text_source(e1, full, e2, nl).create_reader(0, 1), 10) == ["l1", "l2", ""]
    empty_dir = tmp_path / "empty_dir"
    empty_dir.mkdir()
    assert text_source(empty_dir).create_reader(0, 1).poll(10) is None
    # a subtask with no split ends at once
    assert text_source(full).create_reader(1, 2).poll(10) is None


def test_other_charset_and_unsupported_charsets(tmp_path: Path) -> None:
    f = write(tmp_path / "latin.txt", "café\nnaïve\n".encode("latin-1"))
    assert drain(text_source(f, charset="ISO-8859-1").create_reader(0, 1)) == ["café", "naïve"]
    with pytest.raises(ValueError, match="ASCII-compatible"):
        StreamFormat.text_line_format("UTF-16")
    with pytest.raises(ValueError, match="unknown charset"):
        StreamFormat.text_line_format("no-such-charset")


# ---- splits and parallelism ----------------------------------------------------------------------------------


@pytest.mark.parametrize("parallelism", [1, 2, 3])
def test_round_robin_assignment_reads_every_line_once(tmp_path: Path, parallelism: int) -> None:
    sizes = [3, 0, 5, 1, 4, 2, 7]
    paths, lines = make_files(tmp_path, sizes)
    src = text_source(tmp_path)
    got: list[str] = []
    for subtask in range(parallelism):
        part = drain(src.create_reader(subtask, parallelism), 2)
        # subtask i reads files i, i + p, ... in that order
        assert part == [line for i in range(subtask, len(sizes), parallelism) for line in lines if
                        line.startswith(f"f{i}-")]  # fmt: skip
        got.extend(part)
    assert Counter(got) == Counter(lines)
    assert len(got) == len(lines)


def test_snapshot_offsets_are_byte_offsets_of_the_next_line(tmp_path: Path) -> None:
    f = write(tmp_path / "f.txt", "é1\r\nab\nc")
    g = write(tmp_path / "g.txt", "g\n")
    reader = text_source(f, g).create_reader(0, 1)
    assert reader.snapshot_state() == [(str(f), 0), (str(g), 0)]
    assert reader.poll(1) == ["é1"]
    assert reader.snapshot_state() == [(str(f), 5), (str(g), 0)]  # "é" is two bytes, plus "1\r\n"
    assert reader.poll(2) == ["ab", "c"]
    assert reader.snapshot_state() == [(str(f), 9), (str(g), 0)]  # at the end of f; nothing left there
    assert reader.poll(5) == ["g"]
    assert reader.snapshot_state() == []
    state = reader.snapshot_state()
    assert pickle.loads(pickle.dumps(state)) == state


def redistribute(snapshots: list[list[Any]], parallelism: int) -> list[list[Any]]:
    splits = [s for snap in snapshots for s in snap]
    return [splits[i::parallelism] for i in range(parallelism)]


@pytest.mark.parametrize("old_p", [1, 2, 3])
@pytest.mark.parametrize("new_p", [1, 2, 4])
def test_snapshot_and_restore_continue_without_loss_or_duplicates(tmp_path: Path, old_p: int, new_p: int) -> None:
    sizes = [6, 0, 3, 9, 1, 5, 4]
    _, lines = make_files(tmp_path, sizes)
    src = text_source(tmp_path)
    readers = [src.create_reader(i, old_p) for i in range(old_p)]
    before: list[str] = []
    for i, r in enumerate(readers):
        before.extend(take(r, [4, 0, 7][i], [3, 1, 2][i]))  # mid-file, nothing, across files
    assert before, "the test must read something before the checkpoint"
    snapshots = [pickle.loads(pickle.dumps(r.snapshot_state())) for r in readers]
    for r in readers:
        r.close()

    # restore at new_p, read some more, checkpoint again, and restore at old_p
    src2 = text_source(tmp_path)
    restored = [src2.restore_reader(i, new_p, splits) for i, splits in enumerate(redistribute(snapshots, new_p))]
    middle: list[str] = []
    for r in restored:
        middle.extend(take(r, 2, 1))
    snapshots2 = [r.snapshot_state() for r in restored]
    final = [src2.restore_reader(i, old_p, s) for i, s in enumerate(redistribute(snapshots2, old_p))]
    after: list[str] = []
    for r in final:
        after.extend(drain(r, 4))

    got = before + middle + after
    assert len(got) == len(lines)
    assert Counter(got) == Counter(lines)
    # and each file's lines still come out in file order
    for i in range(len(sizes)):
        assert [x for x in got if x.startswith(f"f{i}-")] == [x for x in lines if x.startswith(f"f{i}-")]


def test_restore_with_no_splits_ends_at_once(tmp_path: Path) -> None:
    make_files(tmp_path, [2])
    assert text_source(tmp_path).restore_reader(0, 1, []).poll(5) is None


# ---- errors --------------------------------------------------------------------------------------------------


def test_missing_path_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "missing.txt"
    with pytest.raises(FileNotFoundError, match="missing.txt") as ei:
        text_source(missing).create_reader(0, 1)
    assert ei.value.filename == str(missing)


def test_file_disappearing_before_it_is_read_is_named(tmp_path: Path) -> None:
    a = write(tmp_path / "a.txt", "a1\na2\n")
    b = write(tmp_path / "b.txt", "b1\n")
    reader = text_source(tmp_path).create_reader(0, 1)
    assert reader.poll(1) == ["a1"]
    os.remove(b)
    assert reader.poll(1) == ["a2"]
    with pytest.raises(FileNotFoundError, match="b.txt") as ei:
        reader.poll(5)
    assert ei.value.filename == str(b)
    # also when restoring a checkpointed split of a removed file
    with pytest.raises(FileNotFoundError, match="b.txt"):
        text_source(tmp_path).restore_reader(0, 1, [(str(b), 0)]).poll(5)
    assert a.exists()


def test_restore_offset_past_end_of_truncated_file(tmp_path: Path) -> None:
    f = write(tmp_path / "f.txt", "abc\n")
    with pytest.raises(ValueError, match="truncated"):
        text_source(f).restore_reader(0, 1, [(str(f), 100)]).poll(5)


def test_invalid_utf8_names_file_and_byte_offset(tmp_path: Path) -> None:
    f = write(tmp_path / "bad.txt", b"ok\nab\xffcd\nafter\n")
    reader = text_source(f).create_reader(0, 1)
    assert reader.poll(10) == ["ok"]  # the good lines come first
    assert reader.snapshot_state() == [(str(f), 3)]
    with pytest.raises(ValueError, match=r"bad\.txt.*byte offset 5") as ei:
        reader.poll(10)
    err = ei.value
    assert isinstance(err, UnicodeDecodeError)
    assert err.path == str(f) and err.file_offset == 5  # type: ignore[attr-defined]
    # nothing skipped: the reader stays on the bad line
    with pytest.raises(UnicodeDecodeError):
        reader.poll(10)
    assert reader.snapshot_state() == [(str(f), 3)]
    copy = pickle.loads(pickle.dumps(err))
    assert str(copy) == str(err)


@pytest.mark.parametrize("max_records", [1, 7, 1024, 5000])
def test_large_files_read_in_chunks_keep_exact_offsets(tmp_path: Path, max_records: int) -> None:
    """Files of several read chunks: every line once, in order, and a snapshot after any poll resumes exactly
    after the lines handed out (lines read ahead but not handed out are not lost)."""
    lines = [f"line-é-{i}-" + "x" * (i % 50) for i in range(20_000)]
    f = write(tmp_path / "big.txt", "".join(ln + ("\r\n" if i % 3 == 0 else "\n") for i, ln in enumerate(lines)))
    write(tmp_path / "tail.txt", "no newline at the end\r")
    reader = text_source(f, tmp_path / "tail.txt").create_reader(0, 1)
    first = take(reader, 3333, max_records)
    assert first == lines[:len(first)]
    resumed = text_source(f, tmp_path / "tail.txt").restore_reader(0, 1, reader.snapshot_state())
    rest = drain(resumed, max_records)
    assert first + rest == [*lines, "no newline at the end\r"]  # only "\r\n" ends a line
    assert drain(reader, max_records) == rest


def test_a_bad_line_after_good_ones_in_one_chunk(tmp_path: Path) -> None:
    f = write(tmp_path / "f.txt", b"a\nb\n\xff\xfe bad\nc\n")
    reader = text_source(f).create_reader(0, 1)
    assert reader.poll(10) == ["a", "b"]
    with pytest.raises(UnicodeDecodeError, match="f.txt"):
        reader.poll(10)
    assert reader.snapshot_state() == [(str(f), 4)]  # still on the bad line
