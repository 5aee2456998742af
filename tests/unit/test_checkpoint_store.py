"""Completed checkpoints in storage (metadata, validation, discard) and the HA store, on file:// storage in tmp_path."""

from __future__ import annotations

import pickle

import pytest

from jobmanager.checkpoint.store import (
    CheckpointMetadata,
    CheckpointValidationError,
    build_metadata,
    discard,
    metadata_path,
    read_metadata,
    validate,
    write_metadata,
)
from jobmanager.ha import HAStore
from state.filesystem import FileSystemCheckpointStorage
from state.snapshot import KeyedStateHandle, StateFile
from weir.graph.deployment import OperatorSubtaskState, TaskStateSnapshot

JOB = "job1"


@pytest.fixture
def storage(tmp_path):
    return FileSystemCheckpointStorage("file://" + str(tmp_path / "chk"))


def put(storage, path: str, data: bytes, shared: bool = False) -> StateFile:
    storage.write(path, data)
    return StateFile(path, len(data), shared)


def handle(files: list[StateFile], kgs=(0, 128)) -> KeyedStateHandle:
    return KeyedStateHandle("hashmap", kgs, 128, files)


def ack(ops: dict[str, OperatorSubtaskState]) -> bytes:
    return pickle.dumps(TaskStateSnapshot(ops))


# ---- build_metadata ----


def test_build_metadata_regroups_by_uid_and_subtask():
    h0, h1 = handle([StateFile("a", 1, False)], (0, 64)), handle([StateFile("b", 2, False)], (64, 128))
    states = {
        ("v1", 1): ack({"src": OperatorSubtaskState(operator=b"split-1"), "map": OperatorSubtaskState()}),
        ("v1", 0): ack({"src": OperatorSubtaskState(operator=b"split-0"), "map": OperatorSubtaskState()}),
        ("v2", 1): ack({"reduce": OperatorSubtaskState([h1])}),
        ("v2", 0): ack({"reduce": OperatorSubtaskState([h0])}),
    }
    md = build_metadata(7, JOB, 123.0, "file:///x", states, savepoint=False)
    assert (md.checkpoint_id, md.job_id, md.timestamp, md.storage_uri, md.savepoint) == (7, JOB, 123.0,
                                                                                          "file:///x", False)
    assert set(md.operators) == {"src", "map", "reduce"}
    assert [s.operator for s in md.operators["src"]] == [b"split-0", b"split-1"]
    assert [s.keyed for s in md.operators["reduce"]] == [[h0], [h1]]
    assert len(md.operators["map"]) == 2
    assert [f.path for f in md.state_files()] == ["a", "b"]


def test_build_metadata_fills_subtasks_that_did_not_report_a_uid():
    states = {("v", 2): ack({"op": OperatorSubtaskState(operator=b"two")}), ("v", 0): ack({})}
    md = build_metadata(1, JOB, 0.0, "u", states, savepoint=True)
    assert md.savepoint is True
    assert [s.operator for s in md.operators["op"]] == [None, None, b"two"]


def test_metadata_round_trip_and_errors(storage):
    md = build_metadata(3, JOB, 1.0, storage.base_uri, {("v", 0): ack({"op": OperatorSubtaskState()})}, False)
    path = metadata_path(JOB, 3)
    assert path == f"{JOB}/chk-3/_metadata"
    write_metadata(storage, path, md)
    assert read_metadata(storage, path) == md
    with pytest.raises(CheckpointValidationError, match=r"chk-4/_metadata is missing"):
        read_metadata(storage, metadata_path(JOB, 4))
    storage.write("junk/_metadata", b"not a pickle")
    with pytest.raises(CheckpointValidationError, match=r"junk/_metadata is corrupt"):
        read_metadata(storage, "junk/_metadata")
    storage.write("other/_metadata", pickle.dumps({"a": 1}))
    with pytest.raises(CheckpointValidationError, match="is not weir checkpoint metadata"):
        read_metadata(storage, "other/_metadata")


# ---- validate ----


def checkpoint(storage, cid: int, shared: list[StateFile] = ()) -> CheckpointMetadata:
    private = put(storage, f"{JOB}/chk-{cid}/v-0/op/state", b"x" * (10 + cid))
    states = {("v", 0): ack({"op": OperatorSubtaskState([handle([private, *shared])])})}
    md = build_metadata(cid, JOB, float(cid), storage.base_uri, states, False)
    write_metadata(storage, metadata_path(JOB, cid), md)
    return md


def test_validate_accepts_a_whole_checkpoint(storage):
    sst = put(storage, f"{JOB}/shared/op/1.sst", b"s" * 100, shared=True)
    validate(storage, checkpoint(storage, 1, [sst]))


