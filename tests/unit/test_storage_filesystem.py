"""FileSystemCheckpointStorage: URIs, atomic writes (a reader never sees a partial file, a failed write leaves
none), recursive sorted listing, idempotent delete, clear errors for missing files, large file round trips."""

from __future__ import annotations

import errno
import hashlib
import os
import threading
from pathlib import Path

import pytest

from state.filesystem import TMP_PREFIX, FileSystemCheckpointStorage
from state.storage import CheckpointStorageError, checkpoint_storage_for


@pytest.fixture
def fs(tmp_path: Path) -> FileSystemCheckpointStorage:
    return FileSystemCheckpointStorage(f"file://{tmp_path}/chk")


def files_in(directory: Path) -> list[str]:
    """Every file under ``directory`` (temporary ones included), relative, sorted."""
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file())


# -- URIs and paths


def test_uri_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a = FileSystemCheckpointStorage(f"file://{tmp_path}/x/")
    assert a.root == f"{tmp_path}/x"
    assert a.base_uri == f"file://{tmp_path}/x"
    assert a.uri("chk-1/_metadata") == f"file://{tmp_path}/x/chk-1/_metadata"
    assert FileSystemCheckpointStorage(f"file://localhost{tmp_path}/x").root == f"{tmp_path}/x"
    assert FileSystemCheckpointStorage(f"{tmp_path}/x").base_uri == f"file://{tmp_path}/x"
    assert FileSystemCheckpointStorage(f"file://{tmp_path}/with%20space").root == f"{tmp_path}/with space"
    monkeypatch.chdir(tmp_path)
    assert FileSystemCheckpointStorage("rel/dir").root == f"{tmp_path}/rel/dir"
    for bad in ("file://otherhost/x", "file:relative", ""):
        with pytest.raises(ValueError):
            FileSystemCheckpointStorage(bad)


def test_checkpoint_storage_for_picks_the_filesystem(tmp_path: Path) -> None:
    assert isinstance(checkpoint_storage_for(f"file://{tmp_path}"), FileSystemCheckpointStorage)
    assert isinstance(checkpoint_storage_for(str(tmp_path)), FileSystemCheckpointStorage)
    with pytest.raises(ValueError, match="s3://"):
        checkpoint_storage_for("hdfs://namenode/chk")


@pytest.mark.parametrize("bad", ["", "/abs", "a//b", "a/", "../x", "a/../b", "./a", "a/./b", "x/.weir-tmp-1"])
def test_invalid_paths_are_refused(fs: FileSystemCheckpointStorage, bad: str) -> None:
    with pytest.raises(ValueError, match="invalid checkpoint storage path"):
        fs.write(bad, b"x")
    with pytest.raises(ValueError):
        fs.read(bad)
    assert not os.path.exists(fs.root)  # nothing was created anywhere


# -- writes


def test_write_read_overwrite_creates_directories(fs: FileSystemCheckpointStorage) -> None:
    fs.write("job/chk-1/op-0/state", b"one")
    assert fs.read("job/chk-1/op-0/state") == b"one"
    assert os.path.isfile(os.path.join(fs.root, "job", "chk-1", "op-0", "state"))
    fs.write("job/chk-1/op-0/state", b"two, longer")
    assert fs.read("job/chk-1/op-0/state") == b"two, longer"
    fs.write("empty", b"")
    assert fs.read("empty") == b"" and fs.exists("empty") and fs.size("empty") == 0
    assert fs.size("job/chk-1/op-0/state") == len(b"two, longer")
    assert files_in(Path(fs.root)) == ["empty", "job/chk-1/op-0/state"]  # no temporary file left


def test_written_files_get_the_usual_permissions(fs: FileSystemCheckpointStorage) -> None:
    old = os.umask(0o022)
    try:
        fs.write("a", b"x")
    finally:
        os.umask(old)
    assert os.stat(os.path.join(fs.root, "a")).st_mode & 0o777 == 0o644


