"""What every keyed operator does with its state backend: create it, restore it, snapshot it with its timers."""

from __future__ import annotations

from typing import Any

from taskmanager.operators.base import Operator
from taskmanager.timers import capture_timers, restore_timers_from_blobs, timers_by_key_group

TIMERS_STATE = "_timers"
"""The raw keyed state holding the operator's timers: one blob per key group (``timers_by_key_group``)."""

LEGACY_TIMERS_TABLE = "_timers"
"""The table in which snapshots before raw keyed state kept the timers: ``(key, None) -> [(domain, ns, ts), ...]``.
Read on restore only (savepoints and checkpoints of that format still restore), then emptied. It shares its name
with ``TIMERS_STATE``: tables and raw states are separate name spaces."""


class KeyedStateMixin(Operator):
    """Gives a keyed operator ``self.backend`` (restored from the checkpoint it starts from) and checkpoints
    it together with the operator's timers, which it stores in the backend as raw keyed state, one blob per key
    group (``TIMERS_STATE``), so that they are redistributed by key group with the rest of the state."""

    backend: Any
    timers: Any = None  # InternalTimerService when the operator has timers
    # ``timers.version`` when the timers were last written to the backend (None: unknown, write them)
    _timers_saved: tuple[int, int, int, int] | None = None
    _key_group_memo: dict[Any, int]  # key -> key group, for the timer snapshots

    def open_backend(self) -> Any:
        self.backend = self.runtime.create_keyed_backend(self.uid)
        self._key_group_memo = {}
        # a new backend holds no timers, as a new timer service: nothing to write until one changes
        self._timers_saved = (0, 0, 0, 0)
        if self.restore_states:
            handles = [h for s in self.restore_states for h in s.keyed]
            if handles:
                self.backend.restore(handles, self.restore_storage, self.key_groups, self.local_dir)
                self._timers_saved = None
        return self.backend

    def restore_timers(self) -> None:
        """After the timer service exists: re-register the timers of the restored checkpoint (either format)."""
        if self.timers is None or not self.restore_states:
            return
        backend = self.backend
        restore_timers_from_blobs(self.timers, backend.read_raw_state(TIMERS_STATE).values())
        if LEGACY_TIMERS_TABLE in backend.table_names():
            table = backend.table(LEGACY_TIMERS_TABLE)
            entries: list[tuple[Any, Any, int, int]] = []
            for (key, _), lst in list(table.items()):
                entries.extend((key, ns, ts, domain) for domain, ns, ts in lst)
            self.timers.restore(entries)
            # emptied: the timers live in the raw state from the next checkpoint on, and a stale copy here would
            # bring deleted timers back at the next restore
            table.clear()
        self._timers_saved = None

    def _save_timers(self) -> None:
        timers = self.timers
        if timers is None:
            return
        version = timers.version
        if version == self._timers_saved:
            return  # unchanged since they were written: the backend holds them already
        backend = self.backend
        # only a capture here, at the barrier: grouping by key group and pickling may run later, off the task's
        # thread (RocksDB: in the checkpoint's upload); the memo is only ever used by these producers, in order
        captured = capture_timers(timers)
        max_parallelism, memo = backend.max_parallelism, self._key_group_memo
        backend.write_raw_state_later(
            TIMERS_STATE, lambda: timers_by_key_group(captured, max_parallelism, memo))
        self._timers_saved = version

    def snapshot_state(self, checkpoint_id: int, canonical: bool) -> tuple[Any, bytes | None]:
        self._save_timers()
        return self.backend.snapshot(checkpoint_id, self.key_groups, self.local_dir, canonical=canonical), None

    def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        hook = getattr(self.backend, "notify_checkpoint_complete", None)
        if hook is not None:
            hook(checkpoint_id)

    def notify_checkpoint_aborted(self, checkpoint_id: int) -> None:
        self._timers_saved = None  # (its timers' write may be what failed: write them again)
        hook = getattr(self.backend, "notify_checkpoint_aborted", None)
        if hook is not None:
            hook(checkpoint_id)
