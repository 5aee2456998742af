"""Exactly-once sinks: FileSink's two-phase-commit writer and SinkOperator's checkpoint hooks."""

from __future__ import annotations

import os
import pickle

import pytest

from taskmanager.operators.sink import SinkOperator
from weir.common.serialization import Encoder
from weir.datastream.connectors.sink import FileSink, Sink, SinkWriter
from weir.datastream.functions import RuntimeContext
from weir.graph.deployment import OperatorSubtaskState


def ctx(index: int = 0, parallelism: int = 1) -> RuntimeContext:
    return RuntimeContext("sink", index, parallelism, 128)


def file_sink(path) -> FileSink:
    return FileSink.for_row_format(str(path), Encoder.simple_string_encoder()).build()


def listing(path) -> tuple[list[str], list[str]]:
    """(visible files, hidden files) in ``path``."""
    names = sorted(os.listdir(path))
    return [n for n in names if not n.startswith(".")], [n for n in names if n.startswith(".")]


def visible_lines(path) -> list[str]:
    out: list[str] = []
    for n in listing(path)[0]:
        with open(os.path.join(path, n)) as f:
            out.extend(f.read().splitlines())
    return sorted(out)


def with_runtime(op, checkpointing: bool):
    """Give an operator what its task would (as tests/unit/test_operators.py does), with or without
    checkpointing in the job configuration."""
    from state.memory import HashMapKeyedStateBackend
    from taskmanager.operators.base import OperatorRuntime
    from taskmanager.timers import ProcessingTimeService

    op.runtime = OperatorRuntime(ProcessingTimeService(), lambda name: HashMapKeyedStateBackend(), lambda idle: None)
    if checkpointing:
        op.runtime.config["execution.checkpointing.interval"] = "100"
    op.uid = "sink"
    return op


# ---- FileSink writer ----


def test_file_writer_hidden_in_progress_then_pending_then_committed(tmp_path):
    w = file_sink(tmp_path).create_writer(ctx(index=3, parallelism=4))
    assert w.pre_commit() == [], "nothing written: no transaction"
    w.write_batch(["a", "b"])
    w.write_batch(["c"])
    visible, hidden = listing(tmp_path)
    assert visible == []
    (inprogress,) = hidden
    assert inprogress.startswith(".part-") and inprogress.endswith("-3-0.inprogress")

    (committable,) = w.pre_commit()
    pending, final = committable
    assert pending == inprogress.replace(".inprogress", ".pending")
    assert final == inprogress[1:-len(".inprogress")]
    assert listing(tmp_path) == ([], [pending])

    w.write_batch(["d"])  # the next transaction: a new part file
    (second,) = [n for n in listing(tmp_path)[1] if n.endswith(".inprogress")]
    assert second.endswith("-3-1.inprogress")

    w.commit([committable])
    assert listing(tmp_path)[0] == [final]
    assert visible_lines(tmp_path) == ["a", "b", "c"]
    w.commit([committable])  # idempotent: committing again after a restore is fine
    assert visible_lines(tmp_path) == ["a", "b", "c"]
    w.close()


def test_file_writer_commit_of_a_missing_file_raises_naming_it(tmp_path):
    w = file_sink(tmp_path).create_writer(ctx())
    w.write_batch([1])
    ((pending, final),) = w.pre_commit()
    os.remove(tmp_path / pending)
    with pytest.raises(FileNotFoundError) as e:
        w.commit([(pending, final)])
    assert str(tmp_path / final) in str(e.value)
    assert str(tmp_path / pending) in str(e.value)


def test_file_writer_abort_others_discards_leftovers_of_this_subtask_only(tmp_path):
    # leftovers of an earlier attempt (another run id) of subtask 0 and of subtask 1, and a committed file
    for name in (".part-old-0-0.inprogress", ".part-old-0-1.pending", ".part-old-0-2.pending",
                 ".part-old-1-0.inprogress", ".part-old-1-1.pending", "part-old-0-9"):
        (tmp_path / name).write_text("x\n")
    w = file_sink(tmp_path).create_writer(ctx(index=0, parallelism=2))
    w.abort_others([(".part-old-0-2.pending", "part-old-0-2")])
    assert listing(tmp_path) == (
        ["part-old-0-9"],
        [".part-old-0-2.pending", ".part-old-1-0.inprogress", ".part-old-1-1.pending"],
    )


def test_file_writer_finish_commits_everything_without_checkpointing(tmp_path):
    w = file_sink(tmp_path).create_writer(ctx())
    w.write_batch(["x", "y"])
    w.finish()
    assert listing(tmp_path)[1] == []
    assert visible_lines(tmp_path) == ["x", "y"]


# ---- SinkOperator ----


def opened(tmp_path, checkpointing: bool = True, restore=None, index: int = 0, parallelism: int = 1):
    op = with_runtime(SinkOperator(file_sink(tmp_path)), checkpointing)
    op.restore_states = restore
    op.open(ctx(index, parallelism))
    return op


