"""State backend choices (``pyflink.datastream.state_backend``).

These classes are configuration only (pure, picklable data): ``env.set_state_backend(...)`` records the choice
in the job, and each TaskManager slot builds the matching keyed state backend (``state.memory`` or
``state.rocksdb``) for every keyed operator it runs.
"""

from __future__ import annotations

__all__ = ["EmbeddedRocksDBStateBackend", "HashMapStateBackend", "StateBackend"]


class StateBackend:
    """Base of the state backend configurations.

    Attributes:
        name: the backend's name as in the ``state.backend.type`` configuration key.
    """

    name: str = ""

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and vars(other) == vars(self)

    def __hash__(self) -> int:
        return hash(self.name)

    def __repr__(self) -> str:
        fields = ", ".join(f"{k.lstrip('_')}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({fields})"


class HashMapStateBackend(StateBackend):
    """Keyed state as objects in memory (Python dicts): the fastest, bounded by the slot's memory."""

    name = "hashmap"

    def __init__(self) -> None:
        """The hashmap backend has no options."""


class EmbeddedRocksDBStateBackend(StateBackend):
    """Keyed state in a RocksDB database on the slot's local disk, fronted by an in-memory write-back cache.

    State can be far larger than memory; hot keys are served from the cache at dictionary speed.
    """

    name = "rocksdb"

    def __init__(self, enable_incremental_checkpointing: bool | None = None) -> None:
        """Configures the RocksDB backend.

        Args:
            enable_incremental_checkpointing: upload only the SST files a checkpoint adds; None means the
                cluster's default (in weir: incremental).

        Raises:
            TypeError: ``enable_incremental_checkpointing`` is neither a bool nor None.
        """
        if enable_incremental_checkpointing is not None and not isinstance(enable_incremental_checkpointing, bool):
            raise TypeError(
                f"enable_incremental_checkpointing must be a bool or None, got {enable_incremental_checkpointing!r}"
            )
        self._enable_incremental_checkpointing = enable_incremental_checkpointing
        self._db_storage_paths: list[str] = []
        self._number_of_transfer_threads = 4

    def is_incremental_checkpoints_enabled(self) -> bool:
        """Whether checkpoints upload only new SST files (the default when not set)."""
        return self._enable_incremental_checkpointing is not False

    def set_db_storage_paths(self, *paths: str) -> None:
        """Local directories for the databases (default: the TaskManager's local state directory).

        Raises:
            ValueError: a path is empty.
        """
        if any(not p for p in paths):
            raise ValueError("a RocksDB storage path must not be empty")
        self._db_storage_paths = [str(p) for p in paths]

    def get_db_storage_paths(self) -> list[str]:
        """The configured local directories (empty: the default)."""
        return list(self._db_storage_paths)

    def set_number_of_transfer_threads(self, number_of_transfering_threads: int) -> None:
        """Threads that upload and download state files in checkpoints and restores.

        Raises:
            ValueError: the number is not positive.
        """
        if number_of_transfering_threads <= 0:
            raise ValueError(f"the number of transfer threads must be positive, got {number_of_transfering_threads}")
        self._number_of_transfer_threads = int(number_of_transfering_threads)

    def get_number_of_transfer_threads(self) -> int:
        """Threads that upload and download state files."""
        return self._number_of_transfer_threads
