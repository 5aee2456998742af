"""The operator contract shared by all runtime operators."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from taskmanager.timers import ProcessingTimeService
from weir.datastream.functions import Function, RuntimeContext

Emit = Callable[[list[Any], "list[int] | None"], None]


def _discard(values: list[Any], timestamps: list[int] | None) -> None:
    pass


@dataclass
class OperatorRuntime:
    """What the task gives each operator of its chain.

    Attributes:
        side_outputs: tag id -> emit function of the edges consuming that side output of this operator.
        create_keyed_backend: makes the keyed state backend of a keyed operator (argument: a name unique in
            the task, e.g. the operator's uid).
        emit_status: tells downstream that this task's output is idle (True) or active again (False).
    """

    processing_time: ProcessingTimeService
    create_keyed_backend: Callable[[str], Any]
    emit_status: Callable[[bool], None]
    side_outputs: dict[str, Emit] = field(default_factory=dict)
    config: dict[str, str] = field(default_factory=dict)

    def side_output(self, tag_id: str) -> Emit:
        return self.side_outputs.get(tag_id, _discard)


class Operator:
    """A runtime operator of a chain.

    Invariants: called from the subtask's mailbox loop only; ``open`` before the first batch, ``end_input``
    once after the last, ``close`` always (also after a failure). ``out`` receives whole buffers and
    ``emit_watermark`` the watermarks this operator forwards (after firing what they make due).
    """

    name = "operator"
    fn: Any = None
    runtime: OperatorRuntime
    uid: str = ""

    def __init__(self, out: Emit) -> None:
        self.out = out
        self.emit_watermark: Callable[[int], None] = lambda wm: None
        self.current_watermark = -(2**63)

    def open(self, ctx: RuntimeContext) -> None:
        if isinstance(self.fn, Function):
            self.fn.open(ctx)

    def process_batch(self, values: list[Any], timestamps: list[int] | None) -> None:
        raise NotImplementedError

    def process_batch2(self, values: list[Any], timestamps: list[int] | None) -> None:
        """The second input of a two-input operator (connect)."""
        raise NotImplementedError(f"{self.name} has one input")

    def process_watermark(self, watermark: int) -> None:
        self.current_watermark = watermark
        self.emit_watermark(watermark)

    def end_input(self) -> None:
        pass

    # ---- checkpoints ----
    restore_states: list[Any] | None = None  # OperatorSubtaskState of every subtask of the restored checkpoint
    restore_storage: Any = None
    key_groups: range = range(0)
    local_dir: str = ""

    def snapshot_state(self, checkpoint_id: int, canonical: bool) -> tuple[Any, bytes | None]:
        """The synchronous part of a checkpoint: (a pending keyed snapshot or None, pickled operator state or None).

        Called between two records; whatever is slow (uploads) happens in the pending snapshot's ``upload``."""
        return None, None

    def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        pass

    def notify_checkpoint_aborted(self, checkpoint_id: int) -> None:
        pass

    def close(self) -> None:
        if isinstance(self.fn, Function):
            self.fn.close()

    async def drain(self) -> None:
        """Called by the task after each batch; operators that talk to remote parties (collect) await here."""