def test_snapshot_pre_commits_and_complete_commits_only_checkpoints_up_to_n(tmp_path):
    op = opened(tmp_path)
    op.process_batch(["a"], None)
    keyed, state = op.snapshot_state(1, False)
    assert keyed is None
    s1 = pickle.loads(state)
    assert list(s1) == [1] and len(s1[1]) == 1
    assert visible_lines(tmp_path) == [], "pre-committed data is not visible"

    op.process_batch(["b"], None)
    s2 = pickle.loads(op.snapshot_state(2, False)[1])
    assert list(s2) == [1, 2], "the checkpoint keeps earlier transactions not committed yet"
    op.process_batch(["c"], None)
    op.snapshot_state(3, False)
    assert op.records == 3

    op.notify_checkpoint_complete(1)
    assert visible_lines(tmp_path) == ["a"]
    assert sorted(op.pending) == [2, 3]
    op.notify_checkpoint_complete(1)  # a repeated notification changes nothing
    assert visible_lines(tmp_path) == ["a"]

    op.process_batch(["d"], None)  # after checkpoint 3: in no checkpoint yet
    op.notify_checkpoint_complete(3)  # subsumes 2
    assert visible_lines(tmp_path) == ["a", "b", "c"]
    assert op.pending == {}
    hidden = listing(tmp_path)[1]
    assert len(hidden) == 1 and hidden[0].endswith(".inprogress")
    op.close()


def test_end_input_with_checkpointing_waits_for_commit_final(tmp_path):
    op = opened(tmp_path)
    op.process_batch(["a"], None)
    op.snapshot_state(1, False)
    op.process_batch(["b"], None)
    op.end_input()
    assert op.awaiting_final_commit
    assert visible_lines(tmp_path) == []
    assert all(n.endswith(".pending") for n in listing(tmp_path)[1])

    op.commit_final()
    assert not op.awaiting_final_commit
    assert visible_lines(tmp_path) == ["a", "b"]
    assert listing(tmp_path)[1] == []
    assert op.pending == {} and op.final is None
    op.close()


def test_end_input_without_checkpointing_commits_at_once(tmp_path):
    op = opened(tmp_path, checkpointing=False)
    op.process_batch(["a", "b"], None)
    op.end_input()
    assert not op.awaiting_final_commit
    assert visible_lines(tmp_path) == ["a", "b"]


def test_restore_commits_the_restored_transactions_and_aborts_the_others(tmp_path):
    before = opened(tmp_path)
    before.process_batch(["in checkpoint 1"], None)
    _, state = before.snapshot_state(1, False)
    before.process_batch(["after checkpoint 1"], None)
    before.snapshot_state(2, False)  # checkpoint 2 never completes
    before.process_batch(["in progress"], None)
    before.close()  # the task fails
    assert visible_lines(tmp_path) == []

    after = opened(tmp_path, restore=[OperatorSubtaskState(operator=state)])
    assert visible_lines(tmp_path) == ["in checkpoint 1"]
    assert listing(tmp_path)[1] == [], "the leftovers of the failed attempt are gone"
    after.process_batch(["again"], None)
    after.snapshot_state(3, False)
    after.notify_checkpoint_complete(3)
    assert visible_lines(tmp_path) == ["again", "in checkpoint 1"]


def test_restore_at_lower_parallelism_commits_the_old_subtasks_round_robin(tmp_path):
    states = []
    for i in range(2):
        op = opened(tmp_path, index=i, parallelism=2)
        op.process_batch([f"from {i}"], None)
        states.append(OperatorSubtaskState(operator=op.snapshot_state(1, False)[1]))
        op.close()
    opened(tmp_path, restore=states + [OperatorSubtaskState()], index=0, parallelism=1)
    assert visible_lines(tmp_path) == ["from 0", "from 1"]


def test_non_transactional_writers_have_no_state(tmp_path):
    got = []

    class ListWriter(SinkWriter):
        def write_batch(self, values):
            got.extend(values)

    class ListSink(Sink):
        def create_writer(self, ctx):
            return ListWriter()

    op = with_runtime(SinkOperator(ListSink()), checkpointing=True)
    op.open(ctx())
    assert not op.transactional
    op.process_batch([1, 2], None)
    assert op.snapshot_state(1, False) == (None, None)
    op.notify_checkpoint_complete(1)
    op.end_input()
    assert got == [1, 2] and not op.awaiting_final_commit


def test_restore_at_lower_parallelism_discards_the_leftovers_of_all_old_subtasks(tmp_path):
    states = []
    for i in range(2):
        op = opened(tmp_path, index=i, parallelism=2)
        op.process_batch([f"in checkpoint 1 from {i}"], None)
        states.append(OperatorSubtaskState(operator=op.snapshot_state(1, False)[1]))
        op.process_batch([f"after checkpoint 1 from {i}"], None)
        op.snapshot_state(2, False)  # never completes
        op.process_batch([f"in progress from {i}"], None)
        op.close()
    opened(tmp_path, restore=states, index=0, parallelism=1)
    assert visible_lines(tmp_path) == ["in checkpoint 1 from 0", "in checkpoint 1 from 1"]
    assert listing(tmp_path)[1] == []
