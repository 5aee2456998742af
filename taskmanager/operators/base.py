"""The operator contract shared by all runtime operators."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from weir.datastream.functions import Function, RuntimeContext

Emit = Callable[[list[Any], "list[int] | None"], None]


class Operator:
    """A runtime operator of a chain.

    Invariants: called from the subtask's mailbox loop only; ``open`` before the first batch, ``end_input``
    once after the last, ``close`` always (also after a failure). ``out`` receives whole buffers.
    """

    name = "operator"
    fn: Any = None

    def __init__(self, out: Emit) -> None:
        self.out = out

    def open(self, ctx: RuntimeContext) -> None:
        if isinstance(self.fn, Function):
            self.fn.open(ctx)

    def process_batch(self, values: list[Any], timestamps: list[int] | None) -> None:
        raise NotImplementedError

    def end_input(self) -> None:
        pass

    def close(self) -> None:
        if isinstance(self.fn, Function):
            self.fn.close()

    async def drain(self) -> None:
        """Called by the task after each batch; operators that talk to remote parties (collect) await here."""
