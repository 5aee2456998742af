"""The keyed state backend role: state per (state name, current key), scoped by key group for rescaling."""

from __future__ import annotations

from typing import Any, Protocol


class KeyedStateBackend(Protocol):
    """Keyed state of one operator instance.

    Invariant: ``set_current_key`` is called before any state access for a record or timer; the operator's
    mailbox thread is the only caller.
    """

    def set_current_key(self, key: Any) -> None: ...
    def get_current_key(self) -> Any: ...
    def get_state(self, descriptor: Any) -> Any: ...
