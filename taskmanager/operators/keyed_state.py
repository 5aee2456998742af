"""What every keyed operator does with its state backend: create it, restore it, snapshot it with its timers."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from taskmanager.operators.base import Operator

TIMERS_TABLE = "_timers"


class KeyedStateMixin(Operator):
    """Gives a keyed operator ``self.backend`` (restored from the checkpoint it starts from) and checkpoints
    it together with the operator's timers, which are kept in the backend's ``_timers`` table for the snapshot."""

    backend: Any
    timers: Any = None  # InternalTimerService when the operator has timers
    _timer_keys: set[Any]

    def open_backend(self) -> Any:
        self.backend = self.runtime.create_keyed_backend(self.uid)
        self._timer_keys = set()
        if self.restore_states:
            handles = [h for s in self.restore_states for h in s.keyed]
            if handles:
                self.backend.restore(handles, self.restore_storage, self.key_groups, self.local_dir)
        return self.backend

    def restore_timers(self) -> None:
        """After the timer service exists: re-register the timers of the restored checkpoint."""
        if self.timers is None or not self.restore_states:
            return
        table = self.backend.table(TIMERS_TABLE)
        entries: list[tuple[Any, Any, int, int]] = []
        for (key, _), lst in list(table.items()):
            self._timer_keys.add(key)
            entries.extend((key, ns, ts, domain) for domain, ns, ts in lst)
        self.timers.restore(entries)

    def _save_timers(self) -> None:
        if self.timers is None:
            return
        by_key: dict[Any, list[tuple[int, Any, int]]] = defaultdict(list)
        for key, ns, ts, domain in self.timers.entries():
            by_key[key].append((domain, ns, ts))
        table = self.backend.table(TIMERS_TABLE)
        for k in self._timer_keys - by_key.keys():
            table.pop((k, None), None)
        for k, lst in by_key.items():
            table[(k, None)] = lst
        self._timer_keys = set(by_key)

    def snapshot_state(self, checkpoint_id: int, canonical: bool) -> tuple[Any, bytes | None]:
        self._save_timers()
        return self.backend.snapshot(checkpoint_id, self.key_groups, self.local_dir, canonical=canonical), None

    def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        hook = getattr(self.backend, "notify_checkpoint_complete", None)
        if hook is not None:
            hook(checkpoint_id)

    def notify_checkpoint_aborted(self, checkpoint_id: int) -> None:
        hook = getattr(self.backend, "notify_checkpoint_aborted", None)
        if hook is not None:
            hook(checkpoint_id)