def test_validate_detects_a_missing_file_naming_it(storage):
    sst = put(storage, f"{JOB}/shared/op/1.sst", b"s" * 100, shared=True)
    md = checkpoint(storage, 1, [sst])
    storage.delete(sst.path)
    with pytest.raises(CheckpointValidationError) as e:
        validate(storage, md)
    assert storage.uri(sst.path) in str(e.value)
    assert "checkpoint 1 is missing" in str(e.value)


def test_validate_detects_a_truncated_file_naming_it(storage):
    md = checkpoint(storage, 2)
    (f,) = md.state_files()
    storage.write(f.path, b"x" * (f.size - 1))
    with pytest.raises(CheckpointValidationError) as e:
        validate(storage, md)
    msg = str(e.value)
    assert storage.uri(f.path) in msg
    assert "truncated" in msg and f"{f.size - 1} bytes, expected {f.size}" in msg


# ---- discard ----


def test_discard_deletes_the_subsumed_directory_and_only_unreferenced_shared_files(storage):
    old_only = put(storage, f"{JOB}/shared/op/old.sst", b"o" * 5, shared=True)
    common = put(storage, f"{JOB}/shared/op/common.sst", b"c" * 7, shared=True)
    c1 = checkpoint(storage, 1, [old_only, common])
    c2 = checkpoint(storage, 2, [common])
    storage.write(f"{JOB}/chk-1/v-1/op/extra", b"an unreferenced private file")
    assert storage.list(f"{JOB}/chk-1") != []

    discard(storage, c1, [c2])

    assert storage.list(f"{JOB}/chk-1") == []
    assert not storage.exists(old_only.path)
    assert storage.exists(common.path), "a shared file a retained checkpoint references stays"
    assert storage.exists(metadata_path(JOB, 2))
    validate(storage, c2)


def test_discard_keeps_shared_files_referenced_by_any_retained_checkpoint(storage):
    a = put(storage, f"{JOB}/shared/op/a.sst", b"a", shared=True)
    b = put(storage, f"{JOB}/shared/op/b.sst", b"b", shared=True)
    c1 = checkpoint(storage, 1, [a, b])
    c2 = checkpoint(storage, 2, [a])
    c3 = checkpoint(storage, 3, [b])
    discard(storage, c1, [c2, c3])
    assert storage.exists(a.path) and storage.exists(b.path)
    assert storage.list(f"{JOB}/chk-1") == []
    validate(storage, c2)
    validate(storage, c3)


# ---- HA store ----


def test_ha_store_round_trip_and_terminal_jobs_not_recovered(storage):
    ha = HAStore(storage)
    assert ha.recover() == []
    md1 = checkpoint(storage, 1)
    md2 = checkpoint(storage, 2)
    ha.save_submission("jobA", "A", b"graphA", b"topoA", None, False)
    ha.save_submission("jobB", "B", b"graphB", b"topoB", md1, True)
    ha.save_submission("jobC", "C", b"graphC", b"topoC", None, False)
    ha.save_checkpoints("jobA", [md1, md2], restarts=3)
    ha.mark_terminal("jobC", "FINISHED")

    got = {r.job_id: r for r in HAStore(FileSystemCheckpointStorage(storage.base_uri)).recover()}
    assert set(got) == {"jobA", "jobB"}
    a, b = got["jobA"], got["jobB"]
    assert (a.name, a.graph_bytes, a.topology_bytes, a.savepoint, a.allow_non_restored) == (
        "A", b"graphA", b"topoA", None, False)
    assert [m.checkpoint_id for m in a.checkpoints] == [1, 2]
    assert a.checkpoints == [md1, md2]
    assert a.restarts == 3
    assert (b.savepoint, b.allow_non_restored, b.checkpoints, b.restarts) == (md1, True, [], 0)

    # rewritten after the next completion: newest retained only
    ha.save_checkpoints("jobA", [md2], restarts=4)
    ha.mark_terminal("jobB", "CANCELED")
    (a,) = ha.recover()
    assert (a.job_id, [m.checkpoint_id for m in a.checkpoints], a.restarts) == ("jobA", [2], 4)


def test_discard_of_chk_1_leaves_chk_10_alone(storage):
    c1 = checkpoint(storage, 1)
    c10 = checkpoint(storage, 10)
    discard(storage, c1, [c10])
    assert storage.list(f"{JOB}/chk-1") == []
    assert storage.list(f"{JOB}/chk-10") == sorted([metadata_path(JOB, 10), c10.state_files()[0].path])
    validate(storage, c10)