def test_write_that_fails_before_commit_leaves_no_file(fs: FileSystemCheckpointStorage,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    fs.write("dir/old", b"old contents")

    def broken_fsync(fd: int) -> None:
        raise OSError(errno.EIO, "simulated fsync failure")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(CheckpointStorageError, match=r"dir/new.*simulated fsync failure"):
        fs.write("dir/new", b"new contents" * 1000)
    with pytest.raises(CheckpointStorageError):
        fs.write("dir/old", b"replacement")
    monkeypatch.undo()
    assert not fs.exists("dir/new")
    assert fs.read("dir/old") == b"old contents"  # untouched
    assert files_in(Path(fs.root)) == ["dir/old"]  # the temporary files were removed


def fail_copy_after(monkeypatch: pytest.MonkeyPatch, limit: int) -> None:
    """The kernel copy fails (EIO) once ``limit`` bytes went through: a disk failing mid-file."""
    real = os.sendfile
    copied = 0

    def sendfile(out_fd: int, in_fd: int, offset: int, count: int) -> int:
        nonlocal copied
        if copied >= limit:
            raise OSError(errno.EIO, "simulated I/O error")
        n = real(out_fd, in_fd, offset, min(count, limit - copied))
        copied += n
        return n

    monkeypatch.setattr(os, "sendfile", sendfile)


def test_upload_that_fails_midway_leaves_no_file(fs: FileSystemCheckpointStorage, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(1 << 20))
    fs.write("sst/000042.sst", b"previous version")
    fail_copy_after(monkeypatch, 256 << 10)
    with pytest.raises(CheckpointStorageError, match="simulated I/O error"):
        fs.upload_file(str(src), "sst/000042.sst")
    with pytest.raises(CheckpointStorageError, match="simulated I/O error"):
        fs.upload_file(str(src), "sst/000043.sst")
    assert fs.read("sst/000042.sst") == b"previous version"
    assert not fs.exists("sst/000043.sst")
    assert files_in(Path(fs.root)) == ["sst/000042.sst"]


def test_download_that_fails_midway_leaves_no_local_file(fs: FileSystemCheckpointStorage, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    fs.write("big", os.urandom(1 << 20))
    fail_copy_after(monkeypatch, 256 << 10)
    dest = tmp_path / "restore"
    with pytest.raises(CheckpointStorageError, match="simulated I/O error"):
        fs.download_file("big", str(dest / "big"))
    assert files_in(dest) == []


def test_readers_never_see_a_partial_file(fs: FileSystemCheckpointStorage) -> None:
    """Overwrite a 2 MB file over and over while other threads read and list it."""
    versions = [bytes([i]) * (2 << 20) for i in range(3)]
    fs.write("chk/_metadata", versions[0])
    stop = threading.Event()
    bad: list[str] = []
    reads = [0]

    def reader() -> None:
        while not stop.is_set():
            data = fs.read("chk/_metadata")
            reads[0] += 1
            if data not in versions:
                bad.append(f"read {len(data)} bytes that are no version")

    def lister() -> None:
        while not stop.is_set():
            names = fs.list("chk")
            if names != ["chk/_metadata"]:
                bad.append(f"list returned {names}")

    threads = [threading.Thread(target=reader) for _ in range(2)] + [threading.Thread(target=lister)]
    for t in threads:
        t.start()
    try:
        for i in range(40):
            fs.write("chk/_metadata", versions[i % 3])
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not bad, bad[:5]
    assert reads[0] > 0


def test_concurrent_writers_into_new_directories(fs: FileSystemCheckpointStorage) -> None:
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(20):
                fs.write(f"chk-7/op-{i % 3}/sub-{n}/part-{i}", f"{n}:{i}".encode())
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    names = fs.list("chk-7")
    assert len(names) == 8 * 20
    assert fs.read("chk-7/op-1/sub-5/part-4") == b"5:4"


# -- listing and deleting


def test_list_is_recursive_sorted_and_relative_to_the_base(fs: FileSystemCheckpointStorage) -> None:
    for p in ["b/2", "a/b/c/d", "a/bc", "a/b/x", "a/a", "top", "ax"]:
        fs.write(p, p.encode())
    assert fs.list("") == ["a/a", "a/b/c/d", "a/b/x", "a/bc", "ax", "b/2", "top"]
    assert fs.list("/") == fs.list("")
    assert fs.list("a/b") == ["a/b/c/d", "a/b/x"]  # a directory: not a/bc
    assert fs.list("a/b/") == ["a/b/c/d", "a/b/x"]
    assert fs.list("a") == ["a/a", "a/b/c/d", "a/b/x", "a/bc"]
    assert fs.list("nothing/here") == []
    assert fs.list("top") == []  # a file is not a directory
    assert all(fs.read(p) == p.encode() for p in fs.list(""))


def test_list_of_a_storage_that_does_not_exist_yet(tmp_path: Path) -> None:
    assert FileSystemCheckpointStorage(str(tmp_path / "never")).list("") == []


def test_list_skips_stray_temporary_files_and_empty_directories(fs: FileSystemCheckpointStorage) -> None:
    fs.write("chk-1/a", b"a")
    Path(fs.root, "chk-1", TMP_PREFIX + "deadbeef").write_bytes(b"left by a crash")
    os.makedirs(os.path.join(fs.root, "chk-2", "empty"))
    assert fs.list("") == ["chk-1/a"]


def test_delete_is_idempotent(fs: FileSystemCheckpointStorage) -> None:
    fs.write("chk-1/a", b"a")
    fs.write("chk-1/b", b"b")
    fs.delete("chk-1/a")
    assert not fs.exists("chk-1/a")
    assert fs.list("") == ["chk-1/b"]
    fs.delete("chk-1/a")  # again
    fs.delete("never/existed/at/all")
    fs.delete("chk-1/b/below-a-file")
    fs.delete("chk-1")  # a directory is not an object: nothing happens to what is in it
    assert fs.read("chk-1/b") == b"b"


def test_delete_failure_is_wrapped(fs: FileSystemCheckpointStorage, monkeypatch: pytest.MonkeyPatch) -> None:
    fs.write("a", b"a")

    def unlink(path: str) -> None:
        raise PermissionError(errno.EACCES, "simulated", path)

    monkeypatch.setattr(os, "unlink", unlink)
    with pytest.raises(CheckpointStorageError, match=f"file://{fs.root}/a"):
        fs.delete("a")


# -- missing files


def test_missing_files_raise_file_not_found_naming_the_full_path(fs: FileSystemCheckpointStorage,
                                                                 tmp_path: Path) -> None:
    fs.write("chk-1/present", b"x")
    full = os.path.join(fs.root, "chk-1", "missing")
    for call in (lambda: fs.read("chk-1/missing"), lambda: fs.size("chk-1/missing"),
                 lambda: fs.download_file("chk-1/missing", str(tmp_path / "out"))):
        with pytest.raises(FileNotFoundError) as info:
            call()
        assert info.value.errno == errno.ENOENT
        assert info.value.filename == full
        assert full in str(info.value)
    assert not fs.exists("chk-1/missing")
    assert not (tmp_path / "out").exists()
    # below a file, and a directory, are missing objects too
    with pytest.raises(FileNotFoundError, match="chk-1/present/x"):
        fs.read("chk-1/present/x")
    with pytest.raises(FileNotFoundError, match="chk-1"):
        fs.read("chk-1")
    with pytest.raises(FileNotFoundError):
        fs.size("chk-1")
    assert not fs.exists("chk-1")


def test_upload_of_a_missing_local_file(fs: FileSystemCheckpointStorage, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no-such-file"):
        fs.upload_file(str(tmp_path / "no-such-file"), "x")
    assert fs.list("") == []


# -- large files


def test_large_file_upload_download_round_trip(fs: FileSystemCheckpointStorage, tmp_path: Path) -> None:
    data = os.urandom(20 << 20) + b"tail"
    src = tmp_path / "000123.sst"
    src.write_bytes(data)
    assert fs.upload_file(str(src), "shared/000123.sst") == len(data)
    assert fs.size("shared/000123.sst") == len(data)
    assert fs.list("shared") == ["shared/000123.sst"]
    dest = tmp_path / "restore" / "db" / "000123.sst"  # directories created as needed
    assert fs.download_file("shared/000123.sst", str(dest)) == len(data)
    assert hashlib.sha256(dest.read_bytes()).digest() == hashlib.sha256(data).digest()
    assert files_in(dest.parent) == ["000123.sst"]
    # downloading over an existing local file replaces it
    dest.write_bytes(b"stale")
    fs.download_file("shared/000123.sst", str(dest))
    assert dest.stat().st_size == len(data)
