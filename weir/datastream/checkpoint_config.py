"""Checkpointing settings of a job (``pyflink.datastream.CheckpointConfig``, ``CheckpointingMode``).

The settings live in the job's configuration under Flink's keys, so the JobManager reads them without running job
code: ``execution.checkpointing.interval`` (ms), ``.mode``, ``.timeout``, ``.min-pause``,
``.max-concurrent-checkpoints``, ``.tolerable-failed-checkpoints``, ``state.checkpoints.num-retained`` and
``state.checkpoints.dir``.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from weir.common.configuration import Configuration


class CheckpointingMode(Enum):
    EXACTLY_ONCE = 0
    AT_LEAST_ONCE = 1


K_INTERVAL = "execution.checkpointing.interval"
K_MODE = "execution.checkpointing.mode"
K_TIMEOUT = "execution.checkpointing.timeout"
K_MIN_PAUSE = "execution.checkpointing.min-pause"
K_MAX_CONCURRENT = "execution.checkpointing.max-concurrent-checkpoints"
K_TOLERABLE = "execution.checkpointing.tolerable-failed-checkpoints"
K_RETAINED = "state.checkpoints.num-retained"
K_DIR = "state.checkpoints.dir"


def _positive(name: str, v: int, allow_zero: bool = False) -> int:
    if not isinstance(v, int) or v < 0 or (v == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {v!r}")
    return v


class CheckpointConfig:
    """``env.get_checkpoint_config()``: a view over the job configuration's checkpointing keys."""

    def __init__(self, configuration: Configuration) -> None:
        self._c = configuration

    def is_checkpointing_enabled(self) -> bool:
        return self.get_checkpoint_interval() > 0

    def get_checkpoint_interval(self) -> int:
        return self._c.get_integer(K_INTERVAL, 0)

    def set_checkpoint_interval(self, checkpoint_interval: int) -> CheckpointConfig:
        self._c.set_integer(K_INTERVAL, _positive("the checkpoint interval (ms)", checkpoint_interval))
        return self

    def get_checkpointing_mode(self) -> CheckpointingMode:
        return CheckpointingMode[self._c.get_string(K_MODE, "EXACTLY_ONCE") or "EXACTLY_ONCE"]

    def set_checkpointing_mode(self, checkpointing_mode: CheckpointingMode) -> CheckpointConfig:
        if not isinstance(checkpointing_mode, CheckpointingMode):
            raise TypeError(f"expected a CheckpointingMode, got {checkpointing_mode!r}")
        self._c.set_string(K_MODE, checkpointing_mode.name)
        return self

    def get_checkpoint_timeout(self) -> int:
        return self._c.get_integer(K_TIMEOUT, 600_000)

    def set_checkpoint_timeout(self, checkpoint_timeout: int) -> CheckpointConfig:
        self._c.set_integer(K_TIMEOUT, _positive("the checkpoint timeout (ms)", checkpoint_timeout))
        return self

    def get_min_pause_between_checkpoints(self) -> int:
        return self._c.get_integer(K_MIN_PAUSE, 0)

    def set_min_pause_between_checkpoints(self, min_pause_between_checkpoints: int) -> CheckpointConfig:
        self._c.set_integer(K_MIN_PAUSE, _positive("the minimum pause (ms)", min_pause_between_checkpoints, True))
        return self

    def get_max_concurrent_checkpoints(self) -> int:
        return self._c.get_integer(K_MAX_CONCURRENT, 1)

    def set_max_concurrent_checkpoints(self, max_concurrent_checkpoints: int) -> CheckpointConfig:
        if max_concurrent_checkpoints != 1:
            raise ValueError("weir runs one checkpoint at a time: max concurrent checkpoints must be 1")
        self._c.set_integer(K_MAX_CONCURRENT, 1)
        return self

    def get_tolerable_checkpoint_failure_number(self) -> int:
        return self._c.get_integer(K_TOLERABLE, 0)

    def set_tolerable_checkpoint_failure_number(self, tolerable_checkpoint_failure_number: int) -> CheckpointConfig:
        self._c.set_integer(K_TOLERABLE, _positive("tolerable failed checkpoints", tolerable_checkpoint_failure_number,
                                                   True))
        return self

    def get_num_retained_checkpoints(self) -> int:
        return self._c.get_integer(K_RETAINED, 1)

    def set_num_retained_checkpoints(self, n: int) -> CheckpointConfig:
        self._c.set_integer(K_RETAINED, _positive("retained checkpoints", n))
        return self

    def set_checkpoint_storage_dir(self, checkpoint_path: str) -> CheckpointConfig:
        """``file:///path`` or ``s3://bucket/prefix`` (PyFlink: set_checkpoint_storage_dir)."""
        if not isinstance(checkpoint_path, str) or not checkpoint_path:
            raise ValueError(f"a checkpoint storage dir must be a URI string, got {checkpoint_path!r}")
        self._c.set_string(K_DIR, checkpoint_path)
        return self

    def set_checkpoint_storage(self, storage: Any) -> CheckpointConfig:
        return self.set_checkpoint_storage_dir(str(getattr(storage, "checkpoint_path", storage)))

    def get_checkpoint_storage_dir(self) -> str | None:
        return self._c.get_string(K_DIR)
